"""The Genotype value object: an architecture description, never an ``nn.Module``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from workbench.errors import InvalidGenotype


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class Genotype:
    """An immutable, hashable architecture description.

    A genotype is a space name (versioned, e.g. ``"chain-v1"``) plus a JSON-able spec whose
    layout the space defines. Two genotypes are equal when their specs are identical; the
    :attr:`key` is the *canonical* identity (isomorphic graphs and inert edges share a key),
    computed by the space that owns the genotype.

    Attributes:
        space: Versioned name of the search space that owns this genotype.
        spec: The spec as canonical JSON text (sorted keys, compact); use :attr:`value`.
    """

    space: str
    spec: str

    @classmethod
    def of(cls, space: str, value: Any) -> Genotype:
        """Build a genotype from a JSON-able value (dicts, lists, str, int, float, bool, None)."""
        try:
            text = _canonical_json(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidGenotype(f"genotype spec is not JSON-serialisable: {exc}") from None
        return cls(space=space, spec=text)

    @property
    def value(self) -> Any:
        """The spec as a fresh Python object (dicts and lists); mutating it changes nothing."""
        return json.loads(self.spec)

    @property
    def key(self) -> str:
        """Canonical key: equal for genotypes that describe the same function."""
        from workbench.space.registry import canonical_form

        digest = hashlib.sha1(f"{self.space}|{canonical_form(self)}".encode()).hexdigest()
        return digest[:16]

    def to_json(self) -> str:
        """JSON text of ``{"space": ..., "spec": ...}``; :meth:`from_json` reads it back."""
        return _canonical_json({"space": self.space, "spec": self.value})

    @classmethod
    def from_json(cls, text: str | bytes) -> Genotype:
        """Parse :meth:`to_json` output; raises :class:`InvalidGenotype` on malformed input."""
        try:
            obj = json.loads(text)
        except (ValueError, TypeError, RecursionError) as exc:
            raise InvalidGenotype(f"genotype JSON is malformed: {exc}") from None
        if not isinstance(obj, dict) or set(obj) != {"space", "spec"}:
            raise InvalidGenotype(
                "genotype JSON must be an object with exactly 'space' and 'spec'; "
                f"got {type(obj).__name__} {sorted(obj) if isinstance(obj, dict) else ''}".rstrip()
            )
        if not isinstance(obj["space"], str):
            raise InvalidGenotype("genotype 'space' must be a string")
        return cls.of(obj["space"], obj["spec"])

    def __str__(self) -> str:
        return f"{self.space}:{self.spec}"
