"""What training a network needs in memory, and what the device has: refuse before allocating.

A network is refused when its parameters cannot fit, whatever the batch: ``$NASW_MAX_PARAMS``
(:func:`workbench.nn.build.max_params`) is a fixed cap; this module compares the estimated need
of training with the memory the device has available at the time the trial starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from workbench.nn.build import network_size
from workbench.space.genotype import Genotype

#: Bytes per parameter while training with AdamW: the weight, its gradient, two moment estimates.
BYTES_PER_PARAM = 16
#: Bytes per activation value kept for the backward pass: the value and its gradient (float32).
BYTES_PER_ACTIVATION = 8


def available_memory(device: torch.device) -> int | None:
    """Bytes a trial may still allocate on ``device``, None when unknown.

    CUDA: the device's free memory plus what PyTorch holds cached but unused. CPU: the kernel's
    ``MemAvailable`` (else free pages), capped by the cgroup's limit (a container) if lower.
    """
    if device.type == "cuda":
        try:
            free, _total = torch.cuda.mem_get_info(device)
            cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            return int(free) + max(0, int(cached))
        except (RuntimeError, AssertionError, ValueError):
            return None
    if device.type != "cpu":
        return None
    found = [n for n in (_meminfo_available(), _cgroup_room()) if n is not None]
    return min(found) if found else None


def _meminfo_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes, else the free pages, else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup (v2) memory limit, None without one."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return max(0, int(limit) - int(f.read().strip()))
    except (OSError, ValueError):
        return None


def training_need(params: int, activations: int) -> int:
    """Bytes to train a network of ``params`` parameters whose batch outputs ``activations``
    values: :data:`BYTES_PER_PARAM` each (weights, gradients, AdamW's two moments) plus
    :data:`BYTES_PER_ACTIVATION` per activation (kept for the backward pass, and its gradient)."""
    return BYTES_PER_PARAM * int(params) + BYTES_PER_ACTIVATION * int(activations)


def memory_shortfall(
    genotype: Genotype,
    input_shape: Sequence[int],
    n_classes: int,
    batch_size: int,
    device: torch.device,
    width_mult: float = 1.0,
) -> str | None:
    """Why training ``genotype``'s network on ``device`` cannot fit in its available memory, or
    None when it can (or the memory or the network's size is unknown).

    The need (:func:`training_need`, sizes measured on the meta device without allocating) is
    taken at the smallest batch the trainer tries, half of ``batch_size`` (it retries at half
    size after running out of memory): a batch too large is the trainer's to halve, but no
    batch makes too many parameters fit.

    Raises:
        InvalidGenotype: The network has no builder or is over ``$NASW_MAX_PARAMS``.
    """
    avail = available_memory(device)
    if avail is None:
        return None
    smallest = max(2, int(batch_size) // 2)
    size = network_size(genotype, input_shape, n_classes, batch=smallest, width_mult=width_mult)
    if size is None:
        return None
    params, activations = size
    need = training_need(params, activations)
    if need <= avail:
        return None
    where = "GPU memory free" if device.type == "cuda" else "memory available"
    return (
        f"not enough memory: training this network needs about {_gib(need)} ({params:,} parameters x "
        f"{BYTES_PER_PARAM} bytes for weights, gradients and AdamW state, plus "
        f"{_gib(BYTES_PER_ACTIVATION * activations)} of activations at batch size {smallest}), but {_gib(avail)} "
        f"of {where} on {device}; it was not built"
    )


def _gib(n: float) -> str:
    """Bytes in GiB, MiB or KiB, for messages."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 2**10:.1f} KiB"
