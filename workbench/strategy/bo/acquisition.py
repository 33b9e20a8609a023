"""Acquisition over discrete candidate sets: LogEI, greedy qLogNEI and greedy qLogNEHVI (BoTorch).

* :func:`log_ei` scores every candidate with BoTorch's analytic ``LogExpectedImprovement`` on the
  GP's marginal posterior (fast enough for a whole 26,206-architecture pool).
* :func:`greedy_qlognei` picks a batch one point at a time with BoTorch's
  ``qLogNoisyExpectedImprovement``; points already picked and the caller's pending points are
  ``X_pending``, so the batch spreads out instead of piling onto one mode.
* :func:`greedy_qlognehvi` does the same for several objectives with
  ``qLogNoisyExpectedHypervolumeImprovement``.
* :func:`top_log_ei_rows` finds the best candidates by LogEI under a warm-started multi-task
  model (:class:`~workbench.strategy.bo.transfer_model.TransferModel`) without computing every
  candidate's variance; :func:`log_ei_from` is BoTorch's LogEI from means and variances.

The MC acquisitions run on the exact BoTorch ``SingleTaskGP`` of each fitted model, over a
shortlist (the best candidates by LogEI, chosen by the caller), with seeded quasi-MC samplers and
a seeded baseline pruning, so the same inputs give the same picks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from workbench.strategy.bo.model import DTYPE, GPModel, marginal_model

if TYPE_CHECKING:
    from workbench.strategy.bo.pool_kernel import Candidates
    from workbench.strategy.bo.transfer_model import TransferModel


def log_ei(gp: GPModel, x: Tensor, best_f: float) -> Tensor:
    """BoTorch ``LogExpectedImprovement`` of each row of ``x`` (`m x d`) -> `m`."""
    from botorch.acquisition.analytic import LogExpectedImprovement

    if x.shape[0] == 0:
        return torch.zeros(0, dtype=DTYPE)
    acq = LogExpectedImprovement(marginal_model(gp), best_f=best_f)
    with torch.no_grad():
        return acq(x.to(DTYPE).unsqueeze(-2))


def top_log_ei(gp: GPModel, x: Tensor, best_f: float, k: int = 1, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """The ``k`` rows of ``x`` with the largest LogEI, exactly, without scoring all of them.

    LogEI grows with the posterior mean and with the posterior standard deviation, and the
    latter never exceeds the prior's. So candidates are visited by decreasing posterior mean
    (one cross-covariance product, no solve), their exact LogEI (:func:`log_ei`) is computed a
    chunk at a time, and the scan stops once the bound ``LogEI(mean, prior sd)`` of the next
    candidate falls below the ``k``-th best exact value. Ties go to the lower row index, as
    with a full scan.

    Returns:
        ``(rows, values)``: `k` row indices into ``x`` (best first) and their LogEI.
    """
    from botorch.acquisition.analytic import _log_ei_helper

    m = x.shape[0]
    k = min(k, m)
    if k == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=DTYPE)
    mean = gp.predict_mean(x)
    order = torch.argsort(-mean, stable=True)
    sd_max = math.sqrt(gp.prior_var)
    bound = _log_ei_helper((mean[order] - best_f) / sd_max) + math.log(sd_max)
    rows, values = [], []
    pos = 0
    while pos < m:
        sel = order[pos : pos + chunk]
        rows.append(sel)
        values.append(log_ei(gp, x[sel], best_f))
        pos += chunk
        if pos < m and pos >= k:
            kth = torch.topk(torch.cat(values), k).values[-1]
            if bool(bound[pos] < kth):
                break
    return best_k(torch.cat(rows), torch.cat(values), k)


def best_k(index: Tensor, values: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` entries with the largest ``values``, best first, equal values by lower ``index``."""
    key = torch.argsort(index, stable=True)
    index, values = index[key], values[key]
    best = torch.argsort(-values, stable=True)[:k]
    return index[best], values[best]


def log_ei_from(mean: Tensor, var: Tensor, best_f: float) -> Tensor:
    """Analytic LogEI (BoTorch's formula and numerics) from marginal means and variances."""
    from botorch.acquisition.analytic import _log_ei_helper

    sigma = var.clamp_min(1e-12).sqrt()
    return _log_ei_helper((mean - best_f) / sigma) + sigma.log()


def top_log_ei_rows(
    model: TransferModel,
    cands: Candidates,
    rows: np.ndarray,
    best_f: float,
    k: int = 1,
    chunk: int = 128,
    switch_after: int = 512,
) -> tuple[np.ndarray, Tensor]:
    """The ``k`` candidate rows (of ``rows``) with the largest LogEI under ``model``, exactly.

    A multi-task model's counterpart of :func:`top_log_ei`, over rows of a candidate set whose
    scores the model caches. LogEI grows with the mean and with the standard deviation, so
    ``LogEI(mean, bound)`` bounds each row's value for an upper bound of its variance. Rows are
    visited by decreasing bound, exact values (:meth:`TransferModel.variance`) computed a chunk
    at a time (chunks double), until the next row's bound is below the ``k``-th best exact
    value. The first bound is the model's nearly free ``prior_bound``; when ``switch_after``
    rows did not settle it, the remaining rows are re-ordered by the tighter ``variance_bound``.
    Ties go to the lower position in ``rows``.

    Returns:
        ``(positions, values)``: positions into ``rows`` (best first) and their LogEI.
    """
    m = len(rows)
    k = min(k, m)
    if k == 0:
        return np.zeros(0, dtype=np.int64), torch.zeros(0, dtype=DTYPE)
    mean = torch.as_tensor(model.mean(cands, rows), dtype=DTYPE)
    var0 = torch.as_tensor(model.prior_bound(cands, rows), dtype=DTYPE)
    bound_all = log_ei_from(mean, var0, best_f)
    order = torch.argsort(-bound_all, stable=True)
    bound = bound_all[order]
    seen_pos, values = [], []
    pos = 0
    size = chunk
    tightened = False
    while pos < m:
        if not tightened and pos >= switch_after:  # re-order what is left by the tighter bound
            tightened = True
            rest = order[pos:]
            var_max = torch.as_tensor(model.variance_bound(cands, rows[rest.numpy()]), dtype=DTYPE)
            rest_bound = log_ei_from(mean[rest], var_max, best_f)
            kth = torch.topk(torch.cat(values), k).values[-1]
            keep = rest_bound >= kth
            rest, rest_bound = rest[keep], rest_bound[keep]
            sub = torch.argsort(-rest_bound, stable=True)
            order = torch.cat([order[:pos], rest[sub]])
            bound = torch.cat([bound[:pos], rest_bound[sub]])
            m = len(order)
            if pos >= m:
                break
        sel = order[pos : pos + size]
        var = torch.as_tensor(model.variance(cands, rows[sel.numpy()]), dtype=DTYPE)
        seen_pos.append(sel)
        values.append(log_ei_from(mean[sel], var, best_f))
        pos += len(sel)
        size *= 2
        if pos < m and pos >= k:
            kth = torch.topk(torch.cat(values), k).values[-1]
            if bool(bound[pos] < kth):
                break
    pos_t, values_t = best_k(torch.cat(seen_pos), torch.cat(values), k)
    return pos_t.numpy(), values_t


def _evaluate(acq, x: Tensor, chunk: int) -> Tensor:
    from linear_operator.utils.warnings import NumericalWarning

    out = []
    with torch.no_grad(), warnings.catch_warnings():
        # joint posteriors of a candidate with the baseline may need jitter; that is expected
        warnings.simplefilter("ignore", NumericalWarning)
        for start in range(0, x.shape[0], chunk):
            out.append(acq(x[start : start + chunk].unsqueeze(-2)))
    return torch.cat(out)


def _pick(scores: Tensor, used: set[int]) -> int:
    """Index of the best score not in ``used`` (lowest index on ties)."""
    s = scores.clone()
    if used:
        s[list(used)] = -float("inf")
    return int(torch.argmax(s))


def _pruned_baseline(model, x_train: Tensor, seed: int, mc_samples: int, max_points: int, objective=None) -> Tensor:
    """Training points with a chance of being the best (BoTorch's pruning, seeded sampler)."""
    from botorch.acquisition.utils import prune_inferior_points
    from botorch.sampling import SobolQMCNormalSampler
    from linear_operator.utils.warnings import NumericalWarning

    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", NumericalWarning)
        pruned = prune_inferior_points(model, x_train, sampler=sampler, objective=objective)
    return pruned[:max_points] if pruned.shape[0] > max_points else pruned


def greedy_qlognei(
    gp: GPModel,
    candidates: Tensor,
    n: int,
    pending: Tensor | None,
    seed: int,
    mc_samples: int = 128,
    chunk: int = 64,
) -> list[int]:
    """Pick ``n`` rows of ``candidates`` (`m x d`) one by one with qLogNEI given ``pending``.

    Args:
        gp: The fitted model (its BoTorch ``SingleTaskGP`` is used).
        candidates: The shortlist to choose from.
        n: How many to pick (at most ``m``).
        pending: `p x d` points under evaluation, or None.
        seed: Seed of the quasi-MC samplers.
        mc_samples: Quasi-MC samples per evaluation.
        chunk: Candidates evaluated per batch.

    Returns:
        Row indices into ``candidates``, in pick order, all distinct.
    """
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.sampling import SobolQMCNormalSampler

    model = gp.single_task_gp()
    baseline = _pruned_baseline(model, gp.x, seed, 256, 64)
    chosen: list[int] = []
    pend = pending.to(DTYPE) if pending is not None and pending.shape[0] else None
    for step in range(min(n, candidates.shape[0])):
        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed + 1 + step)
        acq = qLogNoisyExpectedImprovement(
            model, X_baseline=baseline, sampler=sampler, X_pending=pend, prune_baseline=False, cache_root=False
        )
        scores = _evaluate(acq, candidates.to(DTYPE), chunk)
        i = _pick(scores, set(chosen))
        chosen.append(i)
        row = candidates[i : i + 1].to(DTYPE)
        pend = row if pend is None else torch.cat([pend, row])
    return chosen


def reference_point(y: Tensor, margin: float = 0.1) -> Tensor:
    """A hypervolume reference point from observed (maximised) objectives `n x m`: the worst
    value of each objective, less ``margin`` times its observed range."""
    lo = y.min(dim=0).values
    hi = y.max(dim=0).values
    span = (hi - lo).clamp_min(1e-6)
    return lo - margin * span


def greedy_qlognehvi(
    gps: Sequence[GPModel],
    candidates: Tensor,
    n: int,
    pending: Tensor | None,
    ref_point: Tensor,
    seed: int,
    mc_samples: int = 64,
    chunk: int = 64,
    max_baseline: int = 256,
) -> list[int]:
    """Pick ``n`` rows of ``candidates`` one by one with qLogNEHVI over independent GPs.

    Args:
        gps: One fitted model per objective (all on the same training rows, maximised,
            standardised targets).
        candidates: `m x d` shortlist.
        n: How many to pick.
        pending: `p x d` points under evaluation, or None.
        ref_point: `M` reference point in the models' (standardised) outcome space.
        seed: Seed of the quasi-MC samplers.
        mc_samples: Quasi-MC samples.
        chunk: Candidates evaluated per batch.
        max_baseline: Most training points kept as the baseline (best by summed posterior mean).

    Returns:
        Row indices into ``candidates``, in pick order, all distinct.
    """
    from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
    from botorch.models import ModelListGP
    from botorch.sampling import SobolQMCNormalSampler

    model = ModelListGP(*[gp.single_task_gp() for gp in gps])
    model.eval()
    x_base = gps[0].x
    if x_base.shape[0] > max_baseline:
        means = torch.stack([gp.predict(x_base)[0] for gp in gps], dim=-1)
        keep = torch.argsort(means.sum(-1), descending=True, stable=True)[:max_baseline]
        x_base = x_base[torch.sort(keep).values]
    chosen: list[int] = []
    pend = pending.to(DTYPE) if pending is not None and pending.shape[0] else None
    for step in range(min(n, candidates.shape[0])):
        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed + 1 + step)
        acq = qLogNoisyExpectedHypervolumeImprovement(
            model,
            ref_point=ref_point.to(DTYPE),
            X_baseline=x_base,
            sampler=sampler,
            X_pending=pend,
            prune_baseline=False,
            cache_root=False,
        )
        scores = _evaluate(acq, candidates.to(DTYPE), chunk)
        i = _pick(scores, set(chosen))
        chosen.append(i)
        row = candidates[i : i + 1].to(DTYPE)
        pend = row if pend is None else torch.cat([pend, row])
    return chosen
