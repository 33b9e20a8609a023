"""Warm-started proposals of ``bo``: the proposer that asks a multi-task model for candidates.

With warm-start sources (other tasks' histories in the same space), a single-objective
:class:`~workbench.strategy.bo.strategy.BayesianOptimization` hands its model-based asks to a
:class:`TransferProposer`. The strategy describes itself to it once, as a
:class:`TransferContext` (features, kernel layout, target transform, pools, and functions that
give its current observations); the proposer never reads or writes the strategy itself, and
returns how each ask went as an :class:`AskRecord` for the strategy to keep.

The proposer prepares the sources (:mod:`.sources`) and builds its model on the first ask: RGPE
(:mod:`.rgpe`), the fast multi-task GP (:mod:`.mtgp`) or the copula prior (:mod:`.copula`), all
:class:`~workbench.strategy.bo.transfer_model.TransferModel` s. Sources never change during a
search, so everything that depends only on them (source fits, their predictions on a tabular
space's pool) is computed once and cached; each ask only fits what depends on the target's
observations, then maximises LogEI over the candidates
(:func:`~workbench.strategy.bo.acquisition.top_log_ei_rows`), one pick at a time with the
earlier picks and pending points fantasized at the posterior mean.

Everything is deterministic: fits start from fixed values, RGPE's bootstrap samples come from a
generator seeded by the strategy's seed and the number of tells.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from workbench.errors import InvalidGenotype, UserError
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.strategy.base import Observation, WarmSource
from workbench.strategy.bo.acquisition import top_log_ei_rows
from workbench.strategy.bo.consensus import SourceConsensus, source_gps
from workbench.strategy.bo.copula import CopulaPrior
from workbench.strategy.bo.model import DTYPE, FitSettings, GPModel, KernelLayout
from workbench.strategy.bo.mtgp import FastMultiTaskGP
from workbench.strategy.bo.pool import FullPool, SampledPool
from workbench.strategy.bo.pool_kernel import Candidates
from workbench.strategy.bo.rgpe import RGPE
from workbench.strategy.bo.sources import PreparedSource, prepare_sources
from workbench.strategy.bo.transfer_model import TransferModel

__all__ = [
    "RANDOM_PROBES",
    "TRANSFER_MODELS",
    "AskRecord",
    "TransferContext",
    "TransferProposer",
    "make_transfer_model",
]

#: The multi-task models, by their ``transfer`` option.
TRANSFER_MODELS = ("rgpe", "mtgp", "copula")
#: Uniformly random proposals after the sources' best and before the model is used.
RANDOM_PROBES = 1


@dataclass(frozen=True)
class TransferContext:
    """What a :class:`TransferProposer` needs of its strategy (built by the strategy, read-only).

    Attributes:
        space: The search space (checks the sources' best before they become candidates).
        seed: The strategy's seed (with the number of tells, it seeds RGPE's bootstrap).
        features: ``genotypes -> `n x d` array``: the GP's feature rows.
        layout: The kernel layout of those rows (a function: a featurizer learns its widths
            from the first rows it encodes).
        transform: ``values -> GP targets`` (the strategy's ``transform``, applied per task).
        fit_settings: Hyperparameter fit settings of every GP.
        usable: ``() -> (observations, values)``: the target's usable observations and their
            maximised objective (`n x 1`), as the strategy's own model sees them.
        history: ``() -> observations``: everything told, in order (failures included).
        seen: ``() -> keys`` of the told genotypes.
        full_pool: The whole pool of a tabular space; None for other spaces.
        sampled_pool: The candidate sampler of other spaces; None with a full pool.
    """

    space: SearchSpace
    seed: int
    features: Callable[[Sequence[Genotype]], np.ndarray]
    layout: Callable[[], KernelLayout]
    transform: Callable[[np.ndarray], np.ndarray]
    fit_settings: FitSettings
    usable: Callable[[], tuple[list[Observation], np.ndarray]]
    history: Callable[[], Sequence[Observation]]
    seen: Callable[[], AbstractSet[str]]
    full_pool: FullPool | None = None
    sampled_pool: SampledPool | None = None


@dataclass(frozen=True)
class AskRecord:
    """How one warm-started ask went (the strategy's ``last_ask``, read by benchmarks).

    Attributes:
        fit_s: Seconds conditioning the model on the target's observations.
        acq_s: Seconds choosing among the candidates.
        candidates: Candidates considered.
        observations: The target's usable observations.
        transfer: The model (``"rgpe"``, ``"mtgp"``, ``"copula"``).
        source_weights: The model's trust in each source.
        target_weight: The target model's share (RGPE), None where the model has none.
        setup_s: Seconds of the one-off source preparation (features, source fits).
    """

    fit_s: float
    acq_s: float
    candidates: int
    observations: int
    transfer: str
    source_weights: dict[str, float]
    target_weight: float | None
    setup_s: float

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, in order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def make_transfer_model(
    method: str,
    sources: Sequence[PreparedSource],
    layout: KernelLayout,
    settings: FitSettings,
    n_bootstrap: int = 256,
    gps: Sequence[GPModel] | None = None,
) -> TransferModel:
    """The multi-task model ``method`` (one of :data:`TRANSFER_MODELS`) with its source part
    fitted (RGPE reuses the sources' GPs ``gps`` when given)."""
    if method == "rgpe":
        return RGPE(sources, layout, settings, n_bootstrap, gps=gps)
    if method == "mtgp":
        return FastMultiTaskGP(sources, layout, settings)
    if method == "copula":
        return CopulaPrior(sources, layout, settings)
    raise UserError(f"bo transfer must be one of {list(TRANSFER_MODELS)}; got {method!r}")


class TransferProposer:
    """Warm-started proposals of one :class:`~workbench.strategy.bo.strategy.BayesianOptimization`.

    Built lazily on the first ask from the strategy's sources; one GP per source and the source
    part of the model are fitted then and never again. Each ask conditions the model on the
    target's usable observations (transformed like the sources) and maximises LogEI over the
    candidates. Zero-shot asks (the schedule's lead, or no target observation yet) take what the
    sources' GPs agree on most (:class:`~workbench.strategy.bo.consensus.SourceConsensus`: the
    target's data cannot weight the sources yet). Without a lead, the ask after the first
    observation is a uniformly random probe (the pair tells a source that ranks the target
    backwards from one that ranks it well).

    Args:
        context: What the proposer needs of its strategy.
        sources: The warm start's sources.
        method: One of :data:`TRANSFER_MODELS`.
        max_source_points: Most observations kept per source.
        n_bootstrap: RGPE's bootstrap samples.
    """

    def __init__(
        self,
        context: TransferContext,
        sources: Sequence[WarmSource],
        method: str = "rgpe",
        max_source_points: int = 300,
        n_bootstrap: int = 256,
    ) -> None:
        if method not in TRANSFER_MODELS:
            raise UserError(f"bo transfer must be one of {list(TRANSFER_MODELS)}; got {method!r}")
        self.context = context
        self.warm_sources = list(sources)
        self.method = method
        self.max_source_points = int(max_source_points)
        self.n_bootstrap = int(n_bootstrap)
        self.sources: list[PreparedSource] | None = None
        self.model: TransferModel | None = None
        self.consensus: SourceConsensus | None = None
        self.pool: Candidates | None = None
        #: Seconds of the one-off source preparation (features, source fits).
        self.setup_seconds = 0.0

    # -- building --------------------------------------------------------------------------------
    def ready(self) -> bool:
        """Build the sources and models if needed; False when no usable source remains."""
        if self.sources is None:
            t0 = time.perf_counter()
            ctx = self.context
            self.sources = prepare_sources(self.warm_sources, ctx.features, ctx.transform, self.max_source_points)
            if self.sources:
                layout = ctx.layout()
                if ctx.full_pool is not None:
                    self.pool = Candidates(ctx.full_pool.features(), layout)
                gps = source_gps(self.sources, layout, ctx.fit_settings)
                self.consensus = SourceConsensus(gps)
                self.model = make_transfer_model(
                    self.method, self.sources, layout, ctx.fit_settings, self.n_bootstrap, gps=gps
                )
            self.setup_seconds = time.perf_counter() - t0
        return bool(self.sources)

    @property
    def source_fits(self) -> int:
        """Source model fits so far (they happen once, on the first ask): the sources' GPs and
        whatever else the transfer model fits of them."""
        return 0 if self.model is None else len(self.consensus.gps) + self.model.source_fits

    def _target_data(self) -> tuple[list[Observation], Tensor, Tensor]:
        ctx = self.context
        used, values = ctx.usable()
        if not used:
            return [], torch.zeros((0, self.sources[0].x.shape[1]), dtype=DTYPE), torch.zeros(0, dtype=DTYPE)
        x0 = torch.as_tensor(ctx.features([o.genotype for o in used]), dtype=DTYPE)
        return used, x0, torch.as_tensor(ctx.transform(values[:, 0]), dtype=DTYPE)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.context.seed, len(self.context.history()), 0xB007])

    def refresh(self) -> tuple[list[Observation], Tensor, Tensor]:
        """Condition the model on the current target observations (cached by data)."""
        used, x0, y0 = self._target_data()
        self.model.update(x0, y0, self._rng())
        return used, x0, y0

    def weights(self) -> dict[str, float]:
        """Current trust in each source (RGPE weights, or the MTGP's task correlations)."""
        if not self.ready():
            return {}
        self.refresh()
        return self.model.source_weights()

    # -- proposing --------------------------------------------------------------------------------
    def propose(
        self, k: int, pending: Sequence[Genotype], taken: set[str], rng: np.random.Generator, zero_shot: bool = False
    ) -> tuple[list[Genotype], AskRecord | None]:
        """Up to ``k`` new genotypes (distinct, not told, not pending) and how the ask went
        (None when no candidate was left).

        ``zero_shot`` (the schedule's lead asks) or no target observation yet: the sources'
        consensus picks (:class:`~workbench.strategy.bo.consensus.SourceConsensus`), whatever the
        target's data; one target observation and no lead: a uniformly random probe; otherwise
        LogEI of the transfer model conditioned on the target's observations."""
        ctx = self.context
        t0 = time.perf_counter()
        used, x0, y0 = self.refresh()
        t_fit = time.perf_counter() - t0
        t1 = time.perf_counter()
        if self.pool is not None:
            rows = ctx.full_pool.available([o.genotype for o in ctx.history()] + list(pending))
            members = ctx.full_pool.members()
            cands = self.pool
            genotypes = None
        else:
            genotypes = self._sampled_candidates(used, y0, taken, rng)
            if not genotypes:
                return [], None
            cands = Candidates(ctx.features(genotypes), ctx.layout())
            rows = np.arange(len(genotypes))
        informed = self.model.has_target and x0.shape[0] > RANDOM_PROBES
        model = self.model if informed and not zero_shot else None
        if model is not None and pending:
            model = model.fantasize(torch.as_tensor(ctx.features(list(pending)), dtype=DTYPE))
        picks: list[int] = []
        consensus = iter(self.consensus.order(cands, rows)) if model is None else iter(())
        for _ in range(min(k, len(rows))):
            free = np.setdiff1d(rows, np.asarray(picks, dtype=np.int64), assume_unique=True) if picks else rows
            if model is None:
                slot = x0.shape[0] + len(pending) + len(picks)
                if not zero_shot and 1 <= slot <= RANDOM_PROBES:  # a random probe tests the sources
                    pick = int(free[int(rng.integers(len(free)))])
                else:  # what the sources agree on
                    pick = next(int(r) for r in consensus if int(r) not in picks)
            else:
                best_f = float(y0.max())
                pos, _ = top_log_ei_rows(model, cands, free, best_f, 1)
                pick = int(free[int(pos[0])])
                model = model.fantasize(cands.x[pick : pick + 1])
            picks.append(pick)
        record = AskRecord(
            fit_s=t_fit,
            acq_s=time.perf_counter() - t1,
            candidates=len(rows),
            observations=len(used),
            transfer=self.method,
            source_weights=self.model.source_weights(),
            target_weight=self.model.target_weight,
            setup_s=self.setup_seconds,
        )
        if genotypes is None:
            return [members[i] for i in picks], record
        return [genotypes[i] for i in picks], record

    def _sampled_candidates(
        self, used: list[Observation], y0: Tensor, taken: set[str], rng: np.random.Generator
    ) -> list[Genotype]:
        """Candidates in spaces without a pool: samples, mutations of the target's and the
        trusted sources' best, and those best themselves."""
        ctx = self.context
        weights = self.model.source_weights()
        ranked = sorted(self.sources, key=lambda src: -weights.get(src.task, 0.0))
        best_sources: list[Genotype] = []
        for src in ranked:
            if weights.get(src.task, 0.0) > 0:
                order = np.argsort(-src.y.numpy(), kind="stable")[:5]
                best_sources += [src.genotypes[i] for i in order]
        parents = []
        if used:
            order = np.argsort(-y0.numpy(), kind="stable")[:5]
            parents = [used[int(i)].genotype for i in order]
        parents = list(dict.fromkeys(parents + best_sources[:5]))
        excluded = set(ctx.seen()) | taken
        out = {g.key: g for g in ctx.sampled_pool.candidates(parents, rng, excluded, len(ctx.history()))}
        for g in best_sources:
            if g.key not in excluded and g.key not in out:
                try:
                    ctx.space.validate(g)
                except InvalidGenotype:
                    continue
                out[g.key] = g
        return list(out.values())
