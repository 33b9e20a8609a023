"""What a search reports while it runs (callbacks for a live display) and when it ends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from metastore import TrialRecord
from workbench.space.genotype import Genotype
from workbench.strategy.base import Observation


class Progress:
    """Callbacks the loop makes; the CLI draws a progress bar from them. All are optional."""

    def search_started(self, search_id: str, budget: int, done: int) -> None: ...

    def trial_started(self, number: int, genotype: Genotype) -> None: ...

    def epoch(self, number: int, epoch: int, metrics: Mapping[str, float]) -> None: ...

    def trial_finished(self, number: int, obs: Observation, best: float | None) -> None: ...


@dataclass
class SearchResult:
    """What a finished (or stopped) search produced."""

    search_id: str
    n_trials: int
    n_failed: int
    best_trial: TrialRecord | None
    summary: dict[str, float] = field(default_factory=dict)
