"""A warm-start plan: which sources, how much they are trusted, what each strategy is given."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.transfer.sources import (
    MIN_SOURCE_TRIALS,
    SourceHistory,
    SourceWeights,
    choose_sources,
    parse_warm_start,
    sources_from_histories,
    warm_candidates,
    weigh_sources,
)

PRIOR_SIZE = 5


@dataclass
class WarmStartPlan:
    """What a search inherits from earlier searches.

    Attributes:
        mode: ``auto`` or ``tasks``.
        sources: The source tasks used.
        weights: Trust per source (meta-feature similarity at the start).
        prior: Genotypes to evaluate first (the best of the trusted sources).
        strategy_kwargs: Extra constructor arguments for the strategy (not JSON; rebuilt on resume).
        history: ``task -> [weight after each trial]`` as the target's data arrives.
    """

    mode: str
    sources: list[SourceHistory]
    weights: SourceWeights
    prior: list[Genotype]
    strategy_kwargs: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)

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
            return (f"warm start: no other task in this space has {MIN_SOURCE_TRIALS} or more finished full-fidelity "
                    "trials; starting cold")
        parts = [f"{s.task} {self.weights.weights.get(s.task, 0.0):.2f} ({self.weights.how.get(s.task)})" for s in self.sources]
        return f"warm start from {len(self.sources)} source(s): " + ", ".join(parts)

    def update(self, space: SearchSpace, target_meta: Mapping[str, float], genotypes: Sequence[Genotype],
               values: Sequence[float]) -> SourceWeights:
        """Re-weigh the sources with the target's observations so far; remember the trajectory."""
        w = weigh_sources(self.sources, space, target_meta, genotypes, values)
        for s in self.sources:
            self.history.setdefault(s.task, []).append(round(w.weights.get(s.task, 0.0), 4))
        return w


def strategy_kwargs_for(strategy: str, options: Mapping[str, Any], sources: Sequence[SourceHistory],
                        weights: SourceWeights, prior: Sequence[Genotype], accepted: Sequence[str]) -> dict[str, Any]:
    """Constructor arguments that give ``strategy`` the warm start, by what it accepts."""
    kwargs: dict[str, Any] = {}
    if "sources" in accepted:  # multi-task BO: the source observations themselves
        kwargs["sources"] = [(s.task, list(s.genotypes), np.asarray(s.values, float), weights.weights.get(s.task, 0.0))
                             for s in sources]
    elif strategy == "rl" and "prior" in accepted:
        from workbench.strategy.base import Observation

        obs = []
        for s in sources:
            if weights.weights.get(s.task, 0.0) <= 0:
                continue
            z = s.standardized()
            obs += [Observation(g, float(v)) for g, v in zip(s.genotypes, z)]
        kwargs["prior"] = obs
    elif strategy == "hillclimb" and "start_genotype" in accepted and prior and not options.get("start_genotype"):
        kwargs["start_genotype"] = prior[0].to_json()
    elif "prior" in accepted:
        kwargs["prior"] = list(prior)
    return kwargs


def plan_warm_start(
    warm_start: str | None,
    histories: Mapping[str, Any],
    space: SearchSpace,
    target_task: str,
    target_meta: Mapping[str, float],
    strategy: str,
    options: Mapping[str, Any],
    accepted: Sequence[str],
) -> WarmStartPlan | None:
    """Choose and weigh sources for ``--warm-start`` (None for ``none``)."""
    mode, names = parse_warm_start(warm_start)
    if mode == "none":
        return None
    available = sources_from_histories(histories, space)
    sources = choose_sources(mode, names, available, target_task)
    weights = weigh_sources(sources, space, target_meta)
    k = int(options.get("population", PRIOR_SIZE * 2)) // 2 if strategy == "evolution" else PRIOR_SIZE
    prior = warm_candidates(sources, weights.weights, max(1, k))
    kwargs = strategy_kwargs_for(strategy, options, sources, weights, prior, accepted)
    return WarmStartPlan(mode, list(sources), weights, list(prior), kwargs)
