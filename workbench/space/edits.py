"""Morphism steps: named, JSON-able edits of a genotype that a child's weights can follow.

A :class:`MorphismStep` says *which* function-preserving edit (``op``), *where* (``site``) and
*how* (``params``). It lives in the space layer so that strategies (which propose steps) and
:mod:`workbench.morph` (which replays them on weights) share it without importing each other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workbench.errors import InvalidGenotype


def _scalar(v: Any) -> Any:
    """A plain JSON scalar (numpy scalars become Python ones)."""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, (list, tuple)):
        return tuple(_scalar(x) for x in v)
    return v


@dataclass(frozen=True)
class MorphismStep:
    """One network-morphism edit: an operator name, where it applies, and its settings.

    Attributes:
        op: Operator name (``deepen``, ``widen``, ``skip``, ``enlarge_kernel``).
        site: Where, in the parent genotype's own indexing (a chain layer position, a DAG node
            or an ``(input, node)`` edge).
        params: Sorted ``(name, value)`` pairs of JSON scalars (a target width, a kernel, ...).
    """

    op: str
    site: tuple[Any, ...] = ()
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, op: str, site: Sequence[Any] = (), **params: Any) -> MorphismStep:
        """A step with normalised site and params (numpy scalars to Python, params sorted)."""
        return cls(
            op=str(op),
            site=tuple(_scalar(s) for s in site),
            params=tuple(sorted((str(k), _scalar(v)) for k, v in params.items())),
        )

    def param(self, name: str, default: Any = None) -> Any:
        """The value of parameter ``name`` (``default`` when absent)."""
        for k, v in self.params:
            if k == name:
                return v
        return default

    def to_dict(self) -> dict[str, Any]:
        """``{"op": ..., "site": [...], "params": {...}}`` (JSON-able)."""
        return {"op": self.op, "site": list(self.site), "params": {k: v for k, v in self.params}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MorphismStep:
        """Read :meth:`to_dict` output; raises :class:`InvalidGenotype` when malformed."""
        if not isinstance(d, Mapping) or not isinstance(d.get("op"), str):
            raise InvalidGenotype(f"a morphism step must be an object with a string 'op'; got {d!r}")
        site = d.get("site", [])
        params = d.get("params", {})
        if isinstance(params, (list, tuple)):  # the dataclass layout: [[name, value], ...]
            try:
                params = {str(k): v for k, v in params}
            except (TypeError, ValueError):
                raise InvalidGenotype(f"morphism step params must be an object; got {params!r}") from None
        if not isinstance(site, (list, tuple)) or not isinstance(params, Mapping):
            raise InvalidGenotype(f"morphism step needs a list 'site' and an object 'params'; got {d!r}")
        return cls.make(d["op"], site, **params)

    def __str__(self) -> str:
        where = ",".join(str(s) for s in self.site)
        extra = ",".join(f"{k}={v}" for k, v in self.params)
        return f"{self.op}({where}{'; ' + extra if extra else ''})"


def steps_to_json(steps: Iterable[MorphismStep | Mapping[str, Any]]) -> str:
    """JSON text of a list of steps (steps or their dicts)."""
    out = [s.to_dict() if isinstance(s, MorphismStep) else MorphismStep.from_dict(s).to_dict() for s in steps]
    return json.dumps(out, separators=(",", ":"), sort_keys=True)


def steps_from_json(text: str | None) -> tuple[MorphismStep, ...]:
    """Parse :func:`steps_to_json` output (empty or None: no steps)."""
    if not text:
        return ()
    try:
        raw = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InvalidGenotype(f"morphism steps are not valid JSON: {exc}") from None
    if not isinstance(raw, list):
        raise InvalidGenotype(f"morphism steps must be a JSON list; got {type(raw).__name__}")
    return tuple(MorphismStep.from_dict(d) for d in raw)
