"""``bo``: Bayesian optimisation over architecture encodings with a GP and LogEI / qLogNEI / qLogNEHVI."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from workbench.errors import UserError
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.strategy.base import (
    ORIGIN_TRANSFER,
    Observation,
    Proposal,
    Strategy,
    WarmSource,
    WarmStart,
    highest_fidelity,
)
from workbench.strategy.bo.acquisition import greedy_qlognehvi, greedy_qlognei, reference_point, top_log_ei
from workbench.strategy.bo.model import DTYPE, FitSettings, GPModel, KernelLayout
from workbench.strategy.bo.pool import Featurizer, FullPool, SampledPool
from workbench.strategy.bo.schedule import SCHEDULES, backoff_asks, backoff_turn, fixed_turn
from workbench.strategy.bo.transfer import TRANSFER_MODELS, TransferContext, TransferProposer
from workbench.strategy.pareto import nondominated_sort, objective_matrix, parse_objectives

TRANSFORMS = ("power", "rank", "standardize")


def transform_targets(y: np.ndarray, kind: str) -> np.ndarray:
    """Targets for the GP, with zero mean and unit variance.

    * ``"standardize"``: affine only.
    * ``"rank"``: normal scores of the ranks (ties averaged), a copula transform that ignores
      how far outliers are.
    * ``"power"``: a Yeo-Johnson transform of the standardised values with its exponent fitted
      by maximum likelihood: accuracies skewed by a few degenerate architectures get their top
      spread out and their low tail pulled in.
    """
    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0:
        return y
    if kind == "power" and len(y) >= 3 and y.std() > 1e-12:
        from scipy.stats import yeojohnson

        z, _ = yeojohnson((y - y.mean()) / y.std())
        z = z - z.mean()
    elif kind == "rank":
        from scipy.special import ndtri
        from scipy.stats import rankdata

        z = ndtri((rankdata(y) - 0.5) / len(y))
        z = z - z.mean()
    else:
        z = y - y.mean()
    sd = z.std()
    return z / sd if sd > 1e-12 else z


#: ``transfer`` value: the warm start's architectures are the initial design, then cold BO.
DESIGN = "design"
#: Upper bounds of the options: random initial proposals (and ``hedge``), iterations of the
#: hyperparameter fit, the qLogNEI shortlist, quasi-MC samples, candidates sampled or mutated per
#: ask; the acquisition's local search (``local_rounds`` x ``local_top`` x ``local_children``
#: mutations per ask at most).
MAX_INIT = 10_000
#: Under ``schedule="backoff"``, a pick of the sources' model succeeds when it is the target's new
#: best (``benchmarks/results/transfer.md``: with the median as the bar, picks that are merely
#: good everywhere kept half of the asks on targets whose best the sources do not know).
WARM_QUANTILE = 1.0
#: ... and a success keeps the turn (the model proposes again until a pick is not a new best).
WARM_KEEP_TURN = True
MAX_FIT_ITER = 10_000
MAX_SHORTLIST = 100_000
MAX_MC_SAMPLES = 4096
MAX_SAMPLES = 1_000_000
MAX_LOCAL_ROUNDS = 20
MAX_LOCAL_TOP = 100
MAX_LOCAL_CHILDREN = 100


class BayesianOptimization(Strategy):
    """GP-based Bayesian optimisation over a space's numeric encodings.

    The surrogate is an exact GP (:mod:`workbench.strategy.bo.model`) on the space's encodings:
    one RBF block per encoding (on one-hot columns an exponentiated Hamming kernel), added up,
    with continuous hyperparameters of joint spaces as their own lengthscales. Hyperparameters
    are refitted by marginal likelihood whenever the data changed (a fast, deterministic MAP
    fit). Candidates come from the whole pool of a tabular space (NAS-Bench-Graph: every
    architecture not yet evaluated or pending) or, for other spaces, from random samples plus
    mutations of the best observations. One proposal maximises LogEI; several, or one with
    pending points, are picked greedily with qLogNEI (pending and already picked points as
    ``X_pending``) over the best ``shortlist`` candidates by LogEI. With two or more
    ``objectives``, one GP per objective and qLogNEHVI.

    Deterministic: all randomness comes from :meth:`Strategy.rng_for`, the fit starts from fixed
    values, and MC samplers are seeded, so replaying observations reproduces the next proposal.

    Args:
        space: The search space.
        seed: Seed of every random choice.
        n_init: Random proposals before the model is used (at least 2 successes are needed).
        encoding: Encodings the GP reads, e.g. ``"onehot"`` or ``"onehot+path"`` (or a list);
            each must be in ``space.encodings``.
        ard: One lengthscale per column instead of one per encoding.
        transform: ``"rank"`` (normal scores, robust to degenerate outliers) or
            ``"standardize"``.
        fit_maxiter: Most L-BFGS-B iterations of the hyperparameter fit.
        shortlist: Candidates (best by LogEI) that qLogNEI / qLogNEHVI choose among.
        mc_samples: Quasi-MC samples of qLogNEI / qLogNEHVI.
        n_samples: Largest random reservoir of candidates (spaces without a pool).
        n_mutations: Mutations of the best observations added to the candidates per ask.
        local_rounds: Rounds of evolutionary local search of the acquisition per ask (spaces
            without a pool; single objective): each round mutates the ``local_top`` candidates
            with the best LogEI ``local_children`` times each and scores the children too.
            0 (the default): the sampled candidates only (``benchmarks/results/acquisition.md``).
        local_top: Candidates mutated per round of local search.
        local_children: Mutations per mutated candidate and round.
        objectives: Keys of ``Observation.objectives`` (a leading ``-`` minimises), e.g.
            ``["val_accuracy", "-latency"]``. Empty: the scalar ``value``; one: that objective;
            several: one GP each and qLogNEHVI, see :meth:`pareto_front`.
        prior: Genotypes to evaluate first (warm start).
        sources: Other tasks' histories in this space (a warm start's
            :class:`~workbench.strategy.base.WarmSource` s, see :meth:`warm_start_options`;
            ``weight`` is the trust before the target has data). With sources, a
            single-objective search proposes with a multi-task model
            (:mod:`workbench.strategy.bo.transfer`) on the asks its ``schedule`` gives it;
            several objectives evaluate each source's two best architectures first instead.
        transfer: How a warm start is used: ``"rgpe"`` (ranking-weighted ensemble of per-task
            GPs, robust to unrelated sources), ``"mtgp"`` (an ICM ``MultiTaskGP``) or
            ``"copula"`` (a random forest over all sources' copula values as the prior mean, a GP
            on the target's residuals: :mod:`workbench.strategy.bo.copula`), each a multi-task
            model of the sources' observations; or ``"design"``: the sources' best
            architectures (the warm start's ``prior``) are the initial design, then cold BO (a
            meta-learned initial design, Feurer et al. 2015).
        source_points: Most observations used per source.
        schedule: With sources, which asks use the multi-task model and which cold BO's
            (:mod:`workbench.strategy.bo.schedule`): ``"backoff"`` (``lead`` zero-shot picks of
            the sources' consensus, then cold BO's initial design and cold BO, the sources'
            model keeping the turn while its picks are the target's new best and getting ever
            fewer asks while they are not) or ``"fixed"`` (no initial design, every
            ``hedge``-th ask cold). The multi-task model sees every observation either way.
        lead: Under ``schedule="backoff"``, how many zero-shot picks the sources make before cold
            BO's initial design: the architectures their models agree on most
            (:class:`~workbench.strategy.bo.consensus.SourceConsensus`). Useless sources cost
            ``lead - 1`` evaluations more than ``lead=1``.
        hedge: Under ``schedule="fixed"``, every ``hedge``-th ask (counted by the target's usable
            observations, from the second on) proposes with cold BO's model. 0: never.
    """

    name = "bo"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        n_init: int = 5,
        encoding: str | Sequence[str] = "onehot",
        ard: bool = False,
        transform: str = "rank",
        fit_maxiter: int = 60,
        shortlist: int = 256,
        mc_samples: int = 128,
        n_samples: int = 1000,
        n_mutations: int = 200,
        local_rounds: int = 0,
        local_top: int = 10,
        local_children: int = 10,
        objectives: Sequence[str] | str = (),
        prior: Sequence[Genotype] = (),
        sources: Sequence[WarmSource] | None = None,
        transfer: str = "rgpe",
        source_points: int = 300,
        hedge: int = 2,
        schedule: str = "backoff",
        lead: int = 2,
    ) -> None:
        super().__init__(space, seed)
        if isinstance(encoding, str):
            encoding = [e.strip() for e in encoding.split("+") if e.strip()]
        if schedule not in SCHEDULES:
            raise UserError(f"bo schedule must be one of {list(SCHEDULES)}; got {schedule!r}")
        if transform not in TRANSFORMS:
            raise UserError(f"bo transform must be one of {list(TRANSFORMS)}; got {transform!r}")
        for label, value, low, high in (
            ("n_init", n_init, 0, MAX_INIT),
            ("fit_maxiter", fit_maxiter, 1, MAX_FIT_ITER),
            ("shortlist", shortlist, 1, MAX_SHORTLIST),
            ("mc_samples", mc_samples, 1, MAX_MC_SAMPLES),
            ("n_samples", n_samples, 1, MAX_SAMPLES),
            ("n_mutations", n_mutations, 0, MAX_SAMPLES),
            ("hedge", hedge, 0, MAX_INIT),
            ("lead", lead, 1, MAX_INIT),
            ("local_rounds", local_rounds, 0, MAX_LOCAL_ROUNDS),
            ("local_top", local_top, 1, MAX_LOCAL_TOP),
            ("local_children", local_children, 1, MAX_LOCAL_CHILDREN),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise UserError(f"bo {label} must be an integer >= {low}; got {value!r}")
            if value > high:
                raise UserError(f"bo {label} must be an integer in [{low}, {high}]; got {value!r}")
        self.local_rounds, self.local_top, self.local_children = int(local_rounds), int(local_top), int(local_children)
        try:
            self.objectives = parse_objectives(objectives)
        except ValueError as exc:
            raise UserError(f"bad bo objectives: {exc}") from None
        self.n_init = int(n_init)
        self.hedge = int(hedge)
        self.schedule = schedule
        self.lead = int(lead)
        self.encoding = tuple(encoding)
        self.featurizer = Featurizer(space, self.encoding)
        self.ard = bool(ard)
        self.transform = transform
        self.fit_settings = FitSettings(maxiter=int(fit_maxiter))
        self.shortlist = int(shortlist)
        self.mc_samples = int(mc_samples)
        self.prior = list(prior)
        self.full_pool = FullPool(space, self.encoding) if FullPool.supports(space) else None
        self.sampled_pool = None if self.full_pool else SampledPool(space, self.seed, n_samples, n_mutations)
        self._fitted: tuple[int, list[GPModel], list[Observation], np.ndarray] | None = None
        #: Timings and details of the last model-based ask (seconds), for benchmarks.
        self.last_ask: dict[str, Any] = {}
        self._transfer = self._make_transfer(sources, transfer, source_points)
        #: The multi-task model in use (``"rgpe"``, ``"mtgp"``, ``"copula"``), ``""`` without sources.
        self.transfer_model = transfer if self._transfer is not None else ""

    @classmethod
    def warm_start_options(cls, warm: WarmStart, options: Mapping[str, Any]) -> dict[str, Any]:
        """The sources' observations themselves (``sources``), for the multi-task model (the
        model ranks the sources' best itself); with ``transfer="design"`` the offered ``prior``."""
        if options.get("transfer") == DESIGN:
            return {"prior": list(warm.prior)}
        return {"sources": list(warm.sources)}

    def _make_transfer(
        self, sources: Sequence[WarmSource] | None, transfer: str, source_points: int
    ) -> TransferProposer | None:
        """The warm-start model's proposer (None without sources); several objectives get the
        sources' best architectures to evaluate first instead."""
        if transfer not in (*TRANSFER_MODELS, DESIGN):
            raise UserError(f"bo transfer must be one of {[*TRANSFER_MODELS, DESIGN]}; got {transfer!r}")
        if isinstance(source_points, bool) or not isinstance(source_points, (int, np.integer)) or source_points < 3:
            raise UserError(f"bo source_points must be an integer >= 3; got {source_points!r}")
        if not sources or transfer == DESIGN:
            return None
        bad = [type(s).__name__ for s in sources if not isinstance(s, WarmSource)]
        if bad:
            raise TypeError(f"bo sources must be WarmSource records; got {bad[0]}")
        if len(self.objectives) >= 2:
            for source in sources:
                self.prior += source.best(2)
            return None
        return TransferProposer(self._transfer_context(), sources, transfer, int(source_points))

    def _transfer_context(self) -> TransferContext:
        """What the warm-start proposer sees of this strategy."""
        return TransferContext(
            space=self.space,
            seed=self.seed,
            features=self._features,
            layout=self._layout,
            transform=lambda values: transform_targets(values, self.transform),
            fit_settings=self.fit_settings,
            usable=lambda: self._targets(self.history),
            history=lambda: self.history,
            seen=lambda: self._seen,
            full_pool=self.full_pool,
            sampled_pool=self.sampled_pool,
        )

    def source_weights(self) -> dict[str, float]:
        """Current trust in each source task (``{}`` without sources): RGPE's ensemble weights,
        or the multi-task GP's task correlations with the target."""
        return self._transfer.weights() if self._transfer is not None else {}

    # -- data --------------------------------------------------------------------------------

    def _targets(self, observations: Sequence[Observation]) -> tuple[list[Observation], np.ndarray]:
        """Usable observations and their maximised objectives `n x M` (under a multi-fidelity
        scheduler: those of the highest fidelity with enough of them, as BOHB)."""
        observations = highest_fidelity(observations, max(3, self.n_init))
        if not self.objectives:
            used = [o for o in observations if o.ok]
            return used, np.array([[float(o.value)] for o in used]).reshape(len(used), 1)
        values, ok = objective_matrix([o.objectives for o in observations], self.objectives)
        ok &= np.array([o.value is not None for o in observations], dtype=bool)
        rows = np.flatnonzero(ok)
        return [observations[i] for i in rows], values[rows]

    def _layout(self) -> KernelLayout:
        widths = self.full_pool.widths() if self.full_pool else self.featurizer.widths
        blocks: list[list[list[int]]] = []
        start = 0
        for w in widths:
            cols = list(range(start, start + w))
            blocks.append([[c] for c in cols] if self.ard else [cols])
            start += w
        prior = [[float(np.sqrt(w))] * len(b) for w, b in zip(widths, blocks)]
        h = self.featurizer.n_hyper
        if h:  # hyperparameter columns: one lengthscale each, multiplying the first block
            for c in range(start, start + h):
                blocks[0].append([c])
                prior[0].append(0.5)
        return KernelLayout.from_blocks(blocks, prior)

    def _features(self, gs: Sequence[Genotype]) -> np.ndarray:
        if self.full_pool is not None:
            idx = [self.full_pool.index_of(g) for g in gs]
            if all(i is not None for i in idx):
                return self.full_pool.features()[idx]
            parts = [np.asarray(self.space.encode(list(gs), e), dtype=np.float64) for e in self.encoding]
            return np.concatenate(parts, axis=1)
        return self.featurizer.cached(gs)

    def _models(self) -> tuple[list[GPModel], list[Observation], np.ndarray]:
        """Fitted GPs (one per objective) on the usable history, refitted only when it changed."""
        if self._fitted is not None and self._fitted[0] == len(self.history):
            return self._fitted[1], self._fitted[2], self._fitted[3]
        used, values = self._targets(self.history)
        x = torch.as_tensor(self._features([o.genotype for o in used]), dtype=DTYPE)
        layout = self._layout()
        ys = np.column_stack([transform_targets(values[:, j], self.transform) for j in range(values.shape[1])])
        models = [
            GPModel.fit(x, torch.as_tensor(ys[:, j], dtype=DTYPE), layout, self.fit_settings)
            for j in range(ys.shape[1])
        ]
        self._fitted = (len(self.history), models, used, ys)
        return models, used, ys

    # -- asking ------------------------------------------------------------------------------

    def ask(self, n: int = 1, *, pending: Sequence[Genotype] = ()) -> list[Proposal]:
        rng = self.rng_for(pending)
        taken = {g.key for g in pending}
        out = self.prior_proposals(self.prior, n, taken)
        values = self._usable_values()
        n_usable = len(values)
        warm = self._transfer is not None and self._transfer.ready()
        turn = warm and not self._cold_turn_for(values)
        # the random initial design: cold BO's n_init asks; with sources, none under "fixed" and
        # n_init - 1 after the lead's zero-shot picks under "backoff"
        design, asked = self.n_init, len(self.history)
        skip = warm and (self.schedule == "fixed" or turn)
        if warm and not skip:
            design -= 1
            asked -= len(backoff_asks(values, self.n_init, WARM_QUANTILE, **self._backoff()))
        while len(out) < n and not skip and (asked + len(pending) + len(out) < design or n_usable < 2):
            g = self.fresh_sample(rng, taken)
            out.append(Proposal(g, origin="random"))
            taken.add(g.key)
        if len(out) < n:
            origin = ORIGIN_TRANSFER if turn else "model"
            zero_shot = turn and self.schedule == "backoff" and n_usable < self.lead
            picked = self._model_proposals(
                n - len(out), list(pending) + [p.genotype for p in out], taken, rng, turn, zero_shot
            )
            out += [Proposal(g, origin=origin) for g in picked]
        return out

    def _backoff(self) -> dict[str, Any]:
        """The backoff rule's settings (:func:`~workbench.strategy.backoff.backoff_turn`)."""
        return {"lead": self.lead, "keep_turn": WARM_KEEP_TURN}

    def _usable_values(self) -> list[float]:
        """The target's usable values in the order observed (the scalar objective)."""
        used, values = self._targets(self.history)
        return [float(v) for v in values[:, 0]] if len(used) else []

    def cold_turn(self) -> bool:
        """True when this ask of a warm-started search proposes with cold BO's model (its
        ``schedule``); False without sources."""
        return self._cold_turn_for(self._usable_values())

    def _cold_turn_for(self, values: Sequence[float]) -> bool:
        """:meth:`cold_turn` given the target's usable values."""
        if self._transfer is None:
            return False
        if self.schedule == "fixed":
            return not fixed_turn(len(values), self.hedge)
        return not backoff_turn(values, self.n_init, WARM_QUANTILE, **self._backoff())

    def _model_proposals(
        self,
        k: int,
        pending: list[Genotype],
        taken: set[str],
        rng: np.random.Generator,
        transfer: bool = False,
        zero_shot: bool = False,
    ) -> list[Genotype]:
        """``k`` proposals of the sources' model (``transfer``: a transfer turn; ``zero_shot``: a
        lead ask) or of cold BO's."""
        if transfer:
            picked, record = self._transfer.propose(k, pending, taken, rng, zero_shot)
            if record is not None:
                self.last_ask = record.as_dict()
            for g in picked:
                taken.add(g.key)
            while len(picked) < k:  # the candidates ran out
                g = self.fresh_sample(rng, taken)
                picked.append(g)
                taken.add(g.key)
            return picked
        t0 = time.perf_counter()
        models, used, ys = self._models()
        t_fit = time.perf_counter() - t0
        # candidates
        if self.full_pool is not None:
            avail = self.full_pool.available([o.genotype for o in self.history] + pending)
            members = self.full_pool.members()
            genotypes = None
            x_cand = torch.from_numpy(self.full_pool.features()[avail])
        else:
            genotypes, x_cand = self.sampled_candidates(models, used, ys, taken, rng)
        n_cand = 0 if x_cand is None else x_cand.shape[0]
        if n_cand == 0:  # the space looks exhausted
            out = []
            for _ in range(k):
                g = self.fresh_sample(rng, taken)
                out.append(g)
                taken.add(g.key)
            return out
        t1 = time.perf_counter()
        seed = int(rng.integers(2**31 - 1))
        x_pend = torch.as_tensor(self._features(pending), dtype=DTYPE) if pending else None
        if len(models) == 1:
            best_f = float(ys[:, 0].max())
            if k == 1 and x_pend is None:
                picks = [int(top_log_ei(models[0], x_cand, best_f, 1)[0][0])]
            else:
                short, _ = top_log_ei(models[0], x_cand, best_f, max(self.shortlist, k))
                sub = greedy_qlognei(models[0], x_cand[short], k, x_pend, seed, self.mc_samples)
                picks = [int(short[i]) for i in sub]
        else:
            short = self._mo_shortlist(models, ys, x_cand, k)
            ref = reference_point(torch.as_tensor(ys, dtype=DTYPE))
            sub = greedy_qlognehvi(models, x_cand[short], k, x_pend, ref, seed, min(self.mc_samples, 64))
            picks = [int(short[i]) for i in sub]
        t_acq = time.perf_counter() - t1
        self.last_ask = {
            "fit_s": t_fit,
            "acq_s": t_acq,
            "candidates": n_cand,
            "observations": len(used),
            "hyperparameters": [m.hp for m in models],
            **({"transfer": "cold turn"} if self._transfer else {}),
        }
        if genotypes is None:
            return [members[int(avail[i])] for i in picks]
        return [genotypes[i] for i in picks]

    def sampled_candidates(
        self,
        models: list[GPModel],
        used: list[Observation],
        ys: np.ndarray,
        taken: set[str],
        rng: np.random.Generator,
    ) -> tuple[list[Genotype], torch.Tensor | None]:
        """Candidates of a space without a pool and their features: the sampled pool's random
        samples and mutations of the best observations, then (``local_rounds``, one objective)
        rounds of mutations of the candidates with the best LogEI."""
        parents = self._parents(used, ys)
        excluded = self._seen | taken
        genotypes = self.sampled_pool.candidates(parents, rng, excluded, len(self.history))
        if not genotypes:
            return genotypes, None
        x_cand = torch.as_tensor(self.featurizer.cached(genotypes), dtype=DTYPE)
        if self.local_rounds and len(models) == 1:
            best_f = float(ys[:, 0].max())
            known = excluded | {g.key for g in genotypes}
            for _ in range(self.local_rounds):
                rows, _ = top_log_ei(models[0], x_cand, best_f, self.local_top)
                children: dict[str, Genotype] = {}
                for i in rows.tolist():
                    for _ in range(self.local_children):
                        child = self.space.mutate(genotypes[i], rng)
                        if child.key not in known and child.key not in children:
                            children[child.key] = child
                if not children:
                    break
                known |= set(children)
                fresh = list(children.values())
                genotypes = genotypes + fresh
                x_cand = torch.cat([x_cand, torch.as_tensor(self.featurizer.cached(fresh), dtype=DTYPE)])
        return genotypes, x_cand

    @staticmethod
    def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
        """Indices of the ``k`` best scores (ties by lower index), best first."""
        k = min(k, scores.shape[0])
        order = torch.argsort(-scores, stable=True)
        return order[:k]

    def _mo_shortlist(self, models: list[GPModel], ys: np.ndarray, x_cand: torch.Tensor, k: int) -> torch.Tensor:
        """Candidates for qLogNEHVI: the best by each objective's LogEI and by weighted sums of
        the posterior means (spanning the front between the objectives' extremes)."""
        m = len(models)
        size = max(self.shortlist, k)
        per = max(1, size // (2 * m))
        picked: list[torch.Tensor] = []
        means = []
        for j, gp in enumerate(models):
            picked.append(top_log_ei(gp, x_cand, float(ys[:, j].max()), per)[0])
            means.append(gp.predict_mean(x_cand))
        mu = torch.stack(means, dim=-1)
        n_weights = 8
        for w in np.linspace(0.0, 1.0, n_weights) if m == 2 else np.eye(m):
            weights = torch.as_tensor(np.array([w, 1.0 - w]) if m == 2 else w, dtype=DTYPE)
            picked.append(self._top(mu @ weights, max(1, size // (2 * n_weights))))
        order = torch.cat(picked).tolist()
        return torch.as_tensor(list(dict.fromkeys(order)), dtype=torch.long)

    def _parents(self, used: list[Observation], ys: np.ndarray, count: int = 5) -> list[Genotype]:
        """The best few observations to mutate (the Pareto front first for several objectives)."""
        if not used:
            return []
        if ys.shape[1] == 1:
            order = np.argsort(-ys[:, 0], kind="stable")
        else:
            ranks = nondominated_sort(ys)
            order = np.lexsort((-ys.sum(1), ranks))
        out: dict[str, Genotype] = {}
        for i in order:
            g = used[int(i)].genotype
            out.setdefault(g.key, g)
            if len(out) >= count:
                break
        return list(out.values())

    # -- results -----------------------------------------------------------------------------

    def pareto_front(self) -> list[Observation]:
        """Told observations no other dominates (with ``objectives``); else the incumbent."""
        if len(self.objectives) < 2:
            used, values = self._targets(self.history)
            if not used:
                return []
            best = values[:, 0].max()
            return [o for o, v in zip(used, values[:, 0]) if v == best]
        used, values = self._targets(self.history)
        if not used:
            return []
        ranks = nondominated_sort(values)
        return [o for o, r in zip(used, ranks) if r == 0]
