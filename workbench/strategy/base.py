"""The ask/tell Strategy contract, with the Proposal and Observation records it exchanges."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from workbench.space.base import SearchSpace
from workbench.space.edits import MorphismStep
from workbench.space.genotype import Genotype
from workbench.space.relaxation import OpWeights, Relaxation

__all__ = [
    "ORIGIN_PRIOR",
    "ORIGIN_TRANSFER",
    "SOURCE_ORIGINS",
    "MorphismStep",
    "Observation",
    "OpWeights",
    "Proposal",
    "Relaxation",
    "Strategy",
    "StrategySetup",
    "WarmSource",
    "WarmStart",
    "fidelity_level",
    "highest_fidelity",
]

#: Architectures a warm start evaluates first, unless a strategy asks for another number.
PRIOR_SIZE = 5


#: A proposal's origin when it is one of a warm start's architectures (the sources' best).
ORIGIN_PRIOR = "prior"
#: A proposal's origin when a model of the warm-start sources chose it.
ORIGIN_TRANSFER = "transfer"
#: Origins that count as the warm start's sources at work.
SOURCE_ORIGINS = frozenset({ORIGIN_PRIOR, ORIGIN_TRANSFER})


@dataclass(frozen=True)
class Proposal:
    """A candidate to evaluate, optionally inheriting weights from a parent trial.

    ``origin`` says where it came from, when the strategy tells: :data:`ORIGIN_PRIOR` (a warm
    start's architecture), :data:`ORIGIN_TRANSFER` (a model of the sources), or a word of the
    strategy's own (``"random"``, ``"model"``, ...); recorded on the trial, so a search can say
    how much its warm start was used.
    """

    genotype: Genotype
    parent_trial: str | None = None
    morphisms: tuple[MorphismStep, ...] = ()
    origin: str = ""


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


@dataclass(frozen=True)
class WarmSource:
    """One earlier task's evaluated architectures, from the store to a warm-started strategy.

    Attributes:
        task: The source task's name.
        genotypes: `n` genotypes, validated against the target's space.
        values: `n` objective values (maximised).
        weight: Trust in the source before the target has data (meta-feature similarity).
        meta_features: The source task's recorded meta-features.
    """

    task: str
    genotypes: tuple[Genotype, ...]
    values: np.ndarray
    weight: float = 0.0
    meta_features: Mapping[str, float] = field(default_factory=dict)

    def standardized(self) -> np.ndarray:
        """Values with zero mean and unit variance (per task)."""
        v = np.asarray(self.values, dtype=float)
        sd = v.std()
        return (v - v.mean()) / (sd if sd > 1e-12 else 1.0)

    def best(self, k: int) -> list[Genotype]:
        """The ``k`` best genotypes, best first (ties in order of evaluation)."""
        order = np.argsort(-np.asarray(self.values), kind="stable")
        return [self.genotypes[i] for i in order[:k]]


@dataclass(frozen=True)
class WarmStart:
    """What a warm-started strategy is offered (see :meth:`Strategy.warm_start_options`).

    Attributes:
        sources: The chosen source tasks, with their initial weights.
        prior: The trusted sources' best architectures, best first
            (:meth:`Strategy.warm_prior_size` of them).
    """

    sources: tuple[WarmSource, ...] = ()
    prior: tuple[Genotype, ...] = ()


@dataclass(frozen=True)
class StrategySetup:
    """What a search knows about its task before its strategy is built
    (see :meth:`Strategy.prepare_options`).

    Attributes:
        budget: The search's ``--budget`` (trials; full trainings under a scheduler).
        input_shape: The task's example shape (trained tasks), None for tabular ones.
        find_trial: Resolves a trial id (or unique prefix) of any search in the store to
            ``(trial_id, genotype_json)``; raises :class:`workbench.errors.NotFound`.
        warm: The warm start on offer, None for a cold search.
    """

    budget: int
    input_shape: tuple[int, ...] | None = None
    find_trial: Callable[[str], tuple[str, str]] | None = None
    warm: WarmStart | None = None


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

    Optional hooks (every one has a default that does nothing; override what applies, as
    Optuna's ``BaseSampler`` documents its optional methods):
        * :meth:`prepare_options` completes the user's options before the strategy is built
          (recorded with the search, so resume rebuilds the same strategy);
        * :meth:`warm_prior_size` and :meth:`warm_start_options` turn a warm start into
          constructor arguments;
        * :meth:`set_cost` receives a price of genotypes (multiply-adds for the task's input);
        * :meth:`source_weights` and :attr:`transfer_model` report the strategy's own trust in
          warm-start sources;
        * :attr:`objectives` names the objectives of a multi-objective search;
        * :meth:`relaxation` asks for op weights learnt on the space's supernet before the first
          ask (gradient-based search), which :meth:`set_op_weights` receives.
    """

    name: ClassVar[str]
    #: The objectives of a multi-objective search (``--objectives``); empty: the scalar value.
    objectives: Sequence[Any] = ()
    #: The strategy's own model of warm-start sources (e.g. ``"rgpe"``), ``""`` without one.
    transfer_model: str = ""

    # -- optional hooks, before the strategy exists -------------------------------------------
    @classmethod
    def prepare_options(cls, options: dict[str, Any], setup: StrategySetup) -> dict[str, Any]:
        """The user's options completed from the search's setup (called once, for a new
        search; the result is recorded). Default: unchanged.

        Raises:
            UserError: An option that cannot be completed (e.g. an unknown start trial).
        """
        return options

    @classmethod
    def warm_prior_size(cls, options: Mapping[str, Any]) -> int:
        """How many of the sources' best architectures a warm start offers as ``prior``."""
        return PRIOR_SIZE

    @classmethod
    def warm_start_options(cls, warm: WarmStart, options: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor arguments that give the strategy a warm start (rebuilt on resume, never
        recorded). Default: ``{}``, the strategy starts cold."""
        return {}

    # -- optional hooks, while the search runs ------------------------------------------------
    def set_cost(self, cost: Callable[[Genotype], float] | None) -> None:
        """Receive a price of genotypes (multiply-adds of their networks for the task's input).
        Default: ignored; strategies do not build networks themselves."""

    def source_weights(self) -> dict[str, float]:
        """The strategy's current trust in each warm-start source; ``{}`` when it keeps none
        (the search then weighs the sources by ranking agreement)."""
        return {}

    def relaxation(self) -> Relaxation | None:
        """The pre-search phase a gradient-based strategy needs: op weights learnt on the space's
        weight-sharing supernet (method and settings), which the search trains once before the
        first ask (and restores on resume) and hands to :meth:`set_op_weights`. Default: None."""
        return None

    def set_op_weights(self, weights: OpWeights) -> None:
        """Receive the op weights :meth:`relaxation` asked for. Default: ignored."""

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

    def prior_proposals(self, prior: Sequence[Genotype], n: int, taken: set[str]) -> list[Proposal]:
        """Up to ``n`` of a warm start's ``prior`` genotypes not yet told or ``taken``, in order,
        as proposals with origin ``prior`` (their keys are added to ``taken``)."""
        out: list[Proposal] = []
        for g in prior:
            if len(out) < n and self.is_new(g, taken):
                out.append(Proposal(g, origin=ORIGIN_PRIOR))
                taken.add(g.key)
        return out

    def fresh_sample(self, rng: np.random.Generator, taken: set[str], tries: int = 200) -> Genotype:
        """Sample an unseen genotype (falls back to a seen one if the space looks exhausted)."""
        g = self.space.sample(rng)
        for _ in range(tries):
            if self.is_new(g, taken):
                return g
            g = self.space.sample(rng)
        return g
