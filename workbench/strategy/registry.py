"""Name -> Strategy class registry."""

from __future__ import annotations

import importlib
from typing import Any

from workbench.errors import UserError
from workbench.space.base import SearchSpace
from workbench.strategy.base import Strategy

_STRATEGIES: dict[str, str] = {
    "random": "workbench.strategy.random:RandomSearch",
    "evolution": "workbench.strategy.evolution:RegularizedEvolution",
    "rl": "workbench.strategy.rl:ReinforceController",
}


def register(name: str, target: str) -> None:
    """Register a strategy class (``target`` is ``"module:Class"``)."""
    _STRATEGIES[name] = target


def strategy_names() -> list[str]:
    """Names accepted by ``--strategy``."""
    return sorted(_STRATEGIES)


def make_strategy(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Strategy:
    """Build a strategy by name; an unknown name raises :class:`UserError`."""
    target = _STRATEGIES.get(name)
    if target is None:
        raise UserError(f"unknown strategy {name!r}; expected one of {strategy_names()}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(space, seed=seed, **options)
