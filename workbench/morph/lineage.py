"""Replay a lineage on weights, and carry weights across tasks.

* :func:`morph_child`: a parent's genotype and trained state dict, morphism steps -> the
  child's genotype and a state dict that computes the parent's function.
* :func:`load_matching`: keep the tensors of a state dict (trained on another task) whose
  names and shapes fit a network; the rest (input stem, classifier head) stay freshly initialised.
* :func:`inherit_state`: both together, as the search loop uses them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from workbench.errors import InvalidGenotype
from workbench.morph.base import MorphismError
from workbench.morph.registry import morphism_for
from workbench.nn.build import build_model
from workbench.space.edits import MorphismStep
from workbench.space.genotype import Genotype


def _build(genotype: Genotype, input_shape: Sequence[int], n_classes: int, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(genotype, tuple(input_shape), int(n_classes))


def _cpu_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()}


def _load(net: nn.Module, state: Mapping[str, Any], what: str) -> None:
    try:
        net.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        raise MorphismError(f"{what} weights do not fit its genotype ({str(exc).splitlines()[0]})") from None


def morph_network(
    parent: nn.Module,
    parent_genotype: Genotype,
    steps: Sequence[MorphismStep],
    input_shape: Sequence[int],
    n_classes: int,
    seed: int = 0,
) -> tuple[Genotype, nn.Module]:
    """Apply ``steps`` to a built network; returns the child genotype and network (CPU, float32).

    Args:
        parent: The network of ``parent_genotype`` (not modified).
        parent_genotype: Its genotype.
        steps: Morphism steps, each in the indexing of the genotype it edits.
        input_shape: One example's shape (`C x L` or `C x H x W`).
        n_classes: Logits of the head.
        seed: Initialisation of layers an edit makes reachable for the first time.
    """
    g, net = parent_genotype, parent
    for n, step in enumerate(steps):
        m = morphism_for(g, step)
        child_g = m.apply(g, step)
        child = _build(child_g, input_shape, n_classes, seed + n + 1)
        m.transfer(net, child, step)
        g, net = child_g, child
    return g, net


def morph_child(
    parent_genotype: Genotype,
    parent_state: Mapping[str, Any],
    steps: Sequence[MorphismStep],
    input_shape: Sequence[int],
    n_classes: int,
    *,
    seed: int = 0,
) -> tuple[Genotype, dict[str, torch.Tensor]]:
    """Replay a lineage: the child genotype and a state dict with the parent's function.

    Args:
        parent_genotype: The parent's genotype.
        parent_state: The parent's trained state dict (as saved by the trainer).
        steps: Morphism steps from the parent to the child.
        input_shape: One example's shape.
        n_classes: Number of classes.
        seed: Initialisation seed of layers an edit makes reachable for the first time.

    Returns:
        ``(child_genotype, child_state)``: CPU float32 tensors.

    Raises:
        MorphismError: The state does not fit the parent genotype, or a step cannot be applied.
        InvalidGenotype: A step does not apply to the genotype it edits.
    """
    parent = _build(parent_genotype, input_shape, n_classes, seed)
    state = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in parent_state.items()}
    _load(parent, state, "parent")
    g, child = morph_network(parent, parent_genotype, steps, input_shape, n_classes, seed)
    return g, _cpu_state(child)


def head_name(net: nn.Module) -> str | None:
    """Module name of the classifier head: the last ``nn.Linear`` of the network."""
    name = None
    for n, m in net.named_modules():
        if isinstance(m, nn.Linear):
            name = n
    return name


@dataclass
class Transplant:
    """What :func:`load_matching` kept and what it left freshly initialised.

    Attributes:
        state: The full state dict of the target network.
        kept: Names of tensors taken from the source.
        fresh: Names of tensors left at their fresh initialisation.
    """

    state: dict[str, torch.Tensor]
    kept: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: how many tensors were kept and which modules stayed fresh."""
        mods = sorted({k.rsplit(".", 1)[0] for k in self.fresh})
        more = f" (+{len(mods) - 6} more)" if len(mods) > 6 else ""
        return (
            f"kept {len(self.kept)} of {len(self.kept) + len(self.fresh)} tensors; fresh: {', '.join(mods[:6])}{more}"
        )


def load_matching(net: nn.Module, source: Mapping[str, Any], *, reset_head: bool = True) -> Transplant:
    """Load the tensors of ``source`` whose names and shapes fit ``net``; keep the rest fresh.

    Used for weights trained on another task: the input stem (other channels or rank) and the
    classifier head (other classes) usually do not fit; with ``reset_head`` the head is freshly
    initialised even when it fits, since the classes of another task mean something else.
    """
    head = head_name(net) if reset_head else None
    own = net.state_dict()
    kept, fresh = [], []
    new: dict[str, torch.Tensor] = {}
    for k, v in own.items():
        src = source.get(k)
        is_head = head is not None and k.startswith(head + ".")
        if torch.is_tensor(src) and src.shape == v.shape and not is_head:
            new[k] = src.detach().to(v.dtype).cpu().clone()
            kept.append(k)
        else:
            new[k] = v.detach().cpu().clone()
            fresh.append(k)
    net.load_state_dict(new)
    return Transplant(_cpu_state(net), kept, fresh)


def inherit_state(
    parent_genotype: Genotype,
    parent_state: Mapping[str, Any],
    steps: Sequence[MorphismStep],
    child_genotype: Genotype,
    input_shape: Sequence[int],
    n_classes: int,
    *,
    other_task: bool = False,
    seed: int = 0,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state a child starts from: the parent's weights, carried across tasks and/or morphed.

    Args:
        parent_genotype: The parent trial's genotype.
        parent_state: Its trained weights.
        steps: Morphism steps from the parent to ``child_genotype`` (may be empty).
        child_genotype: The genotype the steps must produce.
        input_shape: This task's example shape.
        n_classes: This task's classes.
        other_task: The parent was trained on another task: keep only fitting tensors (head
            and mismatched stem fresh), then morph.
        seed: Initialisation of everything not inherited.

    Returns:
        ``(state, notes)``: a state dict for ``child_genotype`` and remarks for the run's tags.

    Raises:
        MorphismError: The weights cannot be carried over (the loop then trains from scratch).
    """
    notes: dict[str, str] = {}
    if other_task:
        net = _build(parent_genotype, input_shape, n_classes, seed)
        try:
            plant = load_matching(net, parent_state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise MorphismError(f"weights of the other task do not load ({str(exc).splitlines()[0]})") from None
        if not plant.kept:
            raise MorphismError("no tensor of the other task's weights fits this task's network")
        notes["transfer"] = f"weights from another task: {plant.summary()}"
        parent_state = plant.state
    try:
        g, state = morph_child(parent_genotype, parent_state, steps, input_shape, n_classes, seed=seed)
    except InvalidGenotype as exc:
        raise MorphismError(f"morphism steps do not apply: {exc}") from None
    if g != child_genotype:
        raise MorphismError(f"morphism steps give {g}, not the proposed {child_genotype}")
    return state, notes
