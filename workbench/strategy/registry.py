"""Name -> Strategy class registry: what ``--strategy NAME`` builds.

A new strategy is one module (a :class:`~workbench.strategy.base.Strategy` subclass with a
``name``, ``ask`` and, where it keeps a model, ``tell``; optional hooks as that class documents)
plus one line here (or a :func:`register` call from a plugin). Targets are ``"module:Class"``
strings, imported only when used, so ``nasw --help`` stays fast.
"""

from __future__ import annotations

import importlib
import inspect
import math
import numbers
import sys
import types
import typing
from collections.abc import Mapping
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
    "darts": "workbench.strategy.darts:Darts",
    "gdas": "workbench.strategy.darts:Gdas",
    "eda": "workbench.strategy.eda:EstimationOfDistribution",
    "qlearning": "workbench.strategy.qlearning:QLearning",
    "smac": "workbench.strategy.smac:RandomForestBO",
    "tpe": "workbench.strategy.tpe:TreeParzen",
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
    """Build a strategy by name, its options checked and coerced first (:func:`check_options`).

    Raises:
        UserError: An unknown name, an unknown option, an option of the wrong type or out of the
            constructor's range: one line naming the option, what it takes and what it got.
    """
    cls = strategy_class(name)
    options = check_options(name, options)
    try:
        return cls(space, seed=seed, **options)
    except UserError:
        raise
    except (TypeError, ValueError, ArithmeticError, MemoryError, RuntimeError) as exc:  # the constructor's own checks
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise UserError(f"bad options for strategy {name!r}: {text}") from None


# -- option checks --------------------------------------------------------------------------------
#: Words accepted for a boolean option, in any case.
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
#: Largest magnitude of an integer option (numpy's int64: every count fits in an array index).
INT_LIMIT = 2**63 - 1
_KIND_WORDS = {"bool": "a boolean (true/false, yes/no, on/off, 1/0)", "int": "an integer", "float": "a finite number"}
_PASSED = frozenset({"self", "space", "seed"})


def parse_bool(value: Any) -> bool:
    """``value`` as a boolean: a bool, 0 or 1, or one of :data:`TRUE_WORDS` / :data:`FALSE_WORDS`
    in any case (``"False"``, ``"no"`` and ``"off"`` are False).

    Raises:
        ValueError: Anything else.
    """
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy's bool too
        return bool(value)
    if isinstance(value, numbers.Real) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(f"expected {_KIND_WORDS['bool']}")


def check_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of strategy ``name`` checked against its constructor and coerced.

    Each option must be a keyword of the constructor (unless it takes ``**kwargs``). Its value is
    coerced by the parameter's annotation, or by the type of its default when it has none: a
    ``bool`` takes a boolean (:func:`parse_bool`: ``"off"`` is False), an ``int`` an integral
    finite number (``3.0`` becomes 3; ``3.5``, ``inf`` and numbers over :data:`INT_LIMIT` are
    refused), a ``float`` a finite number; ``None`` only where the parameter is optional (its
    annotation allows None or its default is None). Other annotations (strings, sequences,
    unions of several kinds) pass as they are. Range checks are the constructor's own
    (:func:`make_strategy`). So every strategy, including one registered later, has its options
    checked before the first trial, and a recorded search resumes with the same values.

    Raises:
        UserError: An unknown option or a value of the wrong kind, in one line.
    """
    cls = strategy_class(name)
    kinds, takes_any = _option_kinds(cls)
    unknown = [k for k in options if k not in kinds]
    if unknown and not takes_any:
        raise UserError(f"strategy {name!r} does not take option(s) {unknown}; it takes {sorted(kinds)}")
    out: dict[str, Any] = {}
    for key, value in options.items():
        kind, optional = kinds.get(key, (None, True))
        try:
            out[key] = _coerce(value, kind, optional)
        except (ValueError, TypeError, OverflowError) as exc:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise UserError(f"strategy {name!r} option {key}: {exc}; got {shown}") from None
    return out


def _coerce(value: Any, kind: str | None, optional: bool) -> Any:
    """``value`` as ``kind`` (``bool``, ``int``, ``float``; None: as it is); raises ValueError."""
    if value is None:
        if optional or kind is None:
            return None
        raise ValueError(f"expected {_KIND_WORDS[kind]}, not null")
    if kind is None:
        return value
    if kind == "bool":
        return parse_bool(value)
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise ValueError(f"expected {_KIND_WORDS[kind]}, not a boolean")
    if isinstance(value, str):
        value = _number_text(value, kind)
    if not isinstance(value, numbers.Real):
        raise ValueError(f"expected {_KIND_WORDS[kind]}")
    if kind == "int":
        if isinstance(value, numbers.Integral):
            number = int(value)
        else:
            x = float(value)
            if not math.isfinite(x) or not x.is_integer():
                raise ValueError("expected an integer")
            number = int(x)
        if abs(number) > INT_LIMIT:
            raise ValueError(f"expected an integer of magnitude at most {INT_LIMIT}")
        return number
    x = float(value)  # OverflowError for an integer too large for a float
    if not math.isfinite(x):
        raise ValueError("expected a finite number")
    return x


def _number_text(text: str, kind: str) -> Any:
    """A number written as text (``"3"``, ``" 2.5 "``, ``"1e3"``); raises ValueError."""
    word = text.strip()
    try:
        return int(word)
    except ValueError:
        pass
    try:
        return float(word)
    except ValueError:
        raise ValueError(f"expected {_KIND_WORDS[kind]}") from None


def _option_kinds(cls: type) -> tuple[dict[str, tuple[str | None, bool]], bool]:
    """Per constructor keyword: its kind (``bool``, ``int``, ``float`` or None: not coerced) and
    whether it takes None; and whether the constructor takes any keyword (``**kwargs``).

    A constructor that takes ``**kwargs`` is taken to hand them to its parent's, whose keywords
    then count too (the first class up the MRO that names a keyword decides its kind).
    """
    kinds: dict[str, tuple[str | None, bool]] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is Strategy or klass is object:
            return kinds, False
        params = inspect.signature(init).parameters.values()
        for p in params:
            if p.name not in kinds and p.name not in _PASSED and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                kinds[p.name] = _kind_of(_annotation(init, p), p.default, p.empty)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return kinds, False
    return kinds, True


def _annotation(init: Any, p: inspect.Parameter) -> Any:
    """The annotation of ``init``'s parameter ``p``, resolved (``p.empty`` when it cannot be)."""
    annotation = p.annotation
    if isinstance(annotation, str):
        namespace = vars(sys.modules.get(getattr(init, "__module__", ""), typing))
        try:
            annotation = eval(annotation, dict(namespace))  # noqa: S307 - the constructor's own annotation
        except Exception:  # noqa: BLE001 - unresolvable (e.g. a TYPE_CHECKING import): go by the default
            annotation = p.empty
    return annotation


def _kind_of(annotation: Any, default: Any, empty: Any) -> tuple[str | None, bool]:
    """(kind, takes None) of one parameter from its annotation, else from its default."""
    optional = default is None
    if annotation is empty or annotation is None:
        for kind, t in (("bool", bool), ("int", int), ("float", float)):
            if type(default) is t:
                return kind, optional
        return None, True
    members = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = list(typing.get_args(annotation))
    if type(None) in members:
        optional = True
        members = [m for m in members if m is not type(None)]
    found = set(members)
    if found == {bool}:
        return "bool", optional
    if found == {int}:
        return "int", optional
    if found and found <= {int, float}:
        return "float", optional
    return None, True
