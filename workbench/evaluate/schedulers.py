"""Multi-fidelity schedulers: successive halving, Hyperband and asynchronous successive halving.

A scheduler decides what runs next: a *new* configuration (the search asks its strategy for
one) at some rung, or the *promotion* of a finished trial to the next rung (the same genotype
at a higher fidelity). It knows trials only by id, genotype key and objective value, never
strategies or stores, so the search loop (:mod:`workbench.search`) glues it to the strategy
(BOHB-like: the strategy proposes every new configuration and is told every result, with its
fidelity) and to the executors.

Rungs come from the task's :class:`~workbench.evaluate.fidelity.FidelitySpace`: ``K`` rungs from
the cheapest fidelity to the full one, ``eta`` times more expensive each (e.g. epochs 1, 3, 9,
27).

* :class:`SuccessiveHalving` (``sh``, Jamieson & Talwalkar 2016): brackets of ``n`` new
  configurations at the lowest rung; when a rung has finished, the best ``1/eta`` of it are
  promoted to the next, up to the full fidelity. Brackets repeat while the budget lasts.
* :class:`Hyperband` (``hyperband``, Li et al. 2017): brackets ``s = K-1 .. 0`` of successive
  halving starting at rung ``K-1-s`` with ``ceil(K / (s+1) * eta**s)`` configurations, in turn
  (the aggressive ones explore many cheap configurations, the last trains a few fully).
* :class:`ASHA` (``asha``, Li et al. 2020): asynchronous; whenever a worker is free, promote a
  trial that is in the top ``1/eta`` of its rung's finished results and not yet promoted (the
  highest rung first), else start a new configuration at the lowest rung. No worker waits for
  a rung to fill.

Promotions continue training (the default, ``promote="continue"``): the promoted trial is a new
child run naming the lower-rung trial as ``parent_trial``; it loads that trial's weights and
trains only the epochs between the rungs (:func:`~workbench.evaluate.fidelity.continued`).
When the networks differ in shape between the rungs (width or resolution changed), or with
``promote="retrain"``, it trains from scratch at the higher fidelity instead.

Budget. A scheduler's ``budget`` counts *full-fidelity-equivalent trainings*: every trial costs
:meth:`FidelitySpace.cost` of what it trains (a continued promotion only the epochs it adds),
and a full training from scratch costs 1. SH and Hyperband open a bracket only when its planned
cost fits in what is left (the first always opens), so every bracket reaches the full fidelity;
ASHA starts a new configuration only while the budget lasts and then only promotes. When no
trial reached the full fidelity, :meth:`Scheduler.final_decision` promotes the best of the
highest rung reached to it (one trial past the budget).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from workbench.errors import UserError
from workbench.evaluate.fidelity import Fidelity, FidelitySpace, continued

PROMOTE_MODES = ("continue", "retrain")


@dataclass(frozen=True)
class Decision:
    """What to run next.

    Attributes:
        rung: The rung (0 = cheapest of the space's rungs).
        fidelity: The fidelity to train at (``start_epoch`` set for a continued promotion).
        bracket: The bracket (SH / Hyperband; 0 for ASHA).
        promote: The trial whose genotype is promoted; None for a new configuration.
        cost: Its planned cost in full-training equivalents.
        final: The promotion straight to the full fidelity after the schedule
            (:meth:`Scheduler.final_decision`).
    """

    rung: int
    fidelity: Fidelity
    bracket: int = 0
    promote: str | None = None
    cost: float = 0.0
    final: bool = False

    def record(self, space: FidelitySpace) -> dict[str, Any]:
        """The ``nasw.fidelity`` tag of the trial that runs this decision: the fidelity, ``full``,
        ``cost`` (what it trains), ``level`` (the rung's cost from scratch), ``rung``,
        ``bracket`` and ``promoted_from``."""
        extra: dict[str, Any] = {
            "rung": self.rung,
            "bracket": self.bracket,
            "level": round(space.cost(replace(self.fidelity, start_epoch=0)), 6),
        }
        if self.promote:
            extra["promoted_from"] = self.promote
        if self.final:
            extra["final"] = True
        return self.fidelity.record(full=space.is_full(self.fidelity), cost=self.cost, **extra)


@dataclass
class Entry:
    """One trial in a scheduler's books."""

    trial_id: str
    key: str
    rung: int
    bracket: int
    fidelity: Fidelity
    value: float | None = None
    done: bool = False
    promoted: bool = False


class Scheduler(ABC):
    """Decides what the search runs next (new configuration or promotion) and at which fidelity.

    Contract:
        * :meth:`next` returns a :class:`Decision` or None ("nothing to start now": wait for
          running trials; when nothing runs either, the schedule is over).
        * The caller reports every started decision (:meth:`started`) with the trial id and
          genotype key, and every end (:meth:`finished`, value None for a failed trial).
        * The state is a pure function of the sequence of started / finished reports, so a
          resumed search rebuilds it by replaying its trials (:meth:`replay`).
        * The objective is maximised.

    Args:
        space: The task's fidelity space (rungs and costs).
        budget: Full-fidelity-equivalent trainings (see the module docstring).
        eta: Reduction factor (default: the space's).
        promote: ``"continue"`` (train on from the lower rung's weights) or ``"retrain"``.
        min_rung_results: ASHA: finished results a rung needs before it promotes.
    """

    name: ClassVar[str]
    #: The options it was built with (recorded with the search; set by :func:`make_scheduler`).
    options: dict[str, Any] = {}

    def __init__(
        self, space: FidelitySpace, budget: float, *, eta: int | None = None, promote: str = "continue"
    ) -> None:
        if promote not in PROMOTE_MODES:
            raise UserError(f"scheduler promote must be one of {list(PROMOTE_MODES)}, got {promote!r}")
        if not budget > 0:
            raise UserError(f"the budget must be positive, got {budget}")
        self.eta = int(eta if eta is not None else space.eta)
        if self.eta < 2:
            raise UserError(f"scheduler eta must be an integer >= 2, got {eta!r}")
        self.space = space if self.eta == space.eta else FidelitySpace(space.low, space.high, self.eta, space.dims)
        self.fidelities = self.space.rungs()
        self.budget = float(budget)
        self.promote_mode = promote
        self.entries: dict[str, Entry] = {}
        self.order: list[str] = []
        self.committed = 0.0  # planned cost of everything started (and of reserved brackets)
        self._final_given = False

    # -- decisions --------------------------------------------------------------------------
    @property
    def n_rungs(self) -> int:
        return len(self.fidelities)

    @abstractmethod
    def next(self) -> Decision | None:
        """What to start now, or None."""

    def new(self, rung: int, bracket: int = 0) -> Decision:
        """A new configuration at ``rung``."""
        f = self.fidelities[rung]
        return Decision(rung, f, bracket, None, self.space.cost(f))

    def promotion(self, entry: Entry, rung: int, bracket: int | None = None) -> Decision:
        """``entry``'s genotype at ``rung``, continuing from its weights where possible."""
        f = self.fidelities[rung]
        if self.promote_mode == "continue":
            f = continued(f, entry.fidelity)
        return Decision(rung, f, entry.bracket if bracket is None else bracket, entry.trial_id, self.space.cost(f))

    def final_decision(self) -> Decision | None:
        """Once, when the schedule is over: promote the best trial of the highest rung reached
        straight to the full fidelity if no trial finished there; else None."""
        if self._final_given:
            return None
        self._final_given = True
        top = self.n_rungs - 1
        if any(e.done and e.value is not None and e.rung == top for e in self.entries.values()):
            return None
        for rung in range(top - 1, -1, -1):
            ok = [e for e in self.entries.values() if e.rung == rung and e.done and e.value is not None]
            if ok:
                best = max(ok, key=lambda e: (e.value, -self.order.index(e.trial_id)))
                return replace(self.promotion(best, top), final=True)
        return None

    # -- reports ----------------------------------------------------------------------------
    def started(self, decision: Decision, trial_id: str, key: str) -> None:
        """A trial started for ``decision``."""
        if decision.promote and decision.promote in self.entries:
            self.entries[decision.promote].promoted = True
        self.entries[trial_id] = Entry(trial_id, key, decision.rung, decision.bracket, decision.fidelity)
        self.order.append(trial_id)
        self._account(decision)

    def _account(self, decision: Decision) -> None:
        self.committed += decision.cost

    def finished(self, trial_id: str, value: float | None) -> None:
        """A trial ended (``value`` None when it failed)."""
        e = self.entries.get(trial_id)
        if e is None:
            return
        e.done = True
        e.value = None if value is None or not math.isfinite(value) else float(value)

    def replay(self, trials: Iterable[tuple[str, str, Mapping[str, Any], float | None, bool]]) -> None:
        """Rebuild the state from recorded trials in start order: ``(trial_id, key, fidelity
        record, value, done)`` (the record is the ``nasw.fidelity`` tag)."""
        for trial_id, key, rec, value, done in trials:
            if "rung" not in rec:
                continue
            f = Fidelity.from_dict(rec)
            rung = int(rec["rung"])
            d = Decision(
                rung,
                f,
                int(rec.get("bracket", 0)),
                rec.get("promoted_from"),
                float(rec.get("cost", self.space.cost(f))),
                bool(rec.get("final", False)),
            )
            self.started(d, trial_id, key)
            if d.final:
                self._final_given = True
            if done:
                self.finished(trial_id, value)

    # -- helpers ----------------------------------------------------------------------------
    def rung_entries(self, rung: int, bracket: int | None = None) -> list[Entry]:
        """Trials of a rung (of one bracket), in start order."""
        out = [self.entries[t] for t in self.order]
        return [e for e in out if e.rung == rung and (bracket is None or e.bracket == bracket)]

    def top_k(self, entries: Sequence[Entry], k: int) -> list[Entry]:
        """The ``k`` best finished entries (ties: the earlier first)."""
        ok = [e for e in entries if e.done and e.value is not None]
        ok.sort(key=lambda e: (-e.value, self.order.index(e.trial_id)))  # type: ignore[operator]
        return ok[: max(0, k)]

    def expected_trials(self, limit: int = 100_000) -> int:
        """How many more trials the schedule will start: a dry run on a copy, every trial ending
        at once with a made-up value (exact for SH and Hyperband, an estimate for ASHA)."""
        import copy
        import random

        sim = copy.deepcopy(self)
        rng = random.Random(0)
        n = 0
        while n < limit:
            d = sim.next()
            if d is None:
                d = sim.final_decision()
            if d is None:
                return n
            tid = f"dry-run-{n}"
            sim.started(d, tid, sim.entries[d.promote].key if d.promote in sim.entries else tid)
            sim.finished(tid, rng.random())
            n += 1
        return n

    def describe(self) -> str:
        """One line: rungs and budget."""
        rungs = " -> ".join(str(f) for f in self.fidelities)
        return f"{self.name}: eta {self.eta}, rungs {rungs}; budget {self.budget:g} full trainings"


# -- successive halving and Hyperband -----------------------------------------------------------
@dataclass
class Bracket:
    """One bracket of successive halving: ``sizes[i]`` configurations at rung ``first + i``."""

    index: int
    first: int
    sizes: tuple[int, ...]
    cost: float = 0.0
    started: list[int] = field(default_factory=list)  # trials started per rung of the bracket

    def __post_init__(self) -> None:
        if not self.started:
            self.started = [0] * len(self.sizes)

    @property
    def last(self) -> int:
        return self.first + len(self.sizes) - 1


def bracket_sizes(n: int, n_rungs: int, eta: int) -> tuple[int, ...]:
    """Configurations per rung of successive halving starting with ``n``: ``floor(n / eta**i)``
    for ``n_rungs`` rungs, at least 1 each."""
    return tuple(max(1, int(n // eta**i)) for i in range(n_rungs))


class _Brackets(Scheduler):
    """Synchronous successive halving over a sequence of brackets (SH and Hyperband)."""

    def __init__(
        self, space: FidelitySpace, budget: float, *, eta: int | None = None, promote: str = "continue"
    ) -> None:
        super().__init__(space, budget, eta=eta, promote=promote)
        self.brackets: dict[int, Bracket] = {}

    #: Open the next bracket while an earlier one waits for its rung to finish (keeps parallel
    #: workers busy; with one worker a bracket never waits with the worker idle).
    parallel_brackets: bool = True

    @abstractmethod
    def plan(self, index: int) -> tuple[int, tuple[int, ...]]:
        """``(first rung, configurations per rung)`` of bracket ``index``."""

    def planned_cost(self, first: int, sizes: Sequence[int]) -> float:
        """Cost of a bracket if every promotion continues as planned."""
        total = 0.0
        prev: Fidelity | None = None
        for i, n in enumerate(sizes):
            f = self.fidelities[first + i]
            g = continued(f, prev) if (prev is not None and self.promote_mode == "continue") else f
            total += n * self.space.cost(g)
            prev = f
        return total

    def _bracket(self, index: int) -> Bracket:
        """Bracket ``index``, created (and its planned cost reserved) on first use."""
        if index not in self.brackets:
            first, sizes = self.plan(index)
            b = Bracket(index, first, sizes, self.planned_cost(first, sizes))
            self.brackets[index] = b
            self.committed += b.cost
        return self.brackets[index]

    def _account(self, decision: Decision) -> None:  # brackets are reserved whole when opened
        pass

    def next(self) -> Decision | None:
        for index in sorted(self.brackets):
            d = self._next_in(self.brackets[index])
            if d is not None:
                return d
        busy = any(not e.done for e in self.entries.values())
        if busy and not self.parallel_brackets:
            return None
        index = len(self.brackets)
        first, sizes = self.plan(index)
        if self.brackets and self.committed + self.planned_cost(first, sizes) > self.budget + 1e-9:
            return None  # the next bracket does not fit in the budget (the first always opens)
        return self._next_in(self._bracket(index))

    def _next_in(self, b: Bracket) -> Decision | None:
        """The bracket's next trial: a new configuration while its first rung fills, then (once a
        whole rung has finished) the promotions of its best ``sizes[i]`` trials; None to wait."""
        if b.started[0] < b.sizes[0]:
            b.started[0] += 1
            return self.new(b.first, b.index)
        for i in range(1, len(b.sizes)):
            below = self.rung_entries(b.first + i - 1, b.index)
            if any(not e.done for e in below):
                return None  # synchronous: the whole rung first
            todo = [e for e in self.top_k(below, b.sizes[i]) if not e.promoted]
            if todo:
                b.started[i] += 1
                return self.promotion(todo[0], b.first + i, b.index)
        return None

    def started(self, decision: Decision, trial_id: str, key: str) -> None:
        self._bracket(decision.bracket)
        super().started(decision, trial_id, key)

    def replay(self, trials: Iterable[tuple[str, str, Mapping[str, Any], float | None, bool]]) -> None:
        super().replay(list(trials))
        for b in self.brackets.values():
            b.started = [len(self.rung_entries(b.first + i, b.index)) for i in range(len(b.sizes))]

    def describe(self) -> str:
        return super().describe() + f"; first bracket {list(self.plan(0)[1])} configurations per rung"


class SuccessiveHalving(_Brackets):
    """Synchronous successive halving (``sh``), repeated brackets while the budget lasts.

    Args:
        space, budget, eta, promote: See :class:`Scheduler`.
        n_configs: New configurations per bracket (default ``eta**(K-1)``: one reaches the
            top). Fewer start at a higher rung so that one configuration still reaches it.
    """

    name = "sh"

    def __init__(
        self,
        space: FidelitySpace,
        budget: float,
        *,
        eta: int | None = None,
        promote: str = "continue",
        n_configs: int | None = None,
    ) -> None:
        super().__init__(space, budget, eta=eta, promote=promote)
        k = self.n_rungs
        default = self.eta ** (k - 1)
        self.n_configs = int(n_configs) if n_configs is not None else default
        if self.n_configs < 1:
            raise UserError(f"sh n_configs must be a positive integer, got {n_configs!r}")

    def plan(self, index: int) -> tuple[int, tuple[int, ...]]:
        k = self.n_rungs
        used = min(k, int(math.floor(math.log(self.n_configs) / math.log(self.eta) + 1e-9)) + 1)
        return k - used, bracket_sizes(self.n_configs, used, self.eta)


class Hyperband(_Brackets):
    """Hyperband (``hyperband``): brackets ``s = K-1, ..., 0`` of successive halving in turn."""

    name = "hyperband"

    def plan(self, index: int) -> tuple[int, tuple[int, ...]]:
        k = self.n_rungs
        s = (k - 1) - index % k
        n = int(math.ceil(k / (s + 1) * self.eta**s))
        return k - 1 - s, bracket_sizes(n, s + 1, self.eta)


class ASHA(Scheduler):
    """Asynchronous successive halving (``asha``) for parallel workers.

    A rung promotes its trials in the top ``1/eta`` of its finished results (once it has at
    least ``eta`` of them), the highest rung first; otherwise a new configuration starts at the
    lowest rung while the budget lasts.
    """

    name = "asha"

    def next(self) -> Decision | None:
        for rung in range(self.n_rungs - 2, -1, -1):
            entries = self.rung_entries(rung)
            finished = [e for e in entries if e.done and e.value is not None]
            k = len(finished) // self.eta
            for e in self.top_k(finished, k):
                if not e.promoted:
                    d = self.promotion(e, rung + 1)
                    if self.committed + d.cost <= self.budget + 1e-9:
                        return d
        d = self.new(0)
        if self.committed + d.cost <= self.budget + 1e-9:
            return d
        return None


SCHEDULERS: dict[str, type[Scheduler]] = {"sh": SuccessiveHalving, "hyperband": Hyperband, "asha": ASHA}


def scheduler_names() -> list[str]:
    """Names accepted by ``--scheduler``."""
    return sorted(SCHEDULERS)


def make_scheduler(name: str, space: FidelitySpace, budget: float, **options: Any) -> Scheduler:
    """Build a scheduler by name; unknown names and options raise :class:`UserError`."""
    cls = SCHEDULERS.get(name)
    if cls is None:
        raise UserError(f"unknown scheduler {name!r}; expected one of {scheduler_names()}")
    try:
        scheduler = cls(space, budget, **options)
    except TypeError as exc:
        raise UserError(f"bad options for scheduler {name!r}: {exc}") from None
    scheduler.options = dict(options)
    return scheduler
