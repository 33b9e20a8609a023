"""Build a ``torch.nn.Module`` from a Genotype for a task's input and output shape."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from typing import Any

from workbench.errors import InvalidGenotype
from workbench.space.genotype import Genotype

#: Default limit on the parameters of one network (override with ``$NASW_MAX_PARAMS``).
MAX_PARAMS = 1_000_000_000
MAX_PARAMS_ENV = "NASW_MAX_PARAMS"

# versioned space name -> "module:function(genotype, input_shape, n_classes) -> nn.Module"
_BUILDERS: dict[str, str] = {
    "chain-v1": "workbench.nn.chain:build_chain",
    "dag-v1": "workbench.nn.dag:build_dag",
    "cell-v1": "workbench.nn.cell:build_cell",
}


def build_model(genotype: Genotype, input_shape: Sequence[int], n_classes: int, *, width_mult: float = 1.0):
    """The network of ``genotype`` for inputs `C x L` (1-D) or `C x H x W` (2-D).

    Args:
        genotype: A genotype of a trainable space.
        input_shape: Shape of one example, without the batch dimension.
        n_classes: Width of the classifier output (logits).
        width_mult: Multiplier of every conv / dense width (a low-fidelity network is thinner);
            widths are rounded and at least 1. Builders without a ``width_mult``
            keyword only build at 1.0.

    Returns:
        A ``torch.nn.Module`` mapping `batch x *input_shape` to `batch x n_classes` logits.
    """
    builder, genotype = _builder(genotype, width_mult)
    check_size(builder, genotype, tuple(input_shape), int(n_classes))
    return builder(genotype, tuple(input_shape), int(n_classes))


def _builder(genotype: Genotype, width_mult: float = 1.0) -> tuple[Callable[..., Any], Genotype]:
    """The builder of ``genotype``'s space (with ``width_mult`` bound) and the genotype it builds
    (a joint genotype's architecture)."""
    space = genotype.space
    if space.startswith("joint-"):
        from workbench.space.registry import space_class

        genotype = space_class(space).architecture(genotype)
        space = genotype.space
    target = _BUILDERS.get(space)
    if target is None:
        raise InvalidGenotype(f"space {space!r} has no network builder (is it a tabular space?)")
    module, fn = target.split(":")
    builder = getattr(importlib.import_module(module), fn)
    if float(width_mult) != 1.0:
        builder = _with_width(builder, space, float(width_mult))
    return builder, genotype


def network_size(
    genotype: Genotype, input_shape: Sequence[int], n_classes: int, *, batch: int = 1, width_mult: float = 1.0
) -> tuple[int, int] | None:
    """``(parameters, activations)`` of ``genotype``'s network: its parameter count and the values
    its layers output in one forward pass of ``batch`` examples (what training keeps for the
    backward pass), measured on PyTorch's ``meta`` device: no memory allocated, the global random
    state untouched. Activations are 0 when the forward pass cannot run there; None when the
    network cannot be built there.

    Raises:
        InvalidGenotype: The space has no network builder, or the network would have more than
            :func:`max_params` parameters.
    """
    import torch

    builder, genotype = _builder(genotype, width_mult)
    shape, classes = tuple(int(s) for s in input_shape), int(n_classes)
    check_size(builder, genotype, shape, classes)
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            net = builder(genotype, shape, classes)
        params = sum(p.numel() for p in net.parameters())
    except Exception:  # noqa: BLE001 - the real build reports its own error
        return None
    total = 0

    def count(_module: Any, _inputs: Any, output: Any) -> None:
        nonlocal total
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                total += t.numel()

    leaves = [m for m in net.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.random.fork_rng(devices=[]):
            net.train()(torch.zeros(max(1, int(batch)), *shape, device="meta"))
    except Exception:  # noqa: BLE001 - an op without a meta kernel: parameters only
        total = 0
    finally:
        for h in handles:
            h.remove()
    return int(params), int(total)


def _with_width(builder: Callable[..., Any], space: str, width_mult: float) -> Callable[..., Any]:
    """``builder`` with its ``width_mult`` keyword bound (low fidelities: thinner networks)."""
    import functools
    import inspect

    if not width_mult > 0:
        raise InvalidGenotype(f"width_mult must be positive, got {width_mult!r}")
    if "width_mult" not in inspect.signature(builder).parameters:
        raise InvalidGenotype(f"the builder of space {space!r} does not support width_mult={width_mult:g}")
    return functools.partial(builder, width_mult=width_mult)


def scaled_width(width: int, width_mult: float = 1.0) -> int:
    """``width`` times ``width_mult``, rounded, at least 1 (``width`` itself at 1.0)."""
    return int(width) if width_mult == 1.0 else max(1, int(round(int(width) * float(width_mult))))


def max_params() -> int:
    """Most parameters a network may have: ``$NASW_MAX_PARAMS`` or :data:`MAX_PARAMS`."""
    try:
        return int(float(os.environ.get(MAX_PARAMS_ENV) or MAX_PARAMS))
    except ValueError:
        return MAX_PARAMS


def check_size(builder: Callable[..., Any], genotype: Genotype, input_shape: tuple[int, ...], n_classes: int) -> None:
    """Refuse a network too large to build, before any memory is allocated for it.

    The builder runs once on PyTorch's ``meta`` device (shapes only, no storage, the global
    random state untouched) and the parameters are counted. A genotype read back from a shared
    store (or a space whose settings someone planted) with absurd widths is thereby never
    allocated. A builder that cannot run on the meta device is not checked.

    Raises:
        InvalidGenotype: The network would have more than :func:`max_params` parameters.
    """
    import torch

    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            net = builder(genotype, input_shape, n_classes)
        n = sum(p.numel() for p in net.parameters())
    except InvalidGenotype:
        raise
    except Exception:  # noqa: BLE001 - the real build reports its own error
        return
    limit = max_params()
    if n > limit:
        raise InvalidGenotype(
            f"the network of this genotype would have {n:,} parameters, over the limit of {limit:,} "
            f"(${MAX_PARAMS_ENV}); it is not built"
        )
