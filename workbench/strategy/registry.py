"""Name -> Strategy class registry: what ``--strategy NAME`` builds.

A new strategy is one module (a :class:`~workbench.strategy.base.Strategy` subclass with a
``name``, ``ask`` and, where it keeps a model, ``tell``; optional hooks as that class documents)
plus one line here (or a :func:`register` call from a plugin). Targets are ``"module:Class"``
strings, imported only when used, so ``nasw --help`` stays fast.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from workbench.errors import UserError
from workbench.space.base import SearchSpace
from workbench.strategy.base import Strategy

_STRATEGIES: dict[str, str] = {
    "random": "workbench.strategy.random:RandomSearch",
    "evolution": "workbench.strategy.evolution:RegularizedEvolution",
    "rl": "workbench.strategy.rl:ReinforceController",
    "bo": "workbench.strategy.bo.strategy:BayesianOptimization",
    "hillclimb": "workbench.strategy.hillclimb:HillClimb",
}


def register(name: str, target: str) -> None:
    """Register a strategy class under ``name`` (``target`` is ``"module:Class"``).

    Raises:
        UserError: ``target`` is not ``"module:Class"``.
    """
    module, _, cls_name = target.partition(":")
    if not module or not cls_name:
        raise UserError(f"a strategy target is 'module:Class', got {target!r}")
    _STRATEGIES[name] = target


def strategy_names() -> list[str]:
    """Names accepted by ``--strategy``."""
    return sorted(_STRATEGIES)


def strategy_class(name: str) -> type[Strategy]:
    """The class registered under ``name``."""
    target = _STRATEGIES.get(name)
    if target is None:
        raise UserError(f"unknown strategy {name!r}; expected one of {strategy_names()}")
    module, cls_name = target.split(":")
    return getattr(importlib.import_module(module), cls_name)


def make_strategy(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Strategy:
    """Build a strategy by name; an unknown name raises :class:`UserError`."""
    cls = strategy_class(name)
    accepted = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name not in ("self", "space", "seed") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
    unknown = [k for k in options if k not in accepted]
    if unknown and not takes_any:
        raise UserError(f"strategy {name!r} does not take option(s) {unknown}; it takes {accepted}")
    try:
        return cls(space, seed=seed, **options)
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad options for strategy {name!r}: {exc}") from None
