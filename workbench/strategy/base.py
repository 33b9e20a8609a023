"""The ask/tell Strategy contract, with the Proposal and Observation records it exchanges."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from workbench.space.base import SearchSpace
from workbench.space.edits import MorphismStep
from workbench.space.genotype import Genotype

__all__ = ["MorphismStep", "Observation", "Proposal", "Strategy", "fidelity_level", "highest_fidelity"]


@dataclass(frozen=True)
class Proposal:
    """A candidate to evaluate, optionally inheriting weights from a parent trial."""

    genotype: Genotype
    parent_trial: str | None = None
    morphisms: tuple[MorphismStep, ...] = ()


@dataclass(frozen=True)
class Observation:
    """The outcome of one trial, as a strategy sees it.

    Attributes:
        genotype: What was evaluated.
        value: The search objective (higher is better), or None when the trial failed.
        objectives: Every recorded objective by name (e.g. ``{"accuracy": .9, "latency": 3e-3}``).
        trial_id: The metastore's id of the trial, when it was recorded.
        fidelity: The fidelity it was measured at (e.g. ``{"epochs": 10}``); empty = full.
    """

    genotype: Genotype
    value: float | None
    objectives: Mapping[str, float] = field(default_factory=dict)
    trial_id: str | None = None
    fidelity: Mapping[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the trial succeeded with a finite objective."""
        return self.value is not None and math.isfinite(self.value)


def fidelity_level(obs: Observation) -> float:
    """The fidelity level of an observation: its recorded ``level`` (the relative training cost
    of its rung), 1.0 (full) when it has none."""
    try:
        return float(obs.fidelity.get("level", 1.0))
    except (TypeError, ValueError, AttributeError):
        return 1.0


def highest_fidelity(observations: Sequence[Observation], min_count: int = 3) -> list[Observation]:
    """The observations of the highest fidelity level that has at least ``min_count`` successes
    (BOHB's rule for its model), or all of them when every level has fewer or only one level
    exists. Multi-fidelity searches mix rungs whose values are not comparable."""
    levels = sorted({fidelity_level(o) for o in observations}, reverse=True)
    if len(levels) <= 1:
        return list(observations)
    for level in levels:
        same = [o for o in observations if fidelity_level(o) == level]
        if sum(1 for o in same if o.ok) >= min_count:
            return same
    return list(observations)


class Strategy(ABC):
    """Proposes genotypes (ask) and learns from their outcomes (tell).

    Contract:
        * Deterministic given ``seed``, the prior, and the sequence of tells: a fresh strategy
          told a search's observations proposes what the original would have proposed next
          (resume replays the metastore; strategies are never pickled).
        * ``ask`` never re-proposes a genotype (by key) that was told or is pending, while the
          space has unseen members.
        * Failed observations (``value is None``) are remembered but never treated as good.
        * The objective is maximised.
    """

    name: ClassVar[str]

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = int(seed)
        self.history: list[Observation] = []
        self._seen: set[str] = set()

    def rng_for(self, pending: Sequence[Genotype] = (), salt: int = 0) -> np.random.Generator:
        """A generator that depends only on the seed, the number of tells and pending points."""
        return np.random.default_rng([self.seed, len(self.history), len(pending), salt])

    @abstractmethod
    def ask(self, n: int = 1, *, pending: Sequence[Genotype] = ()) -> list[Proposal]:
        """Propose ``n`` new candidates; ``pending`` are being evaluated and must not repeat."""

    def tell(self, observations: Sequence[Observation]) -> None:
        """Record outcomes; subclasses that keep models extend this."""
        for obs in observations:
            self.history.append(obs)
            self._seen.add(obs.genotype.key)

    @property
    def successes(self) -> list[Observation]:
        """Observations with a finite objective."""
        return [o for o in self.history if o.ok]

    @property
    def incumbent(self) -> Observation | None:
        """The best successful observation so far."""
        ok = self.successes
        return max(ok, key=lambda o: o.value) if ok else None

    def is_new(self, g: Genotype, taken: set[str]) -> bool:
        """True when ``g`` was neither told nor is in ``taken`` (keys)."""
        k = g.key
        return k not in self._seen and k not in taken

    def fresh_sample(self, rng: np.random.Generator, taken: set[str], tries: int = 200) -> Genotype:
        """Sample an unseen genotype (falls back to a seen one if the space looks exhausted)."""
        g = self.space.sample(rng)
        for _ in range(tries):
            if self.is_new(g, taken):
                return g
            g = self.space.sample(rng)
        return g
