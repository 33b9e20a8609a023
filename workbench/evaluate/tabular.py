"""Tabular evaluation: look a NAS-Bench-Graph architecture up instead of training it.

Metrics of one architecture (all floats):

* ``val_accuracy``: the table's ``valid_perf`` (the search objective by default);
* ``test_accuracy``: the table's ``perf``;
* ``latency``: the table's ``latency`` (seconds, as recorded by the benchmark);
* ``params``: the table's ``para`` (millions) as a parameter count;
* ``train_seconds``: a *simulated* training cost, ``600 * latency``
  (:data:`workbench.data.nbgraph_tables.TRAIN_COST_PER_LATENCY`: a nominal 200 epochs of
  forward + backward passes at about 3x the forward latency). The light tables carry no
  measured training time, so this only ranks architectures by cost; it is not a wall time.

On ogbn-proteins the benchmark's ``valid_perf``/``perf`` are ROC-AUC, not accuracy; they keep
the same metric names so every task reads alike.

The light tables hold no per-epoch data, so ``curve`` is a single point (epoch 0) with the
final validation and test values, and ``on_epoch`` is called once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workbench.data import nbgraph_tables as tables
from workbench.data.nbgraph_tables import TableArrays
from workbench.errors import InvalidGenotype, TrialFailed, UserError
from workbench.evaluate.base import EpochCallback, EvalResult
from workbench.space.genotype import Genotype
from workbench.space.nbgraph import NBGraphSpace

METRICS: tuple[str, ...] = ("val_accuracy", "test_accuracy", "latency", "params", "train_seconds")

__all__ = ["METRICS", "TableArrays", "TabularEvaluator", "table_arrays"]


def table_arrays(dataset: str) -> TableArrays:
    """Metrics of every architecture of ``dataset``, aligned with ``NBGraphSpace(dataset).pool()``.

    Returns a :class:`TableArrays` named tuple ``(val_accuracy, test_accuracy, latency, params)``
    of read-only `n` float64 arrays (``.train_seconds`` gives the simulated cost). Built once per
    process (a few hundred ms for the first dataset), then returned from cache.
    """
    return tables.table_arrays(dataset)


class TabularEvaluator:
    """Evaluator protocol over a NAS-Bench-Graph table: a lookup, deterministic, no weights.

    Args:
        dataset: NAS-Bench-Graph dataset name (``cora``, ..., ``proteins``).
        objective: Which metric is the objective; one of :data:`METRICS`.

    Raises:
        UserError: For an unknown dataset or objective.
    """

    def __init__(self, dataset: str, objective: str = "val_accuracy") -> None:
        if objective not in METRICS:
            raise UserError(f"unknown objective {objective!r} for a tabular task; expected one of {list(METRICS)}")
        self.space = NBGraphSpace(dataset)
        self.dataset = self.space.dataset
        self.objective = objective

    def __repr__(self) -> str:
        return f"TabularEvaluator(dataset={self.dataset!r}, objective={self.objective!r})"

    def arrays(self) -> TableArrays:
        """:func:`table_arrays` of this evaluator's dataset."""
        return table_arrays(self.dataset)

    def metrics_of(self, genotype: Genotype) -> dict[str, float]:
        """The looked-up metrics of one architecture; raises :class:`TrialFailed` if unknown."""
        try:
            key = self.space.key_of(genotype)
        except InvalidGenotype as exc:
            raise TrialFailed(f"not in the benchmark table: {exc}") from None
        row = tables.load_table(self.dataset)[key]
        latency = float(row["latency"])
        return {
            "val_accuracy": float(row["valid_perf"]),
            "test_accuracy": float(row["perf"]),
            "latency": latency,
            "params": float(round(row["para"] * 1e6)),
            "train_seconds": tables.TRAIN_COST_PER_LATENCY * latency,
        }

    def evaluate(
        self,
        genotype: Genotype,
        *,
        seed: int = 0,
        init_state: Mapping[str, Any] | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> EvalResult:
        """Look ``genotype`` up; ``seed`` and ``init_state`` have no effect on a table."""
        metrics = self.metrics_of(genotype)
        point = {"val_accuracy": metrics["val_accuracy"], "test_accuracy": metrics["test_accuracy"]}
        if on_epoch is not None:
            on_epoch(0, dict(point))
        return EvalResult(
            metrics=metrics,
            curve=[point],
            state_dict=None,
            notes={
                "evaluator": "tabular",
                "benchmark": f"nas-bench-graph/{self.dataset}",
                "train_seconds": "simulated: 600 x latency",
            },
        )
