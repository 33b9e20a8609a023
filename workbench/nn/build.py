"""Build a ``torch.nn.Module`` from a Genotype for a task's input and output shape."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from workbench.errors import InvalidGenotype
from workbench.space.genotype import Genotype

# versioned space name -> "module:function(genotype, input_shape, n_classes) -> nn.Module"
_BUILDERS: dict[str, str] = {
    "chain-v1": "workbench.nn.chain:build_chain",
    "dag-v1": "workbench.nn.dag:build_dag",
    "cell-v1": "workbench.nn.cell:build_cell",
}


def register_builder(space_name: str, target: str) -> None:
    """Register the builder of a trainable space (``target`` is ``"module:function"``)."""
    _BUILDERS[space_name] = target


def build_model(genotype: Genotype, input_shape: Sequence[int], n_classes: int):
    """The network of ``genotype`` for inputs `C x L` (1-D) or `C x H x W` (2-D).

    Args:
        genotype: A genotype of a trainable space.
        input_shape: Shape of one example, without the batch dimension.
        n_classes: Width of the classifier output (logits).

    Returns:
        A ``torch.nn.Module`` mapping `batch x *input_shape` to `batch x n_classes` logits.
    """
    space = genotype.space
    if space.startswith("joint-"):
        from workbench.space.registry import space_class

        genotype = space_class(space).architecture(genotype)
        space = genotype.space
    target = _BUILDERS.get(space)
    if target is None:
        raise InvalidGenotype(f"space {space!r} has no network builder (is it a tabular space?)")
    module, fn = target.split(":")
    return getattr(importlib.import_module(module), fn)(genotype, tuple(input_shape), int(n_classes))
