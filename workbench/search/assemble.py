"""Building a search: the task's space and evaluator, the strategy (its options completed through
its hooks, its warm start), the executor and fidelities; shared by new and resumed searches."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from metastore import Metastore
from workbench.errors import UserError
from workbench.evaluate.base import Evaluator, traits_of
from workbench.evaluate.factory import evaluator_for, meta_features_for, space_for
from workbench.execute.base import Executor
from workbench.search.budget import Budget
from workbench.search.fidelity import fidelity_setup
from workbench.search.oneshot import OneShotSpec, oneshot_phase, split_options
from workbench.search.progress import Progress
from workbench.search.run import Search
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.strategy.base import Strategy, StrategySetup
from workbench.strategy.registry import check_options, make_strategy, strategy_class
from workbench.task import Task, parse_task_dict
from workbench.transfer.plan import WarmStartPlan, plan_warm_start
from workbench.transfer.sources import parse_warm_start


@dataclass(frozen=True)
class Running:
    """How a search's trials run: ``--executor``, ``--workers``, ``--address``, ``--device``."""

    executor: str = "inprocess"
    workers: int = 1
    address: str | None = None
    device: str | None = None


def new_search(
    store: Metastore,
    task: Task,
    strategy_name: str,
    budget: int,
    seed: int = 0,
    *,
    strategy_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    device: str | None = None,
    tags: Mapping[str, str] | None = None,
    executor: str = "inprocess",
    workers: int = 1,
    address: str | None = None,
    warm_start: str | None = None,
    echo: Callable[[str], None] | None = None,
    scheduler: str | None = None,
    scheduler_options: Mapping[str, Any] | None = None,
    stop_early: str | None = None,
    stop_options: Mapping[str, Any] | None = None,
    estimator: str | None = None,
    name: str | None = None,
) -> Search:
    """Build every object a search needs and create its parent run.

    ``name`` is the search's readable name (its MLflow run name); by default
    :func:`default_search_name` makes one from the task, strategy, key options and the start
    of the search's id (``digits·evolution·population=20·3f2a9c``).

    ``warm_start`` is ``none``, ``auto`` or ``TASK[,TASK...]``: earlier searches of other tasks
    in the same space are read from the store, weighed (meta-features first, ranking agreement
    once the target has data) and offered to the strategy; ``echo`` receives a line saying which.

    ``scheduler`` (``sh``, ``hyperband``, ``asha``; options e.g. ``eta``, ``n_configs``,
    ``promote``) runs the search over the task's fidelities; then ``budget`` counts
    full-fidelity-equivalent trainings (:class:`Budget`). ``stop_early="lc"`` stops trials by
    learning-curve extrapolation (options ``threshold``, ``min_epochs``, ``every``).

    ``estimator="oneshot"`` scores the trials with a weight-sharing supernet trained once and
    retrains the best (``retrain_top`` and the other :data:`workbench.oneshot.settings.ESTIMATOR_OPTIONS`
    are taken out of ``strategy_options``); see :mod:`workbench.search.oneshot`.
    """
    plan_budget = Budget.of(budget, scheduled=bool(scheduler))
    strategy_options, oneshot_options = split_options(estimator, strategy_options)
    space = space_for(task)
    evaluator = evaluator_for(task, device=device)
    cls = strategy_class(strategy_name)
    options = check_options(strategy_name, strategy_options or {})  # types first: recorded as coerced
    try:
        warm, warm_error = _warm_plan(store, task, space, evaluator, cls, options, warm_start), None
    except UserError as exc:
        if parse_warm_start(warm_start)[0] != "tasks":
            raise
        warm, warm_error = None, exc  # no trial history of a named task: its supernet may still do
    setup = StrategySetup(
        budget=plan_budget.amount,
        input_shape=traits_of(evaluator).input_shape,
        find_trial=_trial_finder(store),
        warm=warm.offer if warm is not None else None,
    )
    options = cls.prepare_options(options, setup)
    if warm is not None and echo is not None:
        echo(warm.describe())
    search = _assemble(
        store,
        task,
        space,
        evaluator,
        strategy_name,
        options,
        seed,
        plan_budget,
        warm,
        Running(executor, workers, address, device),
        progress,
        (scheduler, scheduler_options, stop_early, stop_options),
        OneShotSpec(estimator, oneshot_options, warm_start if warm_start and warm_start != "none" else None),
    )
    source = search.oneshot.supernet_source(store, task.name) if search.oneshot is not None else None
    if warm_error is not None and source is None:
        if search.executor is not None:
            search.executor.shutdown()
        raise warm_error
    if search.oneshot is not None and search.oneshot.spec.warm_start and echo is not None:
        echo(source.describe() if source is not None else "supernet warm start: no supernet of another task fits")
    if not name:
        name = default_search_name(
            task.name,
            strategy_name,
            strategy_options,
            budget,
            scheduler=scheduler,
            warm_start=warm_start,
            stop_early=stop_early,
            estimator=estimator,
        )
    search.start(options, tags, name=name)
    return search


#: Characters of one option value in a default search name.
_NAME_VALUE_CHARS = 12
#: Options named in a default search name (the rest are in the spec).
_NAME_OPTIONS = 3


def default_search_name(
    task: str,
    strategy: str,
    options: Mapping[str, Any] | None = None,
    budget: int | None = None,
    *,
    scheduler: str | None = None,
    warm_start: str | None = None,
    stop_early: str | None = None,
    estimator: str | None = None,
) -> str:
    """A readable, unique name for a search: task, strategy, the options the user gave (at most
    three, values cut), budget, scheduler, early stopping, warm start, estimator, and ``{id}``,
    which the store replaces by the start of the search's id (:func:`metastore.schema.search_name`)."""
    from metastore.schema import NAME_ID

    def short(value: Any) -> str:
        text = " ".join(str(value).split())
        return text if len(text) <= _NAME_VALUE_CHARS else text[: _NAME_VALUE_CHARS - 1] + "…"

    parts = [task, strategy]
    given = list((options or {}).items())
    parts += [f"{k}={short(v)}" for k, v in given[:_NAME_OPTIONS]]
    if len(given) > _NAME_OPTIONS:
        parts.append(f"+{len(given) - _NAME_OPTIONS}")
    if budget is not None:
        parts.append(f"b{budget}")
    parts += [x for x in (scheduler, stop_early and f"stop={stop_early}", estimator) if x]
    if warm_start and warm_start != "none":
        parts.append(f"warm={short(warm_start)}")
    return "·".join(str(p) for p in parts + [NAME_ID])


def resume_search(
    store: Metastore,
    search_id: str,
    *,
    budget: int | None = None,
    progress: Progress | None = None,
    device: str | None = None,
    force: bool = False,
    executor: str = "inprocess",
    workers: int = 1,
    address: str | None = None,
) -> Search:
    """Rebuild a recorded search from its spec and replay its trials into a fresh strategy.

    The recorded options are used as they are (they were completed when the search began) and
    a warm start offers exactly the recorded prior.
    """
    rec = store.search(search_id)
    spec = rec.spec
    try:
        task = parse_task_dict(spec["task"])
        strategy_name = spec["strategy"]
        options = dict(spec.get("strategy_options") or {})
        total = int(budget if budget is not None else spec["budget"])
        options = check_options(strategy_name, options)  # a search recorded before options were checked
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"search {search_id} has no usable spec to resume from ({exc})") from None
    sch = spec.get("scheduler") if isinstance(spec.get("scheduler"), Mapping) else {}
    stop = spec.get("stop_early") if isinstance(spec.get("stop_early"), Mapping) else {}
    plan_budget = Budget.of(total, scheduled=bool(sch.get("name")))
    space = space_for(task)
    evaluator = evaluator_for(task, device=device)
    ws = spec.get("warm_start") if isinstance(spec.get("warm_start"), Mapping) else None
    warm = None
    if ws:
        names = ",".join(ws.get("sources") or {}) or "auto"
        prior = [Genotype.from_json(t) for t in ws.get("prior") or []]
        warm = _warm_plan(store, task, space, evaluator, strategy_class(strategy_name), options, names, prior)
    search = _assemble(
        store,
        task,
        space,
        evaluator,
        strategy_name,
        options,
        rec.seed,
        plan_budget,
        warm,
        Running(executor, workers, address, device),
        progress,
        (sch.get("name"), sch.get("options"), stop.get("rule"), stop.get("options")),
        OneShotSpec.from_spec(spec),
    )
    search.replay(search_id, force=force)
    if budget is not None and total != spec.get("budget"):
        store.update_spec(search_id, {"budget": total})  # the recorded budget is the new total
    return search


def _assemble(
    store: Metastore,
    task: Task,
    space: SearchSpace,
    evaluator: Evaluator,
    strategy_name: str,
    options: Mapping[str, Any],
    seed: int,
    budget: Budget,
    warm: WarmStartPlan | None,
    running: Running,
    progress: Progress | None,
    fidelity: tuple,
    oneshot: OneShotSpec | None = None,
) -> Search:
    """The strategy (with its warm start and price of genotypes), the one-shot phase (a supernet
    for an estimator or for the strategy's relaxation), the executor, the fidelities, and the
    :class:`Search` that holds them."""
    cls = strategy_class(strategy_name)
    warm_kwargs = cls.warm_start_options(warm.offer, options) if warm is not None else {}
    strategy = make_strategy(strategy_name, space, seed=seed, **options, **warm_kwargs)
    check_objectives(strategy.objectives, task)  # before any executor starts
    evaluator, phase = oneshot_phase(
        oneshot or OneShotSpec(),
        space,
        evaluator,
        strategy,
        workers=running.workers,
        scheduled=bool(fidelity[0] or fidelity[2]),
        seed=seed,
    )
    price_genotypes(strategy, evaluator)
    execu = make_executor(
        running.executor,
        running.workers,
        store,
        task,
        device=running.device,
        address=running.address,
        trainable=space.trainable,
    )
    fkw = fidelity_setup(task, space, evaluator, budget.amount, *fidelity)
    return Search(
        store, task, strategy, evaluator, space, budget, seed, progress, executor=execu, warm=warm, oneshot=phase, **fkw
    )


def reported_metrics(task: Task) -> tuple[str, ...]:
    """The metrics every finished trial of ``task`` reports: what ``--objectives`` may name.

    A table lookup reports :data:`workbench.evaluate.tabular.METRICS`; a trained network the
    metrics :meth:`TrainedEvaluator.train <workbench.evaluate.trainer.TrainedEvaluator.train>`
    measures (:data:`TRAINED_METRICS`).
    """
    if task.kind == "tabular":
        from workbench.evaluate.tabular import METRICS

        return METRICS
    return TRAINED_METRICS


#: The metrics of a trained trial (``TrainedEvaluator.train``; a test checks them against a run).
TRAINED_METRICS: tuple[str, ...] = (
    "val_accuracy",
    "test_accuracy",
    "train_loss",
    "params",
    "latency",
    "train_seconds",
    "epochs",
)


def check_objectives(objectives: Sequence[Any], task: Task) -> None:
    """Refuse objectives (a strategy's ``objectives``: names with an optional leading ``-``) that
    no trial of ``task`` reports, before the search starts: else the search would run to its end
    with no Pareto front.

    Raises:
        UserError: An unknown metric, in one line with the metrics the task reports.
    """
    from workbench.strategy.pareto import parse_objectives

    try:
        keys = [o.key for o in parse_objectives([str(o) for o in objectives or ()])]
    except ValueError as exc:
        raise UserError(f"bad objectives: {exc}") from None
    known = reported_metrics(task)
    unknown = [k for k in keys if k not in known]
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise UserError(
            f"objective(s) {names} not reported by task {task.name!r} ({task.kind}); it reports {', '.join(known)}"
        )


def _warm_plan(
    store: Metastore,
    task: Task,
    space: SearchSpace,
    evaluator: Evaluator,
    cls: type[Strategy],
    options: Mapping[str, Any],
    warm_start: str | None,
    prior: Sequence[Genotype] | None = None,
) -> WarmStartPlan | None:
    """The warm-start plan of a new (or, with its recorded ``prior``, resumed) search, or None."""
    if not warm_start or warm_start == "none":
        return None
    histories = store.histories(space.name, task.objective, exclude_task=task.name)
    return plan_warm_start(
        warm_start, histories, space, task.name, meta_features_for(task, evaluator), cls, options, prior
    )


def _trial_finder(store: Metastore) -> Callable[[str], tuple[str, str]]:
    """Resolve a trial id or unique prefix in ``store`` to ``(trial_id, genotype_json)``."""

    def find(trial_id: str) -> tuple[str, str]:
        from workbench.lineage import resolve_trial

        tid = resolve_trial(store, trial_id)
        return tid, store.trial(tid).genotype_json

    return find


def price_genotypes(strategy: Strategy, evaluator: Evaluator) -> None:
    """Give the strategy the multiply-adds of its genotypes' networks for the task's input
    (:meth:`Strategy.set_cost`; strategies do not build networks themselves)."""
    traits = traits_of(evaluator)
    if not traits.trained:
        return
    from workbench.nn.cost import multiply_adds

    shape, n_classes = traits.input_shape, traits.n_classes
    strategy.set_cost(lambda g: multiply_adds(g, shape, n_classes))


def make_executor(
    name: str,
    workers: int,
    store: Metastore,
    task: Task,
    *,
    device: str | None = None,
    address: str | None = None,
    trainable: bool = True,
) -> Executor | None:
    """The executor for ``--executor NAME --workers N`` (None: in process, one at a time)."""
    import json

    from workbench.execute.base import executor_class

    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if name == "inprocess" and workers == 1:
        return None
    if name == "inprocess":
        name = "pool"
    cls = executor_class(name)
    if store.uri.startswith("memory://"):
        raise UserError("parallel workers need a persistent store (sqlite:///... or http://...), not memory://")
    task_json = json.dumps(task.to_dict())
    kwargs: dict[str, Any] = {"device": device, "save_weights": trainable}
    if name == "ray":
        kwargs["address"] = address
    return cls(store, store.uri, task_json, workers, **kwargs)
