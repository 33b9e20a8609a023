"""Build the search space and evaluator a task file describes."""

from __future__ import annotations

from typing import Any

from workbench.errors import DataError, UserError
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
    from workbench.evaluate.trainer import TrainConfig, TrainedEvaluator

    options = {k: v for k, v in task.dataset.items() if k != "loader"}
    split = {k: v for k, v in task.split.items() if k in ("seed", "test", "valid")}
    splits = _load(task, split, options)
    cfg = TrainConfig.from_dict({**task.training, **({"device": device} if device else {})})
    return TrainedEvaluator(splits, cfg, objective=task.objective)


def _load(task: Task, split: dict[str, Any], options: dict[str, Any]) -> Any:
    """The task's splits; a loader that crashes becomes one clear :class:`DataError`.

    The data is loaded once, before any trial, so a dataset that cannot load stops the search
    before it starts (the CLI prints one ``error:`` line).
    """
    from workbench.data.base import Splits, load_splits

    loader = task.dataset["loader"]
    try:
        splits = load_splits(loader, **split, **options)
    except UserError:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a user's loader may raise anything, even SystemExit
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise DataError(
            f"task {task.name!r}: dataset loader {loader!r} failed: {type(exc).__name__}"
            + (f": {text}" if text else "")
        ) from None
    if not isinstance(splits, Splits):
        raise DataError(
            f"task {task.name!r}: dataset loader {loader!r} returned {type(splits).__name__}, expected Splits"
        )
    return splits


def meta_features_for(task: Task, evaluator: Evaluator) -> dict[str, float]:
    """Declared meta-features, completed with those measured from the data for trained tasks."""
    measured: dict[str, float] = {}
    splits = getattr(evaluator, "splits", None)
    if splits is not None:
        measured = splits.meta_features()
    return {**measured, **task.meta_features}
