"""Build the search space and evaluator a task file describes."""

from __future__ import annotations

from typing import Any

from workbench.errors import UserError
from workbench.evaluate.base import Evaluator
from workbench.space.base import SearchSpace
from workbench.space.registry import make_space
from workbench.task import Task


def space_for(task: Task) -> SearchSpace:
    """The task's search space (``[space] kind`` plus settings)."""
    settings: dict[str, Any] = dict(task.space)
    kind = settings.pop("kind")
    return make_space(kind, **settings)


def evaluator_for(task: Task, device: str | None = None) -> Evaluator:
    """A trainer for trained tasks, a table lookup for tabular ones."""
    if task.kind == "tabular":
        from workbench.evaluate.tabular import TabularEvaluator

        name = task.dataset.get("name")
        if not isinstance(name, str):
            raise UserError(f"task {task.name!r}: tabular [dataset] needs a string 'name'")
        return TabularEvaluator(name, objective=task.objective)
    from workbench.data.base import load_splits
    from workbench.evaluate.trainer import TrainConfig, TrainedEvaluator

    options = {k: v for k, v in task.dataset.items() if k != "loader"}
    split = {k: v for k, v in task.split.items() if k in ("seed", "test", "valid")}
    splits = load_splits(task.dataset["loader"], **split, **options)
    cfg = TrainConfig.from_dict({**task.training, **({"device": device} if device else {})})
    return TrainedEvaluator(splits, cfg, objective=task.objective)


def meta_features_for(task: Task, evaluator: Evaluator) -> dict[str, float]:
    """Declared meta-features, completed with those measured from the data for trained tasks."""
    measured: dict[str, float] = {}
    splits = getattr(evaluator, "splits", None)
    if splits is not None:
        measured = splits.meta_features()
    return {**measured, **task.meta_features}
