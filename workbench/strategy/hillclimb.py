"""Hill climbing with network morphisms (NASH, Elsken, Metzen & Hutter 2017)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from workbench.errors import InvalidGenotype, UserError
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.space.morphs import morph_sites, random_morphisms
from workbench.strategy.base import Observation, Proposal, Strategy, StrategySetup, WarmStart

#: Upper bounds of the climb's options: beyond them an ask runs for hours, not the search.
MAX_STEPS = 100
MAX_START_SAMPLES = 10_000
MAX_CHILDREN = 1000


def size_of(g: Genotype) -> tuple[int, int]:
    """A size proxy for choosing a small start network: (total width + 8 per layer or node, spec length).

    Narrow, shallow networks come first, so widening and deepening have room to grow them.
    """
    spec = g.value
    parts = []
    if isinstance(spec, dict):
        parts = spec.get("layers") or spec.get("nodes") or []
    width = sum(int(x.get("width", 0)) for x in parts if isinstance(x, dict))
    return width + 8 * len(parts), len(g.spec)


def default_initial(budget: float | None) -> int:
    """Random trials before the climb in a search of ``budget`` trials: half of them, at least 5
    (5 without a budget).

    The climb cannot change activations, pooling or layer types, so the networks it grows are
    only as good as the random start it picks; half the budget on random starts is what made
    30-trial climbs test as well as from-scratch evolution on digits and mnist1d
    (benchmarks/results/morphism.md), where 5 left them half a point below on digits.
    """
    if budget is None:
        return 5
    return max(5, int(budget) // 2)


class HillClimb(Strategy):
    """NASH-style hill climbing: children of the incumbent through a few network morphisms.

    The search starts from ``initial`` random networks trained from scratch (the first the
    smallest of ``start_samples`` samples; or a ``prior`` genotype, or ``start_genotype``).
    Every later proposal is a child of the incumbent (the best successful trial so far, or the
    cheapest within ``margin`` of it) through 1..``max_steps``
    random function-preserving morphism steps (deepen, widen, skip, enlarge a kernel), and names
    the parent's trial as ``parent_trial``: the loop replays the steps on the parent's
    weights and only fine-tunes the child (``[training] finetune_epochs``, cosine-annealed).
    Children are compared with their parent by the objective, so the incumbent moves up hill.

    Where the space has no morphisms (cell, tabular, joint spaces), or none yields a new
    genotype, the child is a ``space.mutate`` of the incumbent (no inheritance), and a fresh
    sample when mutations are exhausted.

    Args:
        space: The search space.
        seed: Seed of every random choice.
        max_steps: Most morphism steps per child (NASH: a few).
        start_samples: Random samples from which the smallest is the start network.
        ops: Morphism operators to use (default: all of the space's).
        input_shape: The task's example shape; leaves out sites that cannot preserve the function
            for it (a widened last convolution that pools to a smaller grid).
        prior: Genotypes to evaluate first (warm start); the best becomes the incumbent.
        start_genotype: A genotype (JSON) to start from, e.g. one trained on another task ...
        start_trial: ... and the trial whose weights it inherits (from any task in the store).
        parents: When the incumbent has no new morphism child (its layers, widths and kernels
            are at the space's limits), the next best trial that can still grow is grown instead,
            among the ``parents`` best (None: among all), so children keep inheriting; only when
            none of them can grow is the incumbent mutated (trained from scratch).
        children: Candidate children drawn per proposal; the one that costs least to train
            (``cost``) is proposed, so the climb grows a network by its cheapest edits first and
            pays for big layers only when small ones stop helping. 1 (or no ``cost``): the first
            random child.
        cost: Price of a genotype (the search loop sets the multiply-adds of its network for
            the task's input, :meth:`set_cost`; strategies do not build networks themselves).
        initial: Trials at the start that are random samples trained from scratch (the first is
            the small start network); the climb then grows the best of them. The climb cannot
            change a network's activations or pooling, so one small start is a fragile anchor
            (on one mnist1d seed it stalled at test 0.85 where the best of 5 reached 0.98).
            1: NASH's single small start. Default: 5, or 1 with a ``start_genotype`` (the climb
            starts from the network it names); a search started by nasw sets
            :func:`default_initial` of its budget (half of it).
        margin: Trials whose objective is within ``margin`` of the best count as equally good,
            and the cheapest of them (multiply-adds) is grown: a noisy validation split does not
            push the climb to bigger networks for gains it cannot tell from noise (0.005 is one
            example of digits' 216-example validation split). 0: the best.
    """

    name = "hillclimb"

    @classmethod
    def prepare_options(cls, options: dict[str, Any], setup: StrategySetup) -> dict[str, Any]:
        """Complete the options of a new climb (recorded, so resume rebuilds the same climb):

        * ``input_shape``: the task's example shape, to leave out morphism sites that cannot
          preserve the function;
        * ``start_trial=ID`` (a trial of any task, a unique id prefix is enough): its full id,
          and its genotype becomes ``start_genotype`` (the first trial inherits its weights);
        * ``initial``: half the budget (:func:`default_initial`), unless the user chose it or
          the climb has a start (``start_trial``, or a warm start's best architecture): then
          it climbs from that start at once.
        """
        if setup.input_shape is not None and "input_shape" not in options:
            options["input_shape"] = [int(x) for x in setup.input_shape]
        if options.get("start_trial") and "start_genotype" not in options and setup.find_trial is not None:
            options["start_trial"], options["start_genotype"] = setup.find_trial(str(options["start_trial"]))
        warm_start = setup.warm is not None and bool(setup.warm.prior)
        if "initial" not in options and not options.get("start_genotype") and not warm_start:
            options["initial"] = default_initial(setup.budget)
        return options

    @classmethod
    def warm_start_options(cls, warm: WarmStart, options: Mapping[str, Any]) -> dict[str, Any]:
        """Climb from the sources' best architecture (unless the user named a start: then the
        sources' best are evaluated first, as ``prior``)."""
        if warm.prior and not options.get("start_genotype"):
            return {"start_genotype": warm.prior[0].to_json()}
        return {"prior": list(warm.prior)}

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        max_steps: int = 3,
        start_samples: int = 64,
        ops: Sequence[str] | None = None,
        input_shape: Sequence[int] | None = None,
        prior: Sequence[Genotype] = (),
        start_genotype: str | None = None,
        start_trial: str | None = None,
        parents: int | None = None,
        children: int = 4,
        cost: Callable[[Genotype], float] | None = None,
        margin: float = 0.005,
        initial: int | None = None,
    ) -> None:
        super().__init__(space, seed)
        if not (1 <= int(max_steps) <= MAX_STEPS and 1 <= int(start_samples) <= MAX_START_SAMPLES):
            raise UserError(
                f"hillclimb needs 1 <= max_steps <= {MAX_STEPS} and 1 <= start_samples <= {MAX_START_SAMPLES}; "
                f"got {max_steps}, {start_samples}"
            )
        self.max_steps = int(max_steps)
        if parents is not None and int(parents) < 1:
            raise UserError(f"hillclimb needs parents >= 1 (or none: every success); got {parents}")
        self.parents = None if parents is None else int(parents)
        if not 1 <= int(children) <= MAX_CHILDREN:
            raise UserError(f"hillclimb needs 1 <= children <= {MAX_CHILDREN}; got {children}")
        self.children = int(children)
        if not float(margin) >= 0.0:
            raise UserError(f"hillclimb needs margin >= 0; got {margin}")
        self.margin = float(margin)
        if initial is None:
            initial = 5 if start_genotype is None else 1
        if int(initial) < 1:
            raise UserError(f"hillclimb needs initial >= 1; got {initial}")
        self.initial = int(initial)
        self._cost_fn = cost
        self._costs: dict[str, float] = {}
        self.start_samples = int(start_samples)
        self.ops = None if ops is None else tuple(str(o) for o in ops)
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self.prior = list(prior)
        self.start: tuple[Genotype, str | None] | None = None
        if start_genotype is not None:
            try:
                text = start_genotype if isinstance(start_genotype, str) else json.dumps(start_genotype)
                g = Genotype.from_json(text)
                space.validate(g)
            except InvalidGenotype as exc:
                raise UserError(f"hillclimb start_genotype is not in this space: {exc}") from None
            self.start = (g, start_trial)

    def ask(self, n: int = 1, *, pending: Sequence[Genotype] = ()) -> list[Proposal]:
        rng = self.rng_for(pending)
        taken = {g.key for g in pending}
        out: list[Proposal] = []
        for _ in range(n):
            p = self._propose(rng, taken)
            taken.add(p.genotype.key)
            out.append(p)
        return out

    def _propose(self, rng: np.random.Generator, taken: set[str]) -> Proposal:
        if self.start is not None and self.is_new(self.start[0], taken):
            return Proposal(self.start[0], parent_trial=self.start[1])
        queued = [g for g in self.prior if self.is_new(g, taken)]
        if queued:
            return Proposal(queued[0])
        ranked = sorted(self.successes, key=lambda o: o.value, reverse=True)  # stable: ties keep tell order
        if not ranked:
            return Proposal(self._small_start(rng, taken))
        if len(self.history) + len(taken) < self.initial:  # taken: pending and this ask's
            return Proposal(self.fresh_sample(rng, taken))
        if self.margin > 0 and self._cost_fn is not None:  # the cheapest of the near-best first
            near = [o for o in ranked if o.value >= ranked[0].value - self.margin]
            ranked = sorted(near, key=lambda o: self._cost(o.genotype)) + ranked[len(near) :]
        for parent in ranked[: self.parents]:
            child = self._morphed(parent, rng, taken)
            if child is not None:
                return child
        return self._mutant(ranked[0], rng, taken)

    def _small_start(self, rng: np.random.Generator, taken: set[str]) -> Genotype:
        """The smallest of ``start_samples`` samples, preferring those that can grow by morphisms
        (a deepen site first, then any site), so the climb is not stuck at its first step."""
        cands = [self.space.sample(rng) for _ in range(self.start_samples)]
        new = [g for g in cands if self.is_new(g, taken)]
        if not new:
            return self.fresh_sample(rng, taken)

        def rank(g: Genotype) -> tuple[int, int, tuple[int, int]]:
            sites = morph_sites(g, space=self.space, input_shape=self.input_shape, ops=self.ops)
            return (not any(s.op == "deepen" for s in sites), not sites, size_of(g))

        return min(new, key=rank)

    def _morphed(self, parent: Observation, rng: np.random.Generator, taken: set[str]) -> Proposal | None:
        """The cheapest of up to ``children`` new children of ``parent`` through random morphism
        steps, or None when it has none."""
        found_children: dict[str, tuple[Genotype, tuple]] = {}
        want = self.children if self._cost_fn is not None else 1
        for _ in range(12 * want):
            n = int(rng.integers(1, self.max_steps + 1))
            found = random_morphisms(
                parent.genotype, rng, n, space=self.space, input_shape=self.input_shape, ops=self.ops
            )
            if found is None:
                break
            g, steps = found
            if self.is_new(g, taken) and g.key not in found_children:
                found_children[g.key] = (g, tuple(steps))
                if len(found_children) >= want:
                    break
        if not found_children:
            return None
        g, steps = min(found_children.values(), key=lambda c: self._cost(c[0]))  # ties: first drawn
        if parent.trial_id is None:
            return Proposal(g)
        return Proposal(g, parent_trial=parent.trial_id, morphisms=steps)

    def set_cost(self, cost: Callable[[Genotype], float] | None) -> None:
        """Price genotypes with ``cost`` (None: children and parents are not priced)."""
        self._cost_fn = cost
        self._costs.clear()

    def _cost(self, g: Genotype) -> float:
        """``cost(g)``, cached; 0 without a cost."""
        if self._cost_fn is None:
            return 0.0
        if g.key not in self._costs:
            self._costs[g.key] = float(self._cost_fn(g))
        return self._costs[g.key]

    def _mutant(self, parent: Observation, rng: np.random.Generator, taken: set[str]) -> Proposal:
        """A mutation of ``parent`` (trained from scratch), else a fresh sample."""
        child = parent.genotype
        for _ in range(50):
            child = self.space.mutate(child if rng.random() < 0.5 else parent.genotype, rng)
            if self.is_new(child, taken):
                return Proposal(child)
        return Proposal(self.fresh_sample(rng, taken))
