"""A warm-start plan: which sources, how much they are trusted, what the strategy is offered.

The strategy decides what it takes (:meth:`workbench.strategy.base.Strategy.warm_start_options`):
BO the sources' observations, evolution and hill climbing their best architectures, RL every
trusted architecture; this module holds no strategy-specific rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.strategy.base import Strategy, WarmSource, WarmStart
from workbench.transfer.sources import (
    MIN_SOURCE_TRIALS,
    SourceWeights,
    choose_sources,
    parse_warm_start,
    sources_from_histories,
    warm_candidates,
    weigh_sources,
    weighed,
)

__all__ = ["MIN_SOURCE_TRIALS", "WarmStartPlan", "plan_warm_start"]


@dataclass
class WarmStartPlan:
    """What a search inherits from earlier searches.

    Attributes:
        mode: ``auto`` or ``tasks``.
        sources: The source tasks used, each with its initial weight.
        weights: Trust per source (meta-feature similarity at the start) and what it is based on.
        prior: Genotypes offered to evaluate first (the best of the trusted sources).
        history: ``task -> [weight after each trial]`` as the target's data arrives.
    """

    mode: str
    sources: list[WarmSource]
    weights: SourceWeights
    prior: list[Genotype]
    history: dict[str, list[float]] = field(default_factory=dict)

    @property
    def offer(self) -> WarmStart:
        """The warm start as a strategy receives it."""
        return WarmStart(tuple(self.sources), tuple(self.prior))

    def to_spec(self) -> dict[str, Any]:
        """JSON-able record for the parent run (what resume needs to rebuild the strategy)."""
        return {
            "mode": self.mode,
            "sources": {s.task: round(self.weights.weights.get(s.task, 0.0), 4) for s in self.sources},
            "prior": [g.to_json() for g in self.prior],
        }

    def describe(self) -> str:
        """One line for the console."""
        if not self.sources:
            return (
                f"warm start: no other task in this space has {MIN_SOURCE_TRIALS} or more finished full-fidelity "
                "trials; starting cold"
            )
        parts = [
            f"{s.task} {self.weights.weights.get(s.task, 0.0):.2f} ({self.weights.how.get(s.task)})"
            for s in self.sources
        ]
        return f"warm start from {len(self.sources)} source(s): " + ", ".join(parts)

    def update(
        self,
        space: SearchSpace,
        target_meta: Mapping[str, float],
        genotypes: Sequence[Genotype],
        values: Sequence[float],
    ) -> SourceWeights:
        """Re-weigh the sources with the target's observations so far; remember the trajectory."""
        w = weigh_sources(self.sources, space, target_meta, genotypes, values)
        self.record_weights(w.weights)
        return w

    def record_weights(self, weights: Mapping[str, float]) -> None:
        """Append each source's current weight to its trajectory (``history``)."""
        for s in self.sources:
            self.history.setdefault(s.task, []).append(round(float(weights.get(s.task, 0.0)), 4))


def plan_warm_start(
    warm_start: str | None,
    histories: Mapping[str, Any],
    space: SearchSpace,
    target_task: str,
    target_meta: Mapping[str, float],
    strategy: type[Strategy],
    options: Mapping[str, Any],
    prior: Sequence[Genotype] | None = None,
) -> WarmStartPlan | None:
    """Choose and weigh sources for ``--warm-start`` (None for ``none``).

    Args:
        warm_start: ``none``, ``auto`` or ``TASK[,TASK...]``.
        histories: ``task -> TaskHistory`` from :meth:`metastore.Metastore.histories`.
        space: The target's space.
        target_task: The target task's name (never its own source).
        target_meta: The target's meta-features.
        strategy: The strategy class (how many architectures it takes as a prior).
        options: The strategy's options.
        prior: The recorded prior of a resumed search (exactly what it was offered); None for
            a new search: the trusted sources' best.
    """
    mode, names = parse_warm_start(warm_start)
    if mode == "none":
        return None
    available = sources_from_histories(histories, space)
    chosen = choose_sources(mode, names, available, target_task)
    weights = weigh_sources(chosen, space, target_meta)
    sources = weighed(chosen, weights)
    if prior is None:
        prior = warm_candidates(sources, weights.weights, strategy.warm_prior_size(options))
    return WarmStartPlan(mode, sources, weights, list(prior))
