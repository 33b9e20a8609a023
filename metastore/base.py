"""The Metastore contract: every search and trial, durable, read back fast."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from metastore.errors import NotFound
from metastore.records import SearchRecord, TaskHistory, TrialRecord


class Metastore(ABC):
    """Where searches (parent runs) and trials (child runs) are recorded.

    Contract:
        * A write is durable when the call returns; finished trials are immutable
          (``finish_trial`` twice raises :class:`metastore.errors.StoreError`).
        * Ids are strings; a search id is accepted by unique prefix in :meth:`resolve_search`.
        * Unknown ids raise :class:`metastore.errors.NotFound`.
        * Trials are returned in the order they were started (``number``).
        * Weights are saved with ``torch.save`` and loaded with ``torch.load(weights_only=True)``;
          a missing or unreadable weight file makes :meth:`load_weights` return None.
    """

    uri: str
    #: Whether writes can succeed (a SQLite store opened to read may be read-only).
    writable: bool = True

    # -- writing -------------------------------------------------------------------------
    @abstractmethod
    def start_search(
        self,
        task: str,
        *,
        strategy: str,
        space: str,
        seed: int,
        objective: str,
        spec: Mapping[str, Any] | None = None,
        meta_features: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> str:
        """Create the parent run of a search (and the task's experiment if needed); return its id.

        ``name`` is the search's readable name (the MLflow run name); a ``{id}`` in it becomes
        the first characters of the search's id (:func:`metastore.schema.search_name`); the store
        makes one up from the strategy, task and seed when it is None.
        """

    @abstractmethod
    def finish_search(
        self, search_id: str, *, state: str = "finished", summary: Mapping[str, float] | None = None
    ) -> None:
        """Record the final summary metrics and end the parent run."""

    @abstractmethod
    def start_trial(
        self,
        search_id: str,
        genotype_json: str,
        genotype_key: str,
        *,
        params: Mapping[str, Any] | None = None,
        parent_trial: str | None = None,
        tags: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> str:
        """Create a RUNNING child run under the search; return the trial id.

        The trial's readable name is ``t<number> <label>`` (``t03 conv5x64>dense64``; the store
        hands out the number), ``trial-<number>`` without a label.
        """

    @abstractmethod
    def log_metrics(self, trial_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics of a running trial (``step`` = epoch for learning curves)."""

    def log_metric_steps(self, trial_id: str, points: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        """Log several steps of a running trial's metrics at once (``(step, metrics)`` in order).

        The same as one :meth:`log_metrics` per point; stores override it to write them in one go.
        """
        for step, metrics in points:
            self.log_metrics(trial_id, metrics, step=step)

    def log_search_steps(self, search_id: str, points: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        """Log a search's own step series (``(step, metrics)``, step = trial number: its progress,
        :data:`metastore.schema.PROGRESS_PREFIX`) in one write, so that several searches' progress
        can be charted side by side; :meth:`metric_history` reads it back. A store that keeps no
        series ignores it.

        Raises:
            NotFound: Unknown search.
        """

    @abstractmethod
    def finish_trial(
        self,
        trial_id: str,
        *,
        state: str,
        metrics: Mapping[str, float] | None = None,
        reason: str | None = None,
    ) -> None:
        """End a trial as ``finished`` or ``failed`` with its final metrics and failure reason."""

    @abstractmethod
    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set string tags on a search or a trial."""

    @abstractmethod
    def update_spec(self, search_id: str, changes: Mapping[str, Any]) -> None:
        """Replace top-level entries of a search's recorded spec (e.g. the ``budget`` that
        ``nasw resume --budget`` sets), so that :meth:`search` and a later resume read them."""

    @abstractmethod
    def log_file(self, run_id: str, path: str, artifact_dir: str | None = None) -> None:
        """Attach a local file (a plot, a report) to a search or trial as an artifact."""

    @abstractmethod
    def save_weights(self, trial_id: str, state_dict: Mapping[str, Any]) -> None:
        """Store a trial's trained weights (a torch state dict)."""

    @abstractmethod
    def load_weights(self, trial_id: str) -> dict[str, Any] | None:
        """Load weights safely (``weights_only=True``); None when missing or corrupt."""

    # -- reading -------------------------------------------------------------------------
    @abstractmethod
    def search(self, search_id: str) -> SearchRecord:
        """One search by full id."""

    @abstractmethod
    def searches(self, task: str | None = None) -> list[SearchRecord]:
        """All searches (of one task), newest first."""

    @abstractmethod
    def trials(self, search_id: str) -> list[TrialRecord]:
        """A search's trials in start order."""

    @abstractmethod
    def trial(self, trial_id: str) -> TrialRecord:
        """One trial by full id."""

    @abstractmethod
    def histories(
        self, space: str, metric: str, exclude_task: str | None = None, *, full_fidelity_only: bool = True
    ) -> dict[str, TaskHistory]:
        """Finished trials of every task in ``space``, keyed by task, for warm starts.

        ``full_fidelity_only`` (the default) leaves out trials measured at a lower fidelity (a
        scheduler's lower rungs, trials stopped early: their ``nasw.fidelity`` tag says
        ``"full": false``); with False they are kept and ``TaskHistory.fidelities`` tells them
        apart.
        """

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """Every ``(step, value)`` point logged for one metric of a trial (or a search, where the
        backend keeps them), in step order; an empty list when the metric was never logged.

        Used for learning curves (``val_accuracy`` per epoch). Points logged at the same step
        keep their logging order (a trial's final metrics repeat its last epoch's step).

        Raises:
            NotFound: Unknown run.
            NotImplementedError: The backend keeps no metric history.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no metric history")

    def resolve_search(self, prefix: str) -> str:
        """The full id of the one search whose id starts with ``prefix``."""
        prefix = prefix.strip()
        if not prefix:
            raise NotFound("empty search id")
        hits = [s.search_id for s in self.searches() if s.search_id.startswith(prefix)]
        if not hits:
            raise NotFound(f"no search with id {prefix!r} in {self.uri}")
        if len(hits) > 1:
            raise NotFound(f"search id prefix {prefix!r} is ambiguous ({len(hits)} searches match)")
        return hits[0]

    def mark_stale(self, search_id: str, reason: str = "interrupted") -> int:
        """Mark RUNNING trials of a search as failed (for resume); return how many."""
        n = 0
        for t in self.trials(search_id):
            if t.state == "running":
                self.finish_trial(t.trial_id, state="failed", reason=reason)
                n += 1
        return n
