"""Regularized (aging) evolution, Real et al. 2019, with optional crossover and surrogate prescreening."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from workbench.errors import UserError
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.strategy.base import ORIGIN_PRIOR, Observation, Proposal, Strategy, StrategySetup, WarmStart
from workbench.strategy.pareto import crowding_distance, nondominated_sort, objective_matrix, parse_objectives
from workbench.strategy.smac import SURROGATES, check_float, check_int

CROSSOVER_KINDS = ("uniform", "one-point")
#: Upper bounds of the options: the population (a warm start offers half of it), children
#: bred and scored by the surrogate per proposal, morphism steps per mutation.
MAX_POPULATION = 100_000
MAX_PRESCREEN_CHILDREN = 10_000
MAX_MORPH_STEPS = 100


class RegularizedEvolution(Strategy):
    """Aging evolution: tournament selection over the youngest ``population`` members.

    The population is the last ``population`` told observations (failed ones count as members
    that never win a tournament), so the state is a pure function of the history and replay is
    exact. Until the population is full, candidates are random samples (or ``prior`` genotypes,
    e.g. the best architectures of related tasks, first).

    Args:
        space: The search space.
        seed: Seed of every random choice.
        population: Number of youngest members kept alive.
        sample_size: Tournament size.
        prior: Genotypes to evaluate first (warm start).
        objectives: Keys of ``Observation.objectives`` to optimise, a leading ``-`` to
            minimise (e.g. ``["val_accuracy", "-latency"]``). Empty: the scalar ``value``. One:
            that objective as the scalar. Several: NSGA-II selection, a tournament won by the
            lowest non-dominated front rank within the population, ties broken by the largest
            crowding distance; members missing an objective never win. :meth:`pareto_front`
            gives the front of everything told.
        morph: Mutate through network morphisms where possible: a tournament winner with a
            trial id gets a child through 1..``morph_steps`` random function-preserving steps
            (:mod:`workbench.space.morphs`), and the proposal names the winner's trial, so the
            child inherits its weights and is only fine-tuned. Winners without a trial id, or
            genotypes without morphism sites, fall back to ``space.mutate``.
        morph_steps: Most morphism steps per child.
        input_shape: The task's example shape; leaves out morphism sites that cannot preserve
            the function for it (see :mod:`workbench.space.morphs`).
        crossover: Probability that a child is the crossover of two tournament winners
            (:meth:`SearchSpace.crossover <workbench.space.base.SearchSpace.crossover>` on the
            genotypes' decisions, repaired to a valid genotype; mutated once more when it repeats
            a known architecture) instead of a mutation of one. 0: Real et al.'s mutation only.
        crossover_kind: ``"uniform"`` (each decision from either parent) or ``"one-point"``.
        prescreen: A surrogate that ranks candidate children so only the best is trained:
            ``"rf"`` (a random forest, :class:`~workbench.strategy.smac.ForestSurrogate`) or
            ``"gp"`` (the project's GP, :mod:`workbench.strategy.bo.model`). Each proposal
            breeds ``prescreen_children`` children (each from its own tournaments) and proposes
            the one with the largest expected improvement under the surrogate, fitted on every
            successful observation so far. None: every child is trained (plain evolution).
        prescreen_children: Candidate children per proposal with ``prescreen``.
        prescreen_encoding: The encodings the surrogate reads (``"onehot"``, ``"onehot+path"``).
    """

    name = "evolution"

    @classmethod
    def prepare_options(cls, options: dict[str, Any], setup: StrategySetup) -> dict[str, Any]:
        """With ``morph``: the task's example shape as ``input_shape`` (recorded), so mutations
        leave out morphism sites that cannot preserve the function."""
        if options.get("morph") and setup.input_shape is not None and "input_shape" not in options:
            options["input_shape"] = [int(x) for x in setup.input_shape]
        return options

    @classmethod
    def warm_prior_size(cls, options: Mapping[str, Any]) -> int:
        """Half the population comes from the sources' best architectures."""
        return max(1, check_int("evolution", "population", options.get("population", 10), 2, MAX_POPULATION) // 2)

    @classmethod
    def warm_start_options(cls, warm: WarmStart, options: Mapping[str, Any]) -> dict[str, Any]:
        """The sources' best architectures are evaluated first (``prior``)."""
        return {"prior": list(warm.prior)}

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        population: int = 10,
        sample_size: int = 3,
        prior: Sequence[Genotype] = (),
        objectives: Sequence[str] | str = (),
        morph: bool = False,
        morph_steps: int = 1,
        input_shape: Sequence[int] | None = None,
        crossover: float = 0.0,
        crossover_kind: str = "uniform",
        prescreen: str | None = None,
        prescreen_children: int = 10,
        prescreen_encoding: str = "onehot",
    ) -> None:
        super().__init__(space, seed)
        self.crossover = check_float("evolution", "crossover", crossover, 0.0, 1.0)
        if crossover_kind not in CROSSOVER_KINDS:
            raise UserError(f"evolution crossover_kind must be one of {list(CROSSOVER_KINDS)}; got {crossover_kind!r}")
        self.crossover_kind = crossover_kind
        if self.crossover > 0 and space.decision_view() is None:
            raise UserError(f"evolution crossover needs a space with decisions; {space.name!r} has none")
        if prescreen is not None and prescreen not in SURROGATES:
            raise UserError(f"evolution prescreen must be one of {list(SURROGATES)}; got {prescreen!r}")
        self.prescreen = prescreen
        self.prescreen_children = check_int(
            "evolution", "prescreen_children", prescreen_children, 1, MAX_PRESCREEN_CHILDREN
        )
        self._screen_features = None
        if prescreen is not None:
            from workbench.strategy.smac import Features

            self._screen_features = Features(space, prescreen_encoding)
        self._screen_model: tuple[int, Any, float] | None = None
        self.morph = bool(morph)
        self.morph_steps = check_int("evolution", "morph_steps", morph_steps, 1, MAX_MORPH_STEPS)
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self.population = check_int("evolution", "population", population, 2, MAX_POPULATION)
        self.sample_size = check_int("evolution", "sample_size", sample_size, 1, self.population)
        self.prior = list(prior)
        try:
            self.objectives = parse_objectives(objectives)
        except ValueError as exc:
            raise UserError(f"bad evolution objectives: {exc}") from None
        if prescreen is not None and len(self.objectives) > 1:
            raise UserError("evolution prescreen ranks children by one objective; it cannot take several")

    def _alive(self) -> list[Observation]:
        return self.history[-self.population :]

    def _fitness(self, members: Sequence[Observation]) -> list[tuple[float, ...] | None]:
        """A sortable fitness per member (larger is better), None for members that never win."""
        if not self.objectives:
            return [(float(o.value),) if o.ok else None for o in members]
        values, ok = objective_matrix([o.objectives for o in members], self.objectives)
        ok &= np.array([o.value is not None for o in members], dtype=bool)
        if len(self.objectives) == 1:
            return [(float(values[i, 0]),) if ok[i] else None for i in range(len(members))]
        out: list[tuple[float, ...] | None] = [None] * len(members)
        rows = np.flatnonzero(ok)
        if len(rows):
            ranks = nondominated_sort(values[rows])
            crowd = np.zeros(len(rows))
            for r in np.unique(ranks):
                front = np.flatnonzero(ranks == r)
                crowd[front] = crowding_distance(values[rows[front]])
            for j, i in enumerate(rows):
                out[i] = (-float(ranks[j]), float(crowd[j]))
        return out

    def pareto_front(self) -> list[Observation]:
        """The told observations no other told observation dominates (with ``objectives``).

        Without objectives: the incumbent alone. Observations missing an objective (or failed)
        are left out; equal points all stay.
        """
        if not self.objectives:
            return [self.incumbent] if self.incumbent is not None else []
        fit = self._fitness(self.history) if len(self.objectives) == 1 else None
        if fit is not None:
            best = max((f for f in fit if f is not None), default=None)
            return [o for o, f in zip(self.history, fit) if f is not None and f == best]
        values, ok = objective_matrix([o.objectives for o in self.history], self.objectives)
        ok &= np.array([o.value is not None for o in self.history], dtype=bool)
        rows = np.flatnonzero(ok)
        if not len(rows):
            return []
        ranks = nondominated_sort(values[rows])
        return [self.history[i] for i in rows[ranks == 0]]

    def ask(self, n: int = 1, *, pending: Sequence[Genotype] = ()) -> list[Proposal]:
        rng = self.rng_for(pending)
        taken = {g.key for g in pending}
        out: list[Proposal] = []
        queued_prior = [g for g in self.prior if self.is_new(g, taken)]
        for _ in range(n):
            started = len(self.history) + len(pending) + len(out)
            if queued_prior and started < self.population:
                g = queued_prior.pop(0)
                origin = ORIGIN_PRIOR
            elif started < self.population or all(f is None for f in self._fitness(self._alive())):
                g = self.fresh_sample(rng, taken)
                origin = "random"
            else:
                prop = self._screened_child(rng, taken) if self.prescreen else self._child_proposal(rng, taken)
                taken.add(prop.genotype.key)
                out.append(prop)
                continue
            taken.add(g.key)
            out.append(Proposal(g, origin=origin))
        return out

    def _winner(self, rng) -> Observation:
        alive = self._alive()
        fitness = self._fitness(alive)
        idx = rng.choice(len(alive), size=min(self.sample_size, len(alive)), replace=False)
        winners = [int(i) for i in idx if fitness[int(i)] is not None]
        if not winners:
            winners = [i for i, f in enumerate(fitness) if f is not None]
        return alive[max(winners, key=lambda i: fitness[i])]

    def _child_proposal(self, rng, taken: set[str]) -> Proposal:
        """A tournament winner's child: through morphisms (naming the winner's trial) or a mutation."""
        parent = self._winner(rng)
        if self.crossover and rng.random() < self.crossover:
            child = self._crossover_child(rng, taken, parent)
            if child is not None:
                return Proposal(child, origin="crossover")
        if self.morph and parent.trial_id is not None:
            from workbench.space.morphs import random_morphisms

            for _ in range(10):
                n = int(rng.integers(1, self.morph_steps + 1))
                found = random_morphisms(parent.genotype, rng, n, space=self.space, input_shape=self.input_shape)
                if found is None:
                    break
                g, steps = found
                if self.is_new(g, taken):
                    return Proposal(g, parent_trial=parent.trial_id, morphisms=steps, origin="morphism")
        return Proposal(self._child(rng, taken, parent), origin="mutation")

    def _child(self, rng, taken: set[str], parent: Observation | None = None) -> Genotype:
        if parent is None:
            parent = self._winner(rng)
        child = self.space.mutate(parent.genotype, rng)
        for _ in range(50):
            if self.is_new(child, taken):
                break
            child = self.space.mutate(parent.genotype if rng.random() < 0.5 else child, rng)
        else:
            child = self.fresh_sample(rng, taken)
        return child

    def _crossover_child(self, rng, taken: set[str], parent: Observation) -> Genotype | None:
        """The crossover of ``parent`` and a second tournament winner (mutated once when it
        repeats a known architecture, e.g. of identical parents); None when it still repeats."""
        mate = self._winner(rng)
        child = self.space.crossover(parent.genotype, mate.genotype, rng, self.crossover_kind)
        if not self.is_new(child, taken):
            child = self.space.mutate(child, rng)
        return child if self.is_new(child, taken) else None

    # -- prescreening ------------------------------------------------------------------------

    def _screened_child(self, rng, taken: set[str]) -> Proposal:
        """The best of ``prescreen_children`` distinct children by the surrogate's expected improvement."""
        children: list[Proposal] = []
        keys: set[str] = set()
        for _ in range(self.prescreen_children):
            prop = self._child_proposal(rng, taken | keys)
            if prop.genotype.key not in keys and self.is_new(prop.genotype, taken):
                children.append(prop)
                keys.add(prop.genotype.key)
        if len(children) <= 1:
            return children[0] if children else self._child_proposal(rng, taken)
        model = self._surrogate()
        if model is None:
            return children[0]
        from workbench.strategy.smac import expected_improvement

        surrogate, best = model
        mean, var = surrogate.predict(self._screen_features([p.genotype for p in children]))
        return children[int(np.argmax(expected_improvement(mean, var, best)))]

    def _surrogate(self) -> tuple[Any, float] | None:
        """The prescreening surrogate on every successful observation (refitted when the history
        changed) and the best transformed target; None with fewer than 2 usable observations."""
        if self._screen_model is not None and self._screen_model[0] == len(self.history):
            return self._screen_model[1], self._screen_model[2]
        from workbench.strategy.smac import make_surrogate, normal_scores

        fitness = self._fitness(self.history)
        used = [(o.genotype, f[0]) for o, f in zip(self.history, fitness) if f is not None]
        if len(used) < 2:
            return None
        y = normal_scores(np.array([v for _, v in used]))
        state = int(np.random.default_rng([self.seed, len(self.history), 7]).integers(2**31 - 1))
        surrogate = make_surrogate(self.prescreen, self._screen_features, state)
        surrogate.fit(self._screen_features([g for g, _ in used]), y)
        self._screen_model = (len(self.history), surrogate, float(y.max()))
        return surrogate, float(y.max())
