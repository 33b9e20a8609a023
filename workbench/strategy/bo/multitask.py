"""Multi-task BO warm-started from other tasks' searches: a fast ICM ``MultiTaskGP`` and RGPE.

A *source* is another task's history in the same space: ``(task, genotypes, values, weight)``
as :func:`workbench.transfer.plan.strategy_kwargs_for` hands it to ``bo`` (``weight`` is the
warm-start plan's trust in it before the target has data, from meta-features). Sources never
change during a search, so everything that depends only on them is computed once and cached;
each ask only fits what depends on the target's observations.

Two models of the target task, both on per-task transformed outcomes (the strategy's
``transform``, ``rank`` by default: zero mean, unit variance, separately for every task):

* :class:`RGPE`, the ranking-weighted Gaussian process ensemble of Feurer, Letham & Bakshy
  (2018). One exact GP per source (:class:`~workbench.strategy.bo.model.GPModel`, fitted once)
  and one on the target. The weight of each model is the fraction of bootstrap resamples of the
  target's observations on which it mis-ranks the fewest pairs. The target model is judged on
  held-out predictions: *leave-pair-out* rather than the paper's leave-one-out, whose
  predictions rank a weakly informed model's own points backwards and hand the weight to
  unrelated sources while the target has few points (:func:`leave_pair_out_wrong`). A source
  that ranks the target worse than the target's own model (median loss), or clearly no better
  than chance, gets weight 0. Ensemble mean ``sum w_m mu_m``, variance ``sum w_m^2 s_m^2``.
  Robust against negative transfer: the default.
* :class:`FastMultiTaskGP`, an intrinsic coregionalisation model with the kernel of BoTorch's
  ``MultiTaskGP`` (data kernel times a task covariance ``B``, the target task first, one noise
  level and one constant mean per task); :meth:`FastMultiTaskGP.botorch_model` returns the
  equivalent BoTorch model. Fitting the stock model with ``fit_gpytorch_mll`` takes minutes for
  1,000 points; here the data kernel, the source block of ``B`` and the sources' noise and means
  are fitted **once per source set** (MAP on a thinned subset), and each ask fits only the
  target's row of ``B`` (whitened against the source block, so ``B`` stays positive definite),
  its noise and mean, by maximising ``p(y_target | y_sources)``: a likelihood over `n_0 x n_0`
  matrices built from cached `n_s x n_0` solves. The posterior is exact, by a block Cholesky
  factor of all ``n_s + n_0`` points whose source block is cached.

Scoring a whole pool. The posterior *mean* over all 26,206 NAS-Bench-Graph architectures is
``K(pool, X) c``; for a one-hot encoding whose kernel is an exponentiated Hamming distance,
:class:`CategoricalSums` computes it without the `N x n` matrix: the kernel is a product over
decisions of ``r_d + (1 - r_d) [x_d = x'_d]``, so ``K c`` is a sum over subsets ``S`` of the
decisions of weighted lookups in tables of ``c`` summed by the values on ``S`` (32 subsets for
nbgraph, milliseconds for any ``n``). LogEI is then maximised exactly by visiting candidates by
decreasing mean and computing the posterior variance only for the visited chunks
(:func:`top_log_ei_rows`, as :func:`workbench.strategy.bo.acquisition.top_log_ei`).

Everything is deterministic: fits start from fixed values, bootstrap samples come from a
generator seeded by the strategy's seed and the number of tells.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from workbench.errors import InvalidGenotype, UserError
from workbench.space.genotype import Genotype
from workbench.strategy.bo.acquisition import best_k
from workbench.strategy.bo.model import (
    DTYPE,
    MAX_NOISE,
    MIN_NOISE,
    FitSettings,
    GPModel,
    Hyperparameters,
    KernelLayout,
    _cholesky,
    _sqdist,
)

TRANSFER_MODELS = ("rgpe", "mtgp")
#: Prior standard deviation of the target's whitened task-covariance row (``B[0, 1:] = L u``): small,
#: so that a correlation with the sources must be supported by the target's data.
U_PRIOR_SD = 0.5
#: Smallest standard deviation of the target's own part (not explained by any source), so the
#: model never becomes certain that the target is a mix of the sources.
MIN_OWN_SD = 0.3
#: Uniformly random proposals after the sources' best and before the model is used.
RANDOM_PROBES = 1
_VERSIONS = itertools.count()


_CONTROLLER: Any = None


@contextmanager
def single_threaded() -> Iterator[None]:
    """Torch and BLAS on one thread (as :func:`workbench.strategy.bo.model.single_threaded`), with
    the BLAS libraries found once per process: ``threadpool_limits`` scans the loaded libraries
    on every call, which was measured at several milliseconds with torch and scipy loaded."""
    global _CONTROLLER
    from threadpoolctl import ThreadpoolController

    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    previous = torch.get_num_threads()
    try:
        if previous != 1:
            torch.set_num_threads(1)
        with _CONTROLLER.limit(limits=1, user_api="blas"):
            yield
    finally:
        if previous != 1:
            torch.set_num_threads(previous)


def _data_key(x: Tensor, y: Tensor) -> tuple:
    """An exact key of a data set (models refit only when it changes)."""
    return tuple(x.shape), x.numpy().tobytes(), y.numpy().tobytes()

# -- the pool: candidate features, cached kernel sums ---------------------------------------------


class CategoricalSums:
    """``K(pool, X) @ c`` for every pool row without the `N x n` kernel matrix.

    Applies when every feature block of the kernel layout consists of one-hot *decisions*
    (groups of columns in which each row has exactly one 1) and each decision lies in one
    lengthscale group. Then a differing decision multiplies the kernel by
    ``r_d = exp(-1 / l_d^2)`` and a block's kernel is ``s_b prod_d (r_d + (1 - r_d) m_d)`` with
    ``m_d = [x_d = x'_d]``; expanding the product over subsets ``S`` of the block's decisions,
    ``sum_j c_j k(x, x_j) = sum_b s_b sum_S w_S T_S[x_S]`` where ``w_S = prod_{d in S} (1 - r_d)
    prod_{d not in S} r_d`` and ``T_S`` sums ``c_j`` by the values of ``x_j`` on ``S``.

    Build with :meth:`build` (None when the encoding is not of that form).
    """

    MAX_DECISIONS = 10
    MAX_TABLE = 2_000_000

    def __init__(self, decisions: list[list[int]], block_decisions: list[list[int]], decision_group: list[int],
                 pool_codes: np.ndarray) -> None:
        self.decisions = decisions  # columns of each decision
        self.block_decisions = block_decisions  # decision indices per kernel block
        self.decision_group = decision_group  # lengthscale group of each decision
        self.cards = [len(c) for c in decisions]
        self.pool_codes = pool_codes  # `N x D` value index of each decision
        self._subsets: list[list[tuple[list[int], np.ndarray, np.ndarray, int]]] = []
        for decs in block_decisions:
            per = []
            for mask in range(2 ** len(decs)):
                chosen = [decs[i] for i in range(len(decs)) if mask >> i & 1]
                mult = np.ones(len(chosen), dtype=np.int64)
                for i in range(len(chosen) - 2, -1, -1):
                    mult[i] = mult[i + 1] * self.cards[chosen[i + 1]]
                size = int(np.prod([self.cards[d] for d in chosen])) if chosen else 1
                idx = (pool_codes[:, chosen] @ mult) if chosen else np.zeros(len(pool_codes), dtype=np.int64)
                per.append((chosen, mult, idx.astype(np.int64), size))
            self._subsets.append(per)

    @classmethod
    def build(cls, pool_x: np.ndarray, layout: KernelLayout) -> CategoricalSums | None:
        """The structure of ``pool_x`` (`N x d`) under ``layout``, or None if it does not apply."""
        x = np.asarray(pool_x)
        if x.ndim != 2 or not np.isin(x, (0.0, 1.0)).all():
            return None
        group_of = {c: g for g, cols in enumerate(layout.groups) for c in cols}
        if sorted(group_of) != list(range(x.shape[1])):
            return None
        decisions: list[list[int]] = []
        block_decisions: list[list[int]] = []
        decision_group: list[int] = []
        for b in range(layout.n_blocks):
            cols = layout.block_columns(b)
            decs: list[int] = []
            current: list[int] = []
            partial = np.zeros(x.shape[0])
            for c in cols:
                col = x[:, c]
                if not current and not col.any() and decs:  # an unused column joins the previous decision
                    decisions[decs[-1]].append(c)
                    continue
                current.append(c)
                partial = partial + col
                if partial.max() > 1:
                    return None
                if partial.min() == 1:
                    decs.append(len(decisions))
                    decisions.append(current)
                    current, partial = [], np.zeros(x.shape[0])
            if current or not decs or len(decs) > cls.MAX_DECISIONS:
                return None
            for d in decs:
                groups = {group_of[c] for c in decisions[d]}
                if len(groups) != 1:
                    return None
            if int(np.prod([len(decisions[d]) for d in decs])) > cls.MAX_TABLE:
                return None
            block_decisions.append(decs)
            decision_group += [group_of[decisions[d][0]] for d in decs]
        order = [d for decs in block_decisions for d in decs]
        group_by_decision = [0] * len(decisions)
        for d, g in zip(order, decision_group):
            group_by_decision[d] = g
        sums = cls(decisions, block_decisions, group_by_decision, np.zeros((0, len(decisions)), dtype=np.int64))
        codes = sums.codes(x)
        if codes is None:
            return None
        return cls(decisions, block_decisions, group_by_decision, codes)

    def codes(self, x: np.ndarray) -> np.ndarray | None:
        """`n x D` value index of each decision of rows ``x``, or None if a row is not one-hot."""
        x = np.asarray(x)
        out = np.empty((x.shape[0], len(self.decisions)), dtype=np.int64)
        for d, cols in enumerate(self.decisions):
            part = x[:, cols]
            if part.shape[0] and not (np.isin(part, (0.0, 1.0)).all() and (part.sum(1) == 1).all()):
                return None
            out[:, d] = part.argmax(1) if part.shape[0] else 0
        return out

    def matvec(self, train_codes: np.ndarray, c: np.ndarray, lengthscales: np.ndarray,
               outputscales: np.ndarray) -> np.ndarray:
        """``sum_j c_j k(pool_i, x_j)`` for every pool row (`N`)."""
        c = np.asarray(c, dtype=np.float64)
        out = np.zeros(self.pool_codes.shape[0])
        r = np.exp(-1.0 / np.asarray(lengthscales, dtype=np.float64)[self.decision_group] ** 2)
        for b, decs in enumerate(self.block_decisions):
            for chosen, mult, pool_idx, size in self._subsets[b]:
                inside = set(chosen)
                w = float(outputscales[b]) * float(np.prod([(1.0 - r[d]) if d in inside else r[d] for d in decs]))
                if w == 0.0:
                    continue
                if chosen:
                    table = np.bincount(train_codes[:, chosen] @ mult, weights=c, minlength=size)
                    out += w * table[pool_idx]
                else:
                    out += w * c.sum()
        return out


class DataKernel:
    """The additive RBF kernel of a :class:`KernelLayout` with fixed hyperparameters (dense)."""

    def __init__(self, layout: KernelLayout, lengthscales: np.ndarray, outputscales: np.ndarray) -> None:
        self.layout = layout
        self.lengthscales = np.asarray(lengthscales, dtype=np.float64)
        self.outputscales = np.asarray(outputscales, dtype=np.float64)
        d = 1 + max(c for cols in layout.groups for c in cols)
        inv = np.zeros(d)
        for g, cols in enumerate(layout.groups):
            inv[list(cols)] = 1.0 / self.lengthscales[g]
        self._inv = torch.as_tensor(inv, dtype=DTYPE)
        self._blocks = [torch.as_tensor(layout.block_columns(b)) for b in range(layout.n_blocks)]

    @property
    def prior_var(self) -> float:
        """``k(x, x)``."""
        return float(self.outputscales.sum())

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        """`m x n` covariance between rows of ``a`` and ``b``."""
        out = torch.zeros((a.shape[0], b.shape[0]), dtype=DTYPE)
        for s, cols in zip(self.outputscales, self._blocks):
            inv = self._inv[cols]
            out += float(s) * torch.exp(-0.5 * _sqdist(a[:, cols] * inv, b[:, cols] * inv))
        return out


class Candidates:
    """A candidate set (`N x d` features) with caches for the models that score it.

    The whole pool of a tabular space is one ``Candidates`` for the life of a strategy, so the
    sources' predictions on it are computed once; other spaces get a fresh one per ask.
    """

    def __init__(self, x: np.ndarray | Tensor, layout: KernelLayout | None = None, structured: bool = True) -> None:
        self.x = torch.as_tensor(np.array(x, dtype=np.float64) if not isinstance(x, Tensor) else x, dtype=DTYPE)
        self.sums = CategoricalSums.build(self.x.numpy(), layout) if (layout is not None and structured) else None
        self.cache: dict[Any, Any] = {}

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def kernel_sums(self, kernel: DataKernel, train_x: Tensor, c: Tensor | np.ndarray, chunk: int = 4096) -> np.ndarray:
        """``kernel(candidates, train_x) @ c`` (`N`)."""
        c_np = np.asarray(c.detach().numpy() if isinstance(c, Tensor) else c, dtype=np.float64)
        if self.sums is not None:
            codes = self.sums.codes(train_x.numpy())
            if codes is not None:
                return self.sums.matvec(codes, c_np, kernel.lengthscales, kernel.outputscales)
        c_t = torch.as_tensor(c_np, dtype=DTYPE)
        out = []
        with single_threaded():
            for start in range(0, len(self), chunk):
                out.append(kernel(self.x[start : start + chunk], train_x) @ c_t)
        return torch.cat(out).numpy() if out else np.zeros(0)


def _gp_kernel(gp: GPModel) -> DataKernel:
    return DataKernel(gp.layout, gp.hp.lengthscales, gp.hp.outputscales)


def gp_pool_mean(gp: GPModel, cands: Candidates) -> np.ndarray:
    """Posterior mean of ``gp`` at every candidate (`N`)."""
    return gp.hp.mean + cands.kernel_sums(_gp_kernel(gp), gp.x, gp.alpha)


def gp_variance(gp: GPModel, x: Tensor) -> Tensor:
    """Posterior variance of ``gp`` at rows ``x`` (`m`)."""
    return gp.predict(x)[1]


class SubsetBound:
    """An upper bound of a GP's posterior variance from a subset ``Z`` of its training points.

    Conditioning on fewer observations never lowers the variance, so
    ``var(x | y_Z) = k(x, x) - k_Z(x)^T (K_ZZ + noise)^-1 k_Z(x)`` bounds ``var(x | y)``. With
    `p` points it costs `p^2` per row instead of `n^2`, cheap enough for a whole pool; with all
    training points (``n <= p``) it is exact.

    Args:
        kernel: The prior covariance ``kernel(a, b)`` (`m x p`) for rows of ``a`` and ``z``.
        z: `p x d` subset points.
        scale: `p` factors of each column of ``k_Z(x)`` (the task covariance for an ICM).
        k_zz: `p x p` prior covariance of the subset's observations, noise included.
        prior_var: ``k(x, x)``.
    """

    def __init__(self, kernel, z: Tensor, scale: Tensor, k_zz: Tensor, prior_var: float) -> None:
        self.kernel = kernel
        self.z = z
        self.scale = scale
        self.prior_var = float(prior_var)
        with torch.no_grad(), single_threaded():
            self.chol, _ = _cholesky(k_zz)

    def __call__(self, x: Tensor, chunk: int = 8192) -> np.ndarray:
        out = []
        with torch.no_grad(), single_threaded():
            for start in range(0, x.shape[0], chunk):
                kx = self.kernel(self.z, x[start : start + chunk]) * self.scale[:, None]  # `p x m`
                v = torch.linalg.solve_triangular(self.chol, kx, upper=False)
                out.append((self.prior_var - (v * v).sum(0)).clamp_min(1e-12))
        return torch.cat(out).numpy() if out else np.zeros(0)


def gp_subset_bound(gp: GPModel, size: int = 64) -> SubsetBound:
    """:class:`SubsetBound` of ``gp`` from its ``size`` best training points (all if fewer)."""
    n = gp.x.shape[0]
    keep = torch.argsort(-gp.y, stable=True)[:size] if n > size else torch.arange(n)
    kernel = _gp_kernel(gp)
    z = gp.x[keep]
    k_zz = kernel(z, z) + (gp.hp.noise + gp.jitter) * torch.eye(len(keep), dtype=DTYPE)
    return SubsetBound(kernel, z, torch.ones(len(keep), dtype=DTYPE), k_zz, gp.prior_var)


# -- sources -----------------------------------------------------------------------------------


@dataclass
class Source:
    """One source task, ready for models.

    Attributes:
        task: Task name.
        x: `n x d` features.
        y: `n` transformed (per-task standardised) values.
        prior_weight: Trust before the target has data (meta-features).
        genotypes: The `n` genotypes (for candidates in spaces without a pool).
    """

    task: str
    x: Tensor
    y: Tensor
    prior_weight: float
    genotypes: list[Genotype] = field(default_factory=list)


def _thin(values: np.ndarray, cap: int) -> np.ndarray:
    """Indices of at most ``cap`` observations: the best third of the cap and an even spread of
    the rest (deterministic), in their original order."""
    n = len(values)
    if n <= cap:
        return np.arange(n)
    order = np.argsort(-values, kind="stable")
    top = order[: cap // 3]
    rest = order[cap // 3 :]
    spread = rest[np.unique(np.linspace(0, len(rest) - 1, cap - len(top)).round().astype(int))]
    return np.sort(np.concatenate([top, spread]))


def prepare_sources(
    raw: Sequence[Any], features, transform, max_points: int = 300, min_points: int = 3,
) -> list[Source]:
    """Turn ``(task, genotypes, values, weight)`` tuples into :class:`Source` objects.

    Genotypes that do not encode (not in the space) and non-finite values are dropped, repeats of
    a genotype within a source keep their first value, each source keeps at most ``max_points``
    observations (:func:`_thin`) and sources with fewer than ``min_points`` are left out.

    Args:
        raw: The sources, as the warm-start plan passes them.
        features: ``genotypes -> `n x d` array`` (the strategy's features).
        transform: ``values -> transformed values`` (per task).
        max_points: Most observations kept per source.
        min_points: Fewest usable observations of a kept source.
    """
    out: list[Source] = []
    for item in raw:
        task, genotypes, values, weight = item
        values = np.asarray(values, dtype=np.float64)
        if len(genotypes) != len(values):
            raise UserError(f"source {task!r}: {len(genotypes)} genotypes but {len(values)} values")
        keep_g: list[Genotype] = []
        keep_v: list[float] = []
        rows: list[np.ndarray] = []
        seen: set[str] = set()
        candidates = []
        for g, v in zip(genotypes, values):
            if math.isfinite(v) and g.key not in seen:
                seen.add(g.key)
                candidates.append((g, float(v)))
        try:  # all at once; one by one only when some genotype does not encode
            encoded = list(np.asarray(features([g for g, _ in candidates]), dtype=np.float64)) if candidates else []
        except (InvalidGenotype, KeyError, ValueError, IndexError):
            encoded = []
            for g, _ in candidates:
                try:
                    encoded.append(np.asarray(features([g]), dtype=np.float64)[0])
                except (InvalidGenotype, KeyError, ValueError, IndexError):
                    encoded.append(None)
        for (g, v), row in zip(candidates, encoded):
            if row is not None:
                keep_g.append(g)
                keep_v.append(v)
                rows.append(row)
        if len(keep_v) < min_points:
            continue
        v = np.asarray(keep_v)
        idx = _thin(v, max_points)
        y = np.asarray(transform(v[idx]), dtype=np.float64)
        out.append(Source(str(task), torch.as_tensor(np.stack([rows[i] for i in idx]), dtype=DTYPE),
                          torch.as_tensor(y, dtype=DTYPE), float(max(weight, 0.0)), [keep_g[i] for i in idx]))
    return out


# -- acquisition over candidate rows -------------------------------------------------------------


def log_ei_from(mean: Tensor, var: Tensor, best_f: float) -> Tensor:
    """Analytic LogEI (BoTorch's formula and numerics) from marginal means and variances."""
    from botorch.acquisition.analytic import _log_ei_helper

    sigma = var.clamp_min(1e-12).sqrt()
    return _log_ei_helper((mean - best_f) / sigma) + sigma.log()


def top_log_ei_rows(model: Any, cands: Candidates, rows: np.ndarray, best_f: float, k: int = 1,
                    chunk: int = 128, switch_after: int = 512) -> tuple[np.ndarray, Tensor]:
    """The ``k`` candidate rows (of ``rows``) with the largest LogEI under ``model``, exactly.

    ``model`` has ``mean(cands, rows)``, ``variance(cands, rows)`` and ``prior_var``, and may have
    ``variance_bound(cands, rows)``: an upper bound of the variance, cheaper per row, and
    ``prior_bound(cands, rows)``: a looser one that is nearly free (else ``prior_var``). LogEI grows
    with the mean and with the standard deviation, so ``LogEI(mean, bound)`` bounds each row's
    value. Rows are visited by decreasing bound, exact values computed a chunk at a time (chunks
    double), until the next row's bound is below the ``k``-th best exact value. The first bound
    is the prior variance (free; rows by decreasing mean); when ``switch_after`` rows did not
    settle it, the remaining rows are re-ordered by the model's ``variance_bound``. Ties go to
    the lower position in ``rows``.

    Returns:
        ``(positions, values)``: positions into ``rows`` (best first) and their LogEI.
    """
    m = len(rows)
    k = min(k, m)
    if k == 0:
        return np.zeros(0, dtype=np.int64), torch.zeros(0, dtype=DTYPE)
    mean = torch.as_tensor(model.mean(cands, rows), dtype=DTYPE)
    if hasattr(model, "prior_bound"):
        var0 = torch.as_tensor(model.prior_bound(cands, rows), dtype=DTYPE)
    else:
        var0 = torch.full_like(mean, max(model.prior_var, 1e-12))
    bound_all = log_ei_from(mean, var0, best_f)
    order = torch.argsort(-bound_all, stable=True)
    bound = bound_all[order]
    seen_pos, values = [], []
    pos = 0
    size = chunk
    tightened = not hasattr(model, "variance_bound")
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


# -- RGPE -------------------------------------------------------------------------------------------


def wrong_pairs(preds: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``wrong[m, j, k] = (pred_m[j] < pred_m[k]) xor (y[j] < y[k])`` (`M x n x n`): the
    ordered pairs each model ranks differently from the observations (Feurer et al.'s loss)."""
    below_y = y[:, None] < y[None, :]
    return (preds[:, :, None] < preds[:, None, :]) != below_y[None]


def leave_pair_out_wrong(gp: GPModel) -> np.ndarray:
    """The target model's mis-ranked ordered pairs (`n x n`), each pair predicted by the GP
    conditioned on all *other* observations (leave-pair-out, closed form from ``K^-1``).

    Leave-one-out predictions rank a weakly informed model's own points backwards (for a model
    close to a constant mean, ``pred_i = (sum y - y_i) / (n - 1)`` exactly reverses them), which
    makes the target model lose every ranking to any source while it has few points. With both
    points of a pair left out, an uninformed model ties (chance level) instead.
    """
    with torch.no_grad(), single_threaded():
        a = torch.cholesky_inverse(gp.chol).numpy()
    alpha = gp.alpha.numpy()
    y = gp.y.numpy()
    d = np.diag(a)
    det = d[:, None] * d[None, :] - a * a
    with np.errstate(divide="ignore", invalid="ignore"):
        mu_j = y[:, None] - (d[None, :] * alpha[:, None] - a * alpha[None, :]) / det  # pair (j, k): point j
        mu_k = y[None, :] - (d[:, None] * alpha[None, :] - a * alpha[:, None]) / det  # pair (j, k): point k
    wrong = (mu_j < mu_k) != (y[:, None] < y[None, :])
    np.fill_diagonal(wrong, False)
    return wrong


def ranking_losses(wrong: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mis-ranked pairs of each model on each bootstrap sample (`S x M`).

    Args:
        wrong: `M x n x n` mis-ranked ordered pairs of each model (:func:`wrong_pairs`).
        counts: `S x n` multiplicity of each observation in each bootstrap sample.
    """
    return np.einsum("sj,mjk,sk->sm", counts, wrong.astype(np.float64), counts, optimize=True)


def rgpe_weights(wrong: np.ndarray, y: np.ndarray, rng: np.random.Generator, n_bootstrap: int = 256,
                 dilution: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """RGPE weights of ``M - 1`` sources and the target (the last of ``wrong``, `M x n x n`:
    each model's mis-ranked ordered pairs of the target's observations, :func:`wrong_pairs`;
    the target model's from held-out predictions, :func:`leave_pair_out_wrong`).

    The weight of a model is the fraction of bootstrap samples on which its ranking loss is the
    smallest (ties share); samples on which every model has the same loss (with few observations,
    e.g. all draws of one point) say nothing and are left out. A source gets weight 0 when it
    ranks the target worse than the target's own model (its median loss above the target's
    ``dilution`` percentile: Feurer et al.'s weight-dilution prevention, with 95) or clearly no better than
    chance (at least half of the pairs mis-ranked on 90% of the samples: a source that ranks the
    target backwards is caught from the first two observations, while the target's leave-one-out
    model is still meaningless). The rest are renormalised.

    Returns:
        ``(weights, median fraction of mis-ranked pairs)``, `M` each.
    """
    n = len(y)
    idx = rng.integers(0, n, size=(n_bootstrap, n))
    counts = np.zeros((n_bootstrap, n))
    np.add.at(counts, (np.arange(n_bootstrap)[:, None], idx), 1.0)
    m = len(wrong)
    losses = ranking_losses(wrong, counts)
    pairs = np.einsum("sj,jk,sk->s", counts, (y[:, None] != y[None, :]).astype(np.float64), counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        fractions = np.where(pairs[:, None] > 0, losses / pairs[:, None], np.nan)
    median_fraction = np.nanmedian(fractions, axis=0) if np.isfinite(fractions).any() else np.full(m, 0.5)
    best = losses.min(1, keepdims=True)
    informative = losses.max(1) > best[:, 0]
    winners = (losses == best).astype(np.float64)[informative]
    if not len(winners):
        winners = np.ones((1, m))
    weights = (winners / winners.sum(1, keepdims=True)).mean(0)
    target_cut = np.percentile(losses[:, -1], dilution)
    with np.errstate(invalid="ignore"):
        backwards = np.nanpercentile(fractions[:, :-1], 10, axis=0) >= 0.5 if np.isfinite(fractions).any() \
            else np.zeros(m - 1, dtype=bool)
    drop = (np.median(losses[:, :-1], axis=0) > target_cut) | backwards
    weights[:-1][drop] = 0.0
    total = weights.sum()
    weights = weights / total if total > 0 else np.eye(len(weights))[-1]
    return weights, median_fraction


def prior_weights(sources: Sequence[Source]) -> np.ndarray:
    """The sources' prior (meta-feature) weights, normalised (equal when all are 0)."""
    w = np.array([max(s.prior_weight, 0.0) for s in sources], dtype=np.float64)
    return w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / max(len(w), 1))


class RGPE:
    """Ranking-weighted GP ensemble over cached source GPs and a target GP.

    Args:
        sources: The sources (their GPs are fitted here, once).
        layout: Kernel layout of every GP.
        settings: Hyperparameter fit settings of every GP.
        n_bootstrap: Bootstrap samples of the ranking loss.
        dilution: Percentile of the target model's bootstrap losses above which a source's median
            loss drops it: 50 (default) drops every source that ranks the target worse than the
            target's own model; Feurer et al. use 95 (only clearly worse ones). With 7 sources and
            few target points, a lenient cut lets sources that rank no better than chance share
            most of the weight (one of them is luckiest on most bootstrap samples); measured on
            cora (leave-one-out sources, 6 seeds): 42 evaluations to the top 1% with 95, 35 with 50.
        variance: ``"linear"``: the paper's ``sum w^2 s^2`` (the ensemble as a weighted sum of
            independent GPs); ``"mixture"``: the weights as the probabilities that each model is
            the right one, ``sum w (s^2 + mu^2) - mean^2``, which adds the models' disagreement to
            the uncertainty (more exploration where the sources and the target disagree). On
            NAS-Bench-Graph (6 seeds, leave-one-out sources) ``linear`` needed fewer evaluations to
            the top 1%: photo 17.5 vs 28.5, cs 8.5 vs 15.5 (median).
        pseudo_count: With ``c`` set, the sources' weights together are at most ``c / (c + n)``
            after ``n`` target observations (the rest goes to the target model): the target's own
            model is worth ``n`` observations against the sources' ``c``. Ranking weights alone
            can keep trusting sources long after the target has enough data of its own, because
            the target model is judged at points the sources chose, which cluster where the
            sources agree. None (default): the ranking weights alone. Measured with leave-one-out
            target losses (6 seeds, evaluations to the top 1%, c = 10 vs None): cora 41 vs 60.5,
            citeseer 6 vs 10.5, but cs 17 vs 8.5 and photo 23 vs 17.5.
    """

    name = "rgpe"

    def __init__(self, sources: Sequence[Source], layout: KernelLayout, settings: FitSettings,
                 n_bootstrap: int = 256, dilution: float = 50.0, variance: str = "linear",
                 pseudo_count: float | None = None) -> None:
        if variance not in ("mixture", "linear"):
            raise ValueError(f"RGPE variance must be 'mixture' or 'linear', got {variance!r}")
        self.variance_kind = variance
        self.pseudo_count = pseudo_count
        self.sources = list(sources)
        self.layout = layout
        self.settings = settings
        self.n_bootstrap = int(n_bootstrap)
        self.dilution = float(dilution)
        self.source_gps = [GPModel.fit(s.x, s.y, layout, settings) for s in self.sources]
        #: Source GP fits so far (one per source, ever).
        self.source_fits = len(self.source_gps)
        self.target: GPModel | None = None
        self.weights = np.append(prior_weights(self.sources), 0.0)
        self.losses = np.full(len(self.sources) + 1, np.nan)
        self.ranked = False
        self.version = next(_VERSIONS)
        self._key: tuple | None = None

    # -- fitting ----------------------------------------------------------------------------------
    def update(self, x0: Tensor, y0: Tensor, rng: np.random.Generator) -> None:
        """Fit the target GP and the weights on the target's observations (no-op if unchanged).

        With fewer than 2 observations there is nothing to rank: the sources keep their prior
        weights and the target model none.
        """
        key = _data_key(x0, y0)
        if key == self._key:
            return
        self._key = key
        n0 = x0.shape[0]
        self.target = GPModel.fit(x0, y0, self.layout, self.settings) if n0 else None
        self.version = next(_VERSIONS)
        self.ranked = n0 >= 2
        if not self.ranked:
            self.weights = np.append(prior_weights(self.sources), 0.0)
            self.losses = np.full(len(self.sources) + 1, np.nan)
            return
        preds = np.stack([gp.predict_mean(x0).numpy() for gp in self.source_gps]) if self.source_gps else np.zeros((0, n0))
        wrong = np.concatenate([wrong_pairs(preds, y0.numpy()), leave_pair_out_wrong(self.target)[None]])
        self.weights, self.losses = rgpe_weights(wrong, y0.numpy(), rng, self.n_bootstrap, self.dilution)
        if self.pseudo_count is not None:  # the sources together at most c / (c + n0)
            cap = self.pseudo_count / (self.pseudo_count + n0)
            total = float(self.weights[:-1].sum())
            if total > cap:
                self.weights[:-1] *= cap / total
                self.weights[-1] = 1.0 - cap

    def fantasize(self, x: Tensor) -> RGPE:
        """A copy whose target GP also holds ``x`` at its own posterior mean (same weights and
        hyperparameters): kriging believer for batches and pending points."""
        if self.target is None or x.shape[0] == 0:
            return self
        other = RGPE.__new__(RGPE)
        other.__dict__.update(self.__dict__)
        mean = self.target.predict_mean(x)
        other.target = GPModel(torch.cat([self.target.x, x]), torch.cat([self.target.y, mean]), self.layout,
                               self.target.hp)
        other.version = next(_VERSIONS)
        other._key = None
        return other

    # -- predictions --------------------------------------------------------------------------------
    def _models(self) -> list[tuple[int, GPModel, float]]:
        gps = self.source_gps + ([self.target] if self.target is not None else [])
        return [(i, gp, float(w)) for i, (gp, w) in enumerate(zip(gps, self.weights)) if w > 0]

    def _power(self) -> int:
        return 2 if self.variance_kind == "linear" else 1

    @property
    def prior_var(self) -> float:
        """Largest possible variance of the ensemble's models (their spread not included)."""
        return float(sum(w ** self._power() * gp.prior_var for _, gp, w in self._models()))

    def _spread(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """``sum w mu^2 - (sum w mu)^2``: the models' disagreement (0 for ``linear``)."""
        if self.variance_kind == "linear":
            return np.zeros(len(rows))
        first, second = np.zeros(len(rows)), np.zeros(len(rows))
        for i, gp, w in self._models():
            mu = self._mean_all(cands, i, gp)[rows]
            first += w * mu
            second += w * mu * mu
        return np.clip(second - first * first, 0.0, None)

    def prior_bound(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """A nearly free upper bound of :meth:`variance`: prior variances plus the spread."""
        return self.prior_var + self._spread(cands, rows)

    def _mean_all(self, cands: Candidates, i: int, gp: GPModel) -> np.ndarray:
        if i < len(self.source_gps):
            key = ("rgpe-mean", i)
            if key not in cands.cache:
                cands.cache[key] = gp_pool_mean(gp, cands)
            return cands.cache[key]
        key = ("rgpe-target", self.version)
        if cands.cache.get("rgpe-target-key") != key:
            cands.cache["rgpe-target-key"] = key
            cands.cache["rgpe-target"] = gp_pool_mean(gp, cands)
        return cands.cache["rgpe-target"]

    def mean(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """Ensemble mean at candidate ``rows``."""
        out = np.zeros(len(rows))
        for i, gp, w in self._models():
            out += w * self._mean_all(cands, i, gp)[rows]
        return out

    def _source_var_cache(self, cands: Candidates, i: int) -> np.ndarray:
        return cands.cache.setdefault(("rgpe-var", i), np.full(len(cands), np.nan))

    def variance(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """Ensemble variance at candidate ``rows`` (sources' variances cached per row)."""
        out = self._spread(cands, rows)
        p = self._power()
        for i, gp, w in self._models():
            if i < len(self.source_gps):
                cache = self._source_var_cache(cands, i)
                missing = rows[np.isnan(cache[rows])]
                if len(missing):
                    cache[missing] = gp_variance(gp, cands.x[torch.as_tensor(missing)]).numpy()
                out += w**p * cache[rows]
            else:
                out += w**p * gp_variance(gp, cands.x[torch.as_tensor(rows)]).numpy()
        return out

    def variance_bound(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """Upper bound of :meth:`variance`: the sources' cached variances where known, else their
        prior variances; the target GP's variance given its best 64 points."""
        out = self._spread(cands, rows)
        for i, gp, w in self._models():
            if i < len(self.source_gps):
                cache = self._source_var_cache(cands, i)[rows]
                part = np.where(np.isnan(cache), gp.prior_var, cache)
            else:
                part = gp_subset_bound(gp)(cands.x[torch.as_tensor(rows)])
            out += w ** self._power() * part
        return out

    def source_weights(self) -> dict[str, float]:
        """``task -> weight`` of every source in the ensemble (the target has the rest)."""
        return {s.task: float(w) for s, w in zip(self.sources, self.weights)}

    @property
    def target_weight(self) -> float:
        """The target model's weight."""
        return float(self.weights[-1]) if self.target is not None and len(self.weights) > len(self.sources) else 0.0

    @property
    def has_target(self) -> bool:
        """True once the weights come from ranking the target's observations."""
        return self.ranked


# -- the multi-task GP -------------------------------------------------------------------------------


@dataclass
class SourceFit:
    """What the once-per-source-set ICM fit found (natural scale).

    Attributes:
        lengthscales: `G` data-kernel lengthscales.
        outputscales: `B` data-kernel block weights (sum 1).
        task_factor: `K x K` lower-triangular ``L`` with ``B_sources = L L^T``.
        noise: `K` noise variances.
        means: `K` constant means.
        iterations: L-BFGS-B iterations of the fit.
    """

    lengthscales: np.ndarray
    outputscales: np.ndarray
    task_factor: np.ndarray
    noise: np.ndarray
    means: np.ndarray
    iterations: int = 0


@dataclass
class TargetFit:
    """The per-ask part of the ICM: the target's row of ``B`` (whitened), noise and mean."""

    u: np.ndarray
    v: float
    noise: float
    mean: float
    iterations: int = 0

    def b_row(self, factor: np.ndarray) -> np.ndarray:
        """``B[0, 1:]`` given the sources' Cholesky factor."""
        return factor @ self.u

    @property
    def b00(self) -> float:
        """``B[0, 0]``."""
        return float(self.u @ self.u + self.v * self.v)


def _distances(x: Tensor, layout: KernelLayout) -> Tensor:
    """`G x n x n` squared distances per lengthscale group."""
    return torch.stack([_sqdist(x[:, list(cols)], x[:, list(cols)]) for cols in layout.groups])


def _data_kernel_from_distances(dist: Tensor, layout: KernelLayout, log_ls: Tensor, logits: Tensor) -> Tensor:
    scaled = dist * torch.exp(-2.0 * log_ls)[:, None, None]
    block = torch.as_tensor(layout.block_of)
    per_block = torch.zeros((layout.n_blocks,) + tuple(dist.shape[1:]), dtype=DTYPE).index_add(0, block, scaled)
    weights = torch.softmax(logits, 0)
    return (weights[:, None, None] * torch.exp(-0.5 * per_block)).sum(0)


def _tril_from(diag_log: Tensor, off: Tensor, k: int) -> Tensor:
    rows, cols = torch.tril_indices(k, k, offset=-1)
    factor = torch.diag(torch.exp(diag_log))
    if off.numel():
        factor = factor.index_put((rows, cols), off)
    return factor


def _minimize(fun, x0: np.ndarray, bounds: list[tuple[float, float]], maxiter: int) -> Any:
    """L-BFGS-B on a torch objective (value and autograd gradient), deterministic."""

    def wrapped(theta: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.tensor(theta, dtype=DTYPE, requires_grad=True)
        try:
            value = fun(t)
            (grad,) = torch.autograd.grad(value, t)
        except (torch.linalg.LinAlgError, RuntimeError):
            return 1e10, np.zeros_like(theta)
        if not torch.isfinite(value) or not torch.isfinite(grad).all():
            return 1e10, np.zeros_like(theta)
        return float(value.detach()), grad.numpy().astype(np.float64)

    with single_threaded():
        return minimize(wrapped, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": maxiter})


def _minimize_np(fun, x0: np.ndarray, bounds: list[tuple[float, float]], maxiter: int) -> Any:
    """L-BFGS-B on ``fun(theta) -> (value, gradient)``, single-threaded, deterministic."""
    with single_threaded():
        return minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": maxiter})


class SourceObjective:
    """Negative log posterior of the sources' ICM hyperparameters, with an analytic gradient.

    ``K = B[t_i, t_j] k(x_i, x_j) + noise[t_i] delta_ij`` with ``k = sum_b s_b E_b`` (``s`` a
    softmax of block logits), ``B = L L^T`` (``L`` lower triangular, log diagonal) and a constant
    mean per task. Parameters: log lengthscales `G`, block logits `B`, log diagonal of ``L``
    `K`, its strict lower triangle `K(K-1)/2`, log noises `K`, means `K`. The gradient is
    ``1/2 sum(W * dK/dtheta)`` with ``W = K^-1 - alpha alpha^T`` (one Cholesky and one inverse
    per call; autograd through the Cholesky was measured 4 times slower).
    """

    def __init__(self, x: Tensor, y: Tensor, tasks: Tensor, k: int, layout: KernelLayout, settings: FitSettings) -> None:
        self.y = y
        self.tasks = tasks
        self.k = k
        self.layout = layout
        self.settings = settings
        self.n = x.shape[0]
        self.dist = _distances(x, layout)
        self.block = torch.as_tensor(layout.block_of)
        self.onehot = torch.nn.functional.one_hot(tasks, k).to(DTYPE)  # `n x K`
        self.prior_ls = torch.log(torch.as_tensor(layout.prior_lengthscale, dtype=DTYPE))
        self.rows, self.cols = torch.tril_indices(k, k, offset=-1)
        g, b = layout.n_groups, layout.n_blocks
        self.sizes = (g, b, k, k * (k - 1) // 2, k, k)
        self.evaluations = 0

    def split(self, theta: Tensor) -> list[Tensor]:
        out, i = [], 0
        for size in self.sizes:
            out.append(theta[i : i + size])
            i += size
        return out

    def start(self) -> np.ndarray:
        """Fixed initial values: prior lengthscales, equal blocks, ``B = 0.5 I + 0.4``."""
        k = self.k
        l0 = np.linalg.cholesky(0.5 * np.eye(k) + 0.4 * np.ones((k, k)))
        rows, cols = np.tril_indices(k, -1)
        return np.concatenate([
            np.log(self.layout.prior_lengthscale), np.zeros(self.layout.n_blocks), np.log(np.diag(l0)), l0[rows, cols],
            np.full(k, math.log(self.settings.noise_prior)), np.zeros(k),
        ])

    def bounds(self) -> list[tuple[float, float]]:
        g, b, k, n_off, _, _ = self.sizes
        return ([(math.log(1e-2), math.log(1e3))] * g + [(-5.0, 5.0)] * b + [(math.log(1e-3), math.log(10.0))] * k
                + [(-5.0, 5.0)] * n_off + [(math.log(MIN_NOISE), math.log(MAX_NOISE))] * k + [(-3.0, 3.0)] * k)

    def _prior(self, log_ls: Tensor, logits: Tensor, diag_log: Tensor, off: Tensor, log_noise: Tensor,
               means: Tensor) -> Tensor:
        s = self.settings
        prior = 0.5 * (((log_ls - self.prior_ls) / s.lengthscale_sd) ** 2).sum() + 0.5 * (logits**2).sum()
        prior = prior + 0.5 * ((diag_log - math.log(0.6)) ** 2).sum() + 0.5 * (off**2).sum()
        prior = prior + 0.5 * (((log_noise - math.log(s.noise_prior)) / s.noise_sd) ** 2).sum()
        return prior + 0.5 * (means**2).sum()

    def value(self, theta: Tensor) -> Tensor:
        """The objective in plain torch (differentiable; for checking the analytic gradient)."""
        log_ls, logits, diag_log, off, log_noise, means = self.split(theta)
        factor = _tril_from(diag_log, off, self.k)
        bx = (factor @ factor.T)[self.tasks][:, self.tasks]
        kmat = bx * _data_kernel_from_distances(self.dist, self.layout, log_ls, logits)
        kmat = kmat + torch.diag(torch.exp(log_noise)[self.tasks])
        chol = torch.linalg.cholesky(kmat)
        r = (self.y - means[self.tasks])[:, None]
        alpha = torch.cholesky_solve(r, chol)
        nll = 0.5 * (r * alpha).sum() + torch.log(torch.diagonal(chol)).sum() + 0.5 * self.n * math.log(2 * math.pi)
        return nll + self._prior(log_ls, logits, diag_log, off, log_noise, means)

    def __call__(self, theta_np: np.ndarray) -> tuple[float, np.ndarray]:
        self.evaluations += 1
        theta = torch.as_tensor(theta_np, dtype=DTYPE)
        log_ls, logits, diag_log, off, log_noise, means = self.split(theta)
        scaled = self.dist * torch.exp(-2.0 * log_ls)[:, None, None]
        per_block = torch.zeros((self.layout.n_blocks, self.n, self.n), dtype=DTYPE).index_add_(0, self.block, scaled)
        e_b = torch.exp(-0.5 * per_block)  # `B x n x n`
        s_b = torch.softmax(logits, 0)
        e = (s_b[:, None, None] * e_b).sum(0)
        factor = _tril_from(diag_log, off, self.k)
        bx = (factor @ factor.T)[self.tasks][:, self.tasks]
        noise = torch.exp(log_noise)
        kmat = bx * e
        kmat.diagonal().add_(noise[self.tasks])
        chol, info = torch.linalg.cholesky_ex(kmat)
        if int(info) != 0:
            return 1e10, np.zeros_like(theta_np)
        r = self.y - means[self.tasks]
        alpha = torch.cholesky_solve(r[:, None], chol)[:, 0]
        nll = 0.5 * float(r @ alpha) + float(torch.log(torch.diagonal(chol)).sum()) + 0.5 * self.n * math.log(2 * math.pi)
        gk = 0.5 * (torch.cholesky_inverse(chol) - torch.outer(alpha, alpha))  # d nll / d K
        h = gk * bx
        grad = []
        # lengthscales: dK/dlog l_g = B o s_b E_b o D_g / l_g^2
        hb = h[None] * e_b * s_b[:, None, None]  # `B x n x n`
        grad.append((hb[self.block] * scaled).sum((1, 2)))
        gs = (h[None] * e_b).sum((1, 2))
        grad.append(s_b * (gs - (s_b * gs).sum()))
        q = self.onehot.T @ (gk * e) @ self.onehot  # d nll / d B (`K x K`, symmetric)
        gl = 2.0 * q @ factor
        grad.append(torch.diagonal(gl) * torch.diagonal(factor))
        grad.append(gl[self.rows, self.cols])
        grad.append(noise * (torch.diagonal(gk) @ self.onehot))
        grad.append(-(alpha @ self.onehot))
        t = torch.tensor(theta_np, dtype=DTYPE, requires_grad=True)
        prior = self._prior(*self.split(t))
        (gprior,) = torch.autograd.grad(prior, t)
        return nll + float(prior.detach()), (torch.cat(grad) + gprior).numpy()

    def result(self, theta_np: np.ndarray, iterations: int) -> SourceFit:
        log_ls, logits, diag_log, off, log_noise, means = self.split(torch.as_tensor(theta_np, dtype=DTYPE))
        return SourceFit(
            lengthscales=torch.exp(log_ls).numpy(), outputscales=torch.softmax(logits, 0).numpy(),
            task_factor=_tril_from(diag_log, off, self.k).numpy(), noise=torch.exp(log_noise).numpy(),
            means=means.numpy(), iterations=iterations,
        )


class FastMultiTaskGP:
    """An ICM multi-task GP (BoTorch ``MultiTaskGP``'s kernel) with a fast two-stage fit.

    Task 0 is the target, tasks ``1..K`` the sources, in order.

    Args:
        sources: The sources.
        layout: Data-kernel layout.
        settings: Priors (lengthscale, noise) and iteration cap of the fits.
        fit_points: Most source observations the once-per-source-set fit uses (thinned evenly
            per source); the posterior conditions on all of them.
        target_fit_points: Most target observations the per-ask fit uses.
        target_fit_sources: Most source observations the per-ask likelihood conditions on.
        max_points: Most source observations conditioned on (thinned per source).
    """

    name = "mtgp"

    def __init__(self, sources: Sequence[Source], layout: KernelLayout, settings: FitSettings,
                 fit_points: int = 200, target_fit_points: int = 150, max_points: int = 1200,
                 target_fit_sources: int = 600) -> None:
        if not sources:
            raise ValueError("a multi-task GP needs at least one source")
        self.sources = list(sources)
        self.layout = layout
        self.settings = settings
        self.fit_points = int(fit_points)
        self.target_fit_points = int(target_fit_points)
        self.target_fit_sources = int(target_fit_sources)
        k = len(self.sources)
        per = max(3, max_points // k)
        keep = [_thin(s.y.numpy(), per) for s in self.sources]
        self.xs = torch.cat([s.x[torch.as_tensor(i)] for s, i in zip(self.sources, keep)])
        self.ys = torch.cat([s.y[torch.as_tensor(i)] for s, i in zip(self.sources, keep)])
        self.ts = torch.cat([torch.full((len(i),), t, dtype=torch.long) for t, i in enumerate(keep)])
        self.source_fit = self._fit_sources()
        #: Fits of the source part so far (one, ever).
        self.source_fits = 1
        self.kernel = DataKernel(layout, self.source_fit.lengthscales, self.source_fit.outputscales)
        self.factor = self.source_fit.task_factor
        with torch.no_grad(), single_threaded():
            bss = torch.as_tensor(self.factor @ self.factor.T, dtype=DTYPE)
            kss = bss[self.ts][:, self.ts] * self.kernel(self.xs, self.xs)
            kss.diagonal().add_(torch.as_tensor(self.source_fit.noise, dtype=DTYPE)[self.ts])
            self.l_ss, _ = _cholesky(kss)
            resid = self.ys - torch.as_tensor(self.source_fit.means, dtype=DTYPE)[self.ts]
            self.z_s = torch.linalg.solve_triangular(self.l_ss, resid[:, None], upper=False)[:, 0]
        self.fit: TargetFit | None = None
        self.fitted = False
        self._key: tuple | None = None
        self.update(torch.zeros((0, self.xs.shape[1]), dtype=DTYPE), torch.zeros(0, dtype=DTYPE))

    # -- stage 1: the sources, once ------------------------------------------------------------------
    def _fit_points(self, total: int | None = None) -> Tensor:
        """Rows of a thinned source subset of about ``total`` points (default ``fit_points``),
        evenly spaced within each source."""
        k = len(self.sources)
        per = max(3, (total or self.fit_points) // k)
        idx = []
        for t in range(k):
            rows = torch.nonzero(self.ts == t)[:, 0].numpy()
            idx.append(rows[np.unique(np.linspace(0, len(rows) - 1, min(per, len(rows))).round().astype(int))])
        return torch.as_tensor(np.concatenate(idx))

    def _fit_sources(self) -> SourceFit:
        k = len(self.sources)
        sel = self._fit_points()
        obj = SourceObjective(self.xs[sel], self.ys[sel], self.ts[sel], k, self.layout, self.settings)
        res = _minimize_np(obj, obj.start(), obj.bounds(), max(self.settings.maxiter, 60))
        return obj.result(res.x, int(res.nit))

    # -- stage 2: the target's row of B, each ask ----------------------------------------------------
    def _fit_target(self, x0: Tensor, y0: Tensor) -> TargetFit:
        k = len(self.sources)
        s = self.settings
        if x0.shape[0] > self.target_fit_points:
            keep = torch.as_tensor(np.unique(np.linspace(0, x0.shape[0] - 1, self.target_fit_points).round().astype(int)))
            x0, y0 = x0[keep], y0[keep]
        n0 = x0.shape[0]
        sel = self._fit_points(self.target_fit_sources)  # the sources in the likelihood p(y0 | y_s)
        xf, tf = self.xs[sel], self.ts[sel]
        with torch.no_grad(), single_threaded():
            bss = torch.as_tensor(self.factor @ self.factor.T, dtype=DTYPE)
            kff = bss[tf][:, tf] * self.kernel(xf, xf)
            kff.diagonal().add_(torch.as_tensor(self.source_fit.noise, dtype=DTYPE)[tf])
            lf, _ = _cholesky(kff)
            rf = self.ys[sel] - torch.as_tensor(self.source_fit.means, dtype=DTYPE)[tf]
            zf = torch.linalg.solve_triangular(lf, rf[:, None], upper=False)[:, 0]
            a = self.kernel(x0, xf)  # `n0 x nf`
            masked = torch.stack([a.T * (tf == t).to(DTYPE)[:, None] for t in range(k)], 1)  # `nf x K x n0`
            w = torch.linalg.solve_triangular(lf, masked.reshape(len(sel), k * n0), upper=False).reshape(len(sel), k, n0)
            p = torch.einsum("ftn,f->tn", w, zf)  # `K x n0`
            gram = torch.einsum("fsn,ftm->stnm", w, w)  # `K x K x n0 x n0`
            k00 = self.kernel(x0, x0)
        factor = torch.as_tensor(self.factor, dtype=DTYPE)
        eye = torch.eye(n0, dtype=DTYPE)

        def objective(theta: Tensor) -> Tensor:
            u, log_v, log_noise, mean = theta[:k], theta[k], theta[k + 1], theta[k + 2]
            b = factor @ u
            b00 = u @ u + torch.exp(2.0 * log_v)
            m = mean + b @ p
            cov = b00 * k00 + torch.exp(log_noise) * eye - torch.einsum("s,t,stnm->nm", b, b, gram)
            chol = torch.linalg.cholesky(cov)
            r = (y0 - m)[:, None]
            alpha = torch.cholesky_solve(r, chol)
            nll = 0.5 * (r * alpha).sum() + torch.log(torch.diagonal(chol)).sum()
            prior = 0.5 * ((u / U_PRIOR_SD) ** 2).sum() + 0.5 * ((log_v - math.log(0.7)) / 0.5) ** 2
            prior = prior + 0.5 * ((log_noise - math.log(s.noise_prior)) / s.noise_sd) ** 2 + 0.5 * mean**2
            return nll + prior

        x_init = np.concatenate([np.zeros(k), [math.log(0.7), math.log(s.noise_prior), 0.0]])
        bounds = [(-5.0, 5.0)] * k + [(math.log(MIN_OWN_SD), math.log(5.0)), (math.log(MIN_NOISE), math.log(MAX_NOISE)),
                                      (-3.0, 3.0)]
        res = _minimize(objective, x_init, bounds, s.maxiter)
        th = res.x
        return TargetFit(u=th[:k].copy(), v=float(math.exp(th[k])), noise=float(math.exp(th[k + 1])),
                         mean=float(th[k + 2]), iterations=int(res.nit))

    def update(self, x0: Tensor, y0: Tensor, rng: np.random.Generator | None = None) -> None:
        """Fit the target's part (if its data changed) and condition on everything.

        With fewer than 2 target observations nothing is fitted: the target is taken to be the
        sources' mixture by prior weight ``w`` (``B[0, 1:] = B_sources w``, a little extra
        variance of its own), so the posterior mean is the sources' weighted prediction.
        """
        key = _data_key(x0, y0)
        if key == self._key:
            return
        self._key = key
        if x0.shape[0] < 2:
            w = prior_weights(self.sources)
            self.fit = TargetFit(u=self.factor.T @ w, v=0.3, noise=self.settings.noise_prior, mean=0.0)
            self.fitted = False
        else:
            self.fit = self._fit_target(x0, y0)
            self.fitted = True
        self._condition(x0, y0)

    def _condition(self, x0: Tensor, y0: Tensor) -> None:
        """Exact posterior on all source points and ``(x0, y0)`` with the current parameters."""
        fit = self.fit
        assert fit is not None
        with torch.no_grad(), single_threaded():
            self.b = torch.as_tensor(fit.b_row(self.factor), dtype=DTYPE)
            self.b00 = fit.b00
            a = self.kernel(x0, self.xs)  # `n0 x ns`
            self.w = torch.linalg.solve_triangular(self.l_ss, (a * self.b[self.ts][None, :]).T, upper=False)  # `ns x n0`
            s = self.b00 * self.kernel(x0, x0) - self.w.T @ self.w
            s.diagonal().add_(fit.noise)
            self.l_s, _ = _cholesky(s)
            z0 = torch.linalg.solve_triangular(self.l_s, (y0 - fit.mean - self.w.T @ self.z_s)[:, None], upper=False)[:, 0]
            alpha0 = torch.linalg.solve_triangular(self.l_s.T, z0[:, None], upper=True)[:, 0]
            alpha_s = torch.linalg.solve_triangular(self.l_ss.T, (self.z_s - self.w @ alpha0)[:, None], upper=True)[:, 0]
            self.train_x = torch.cat([self.xs, x0])
            self.coef = torch.cat([alpha_s * self.b[self.ts], self.b00 * alpha0])
        self.x0, self.y0 = x0, y0
        self.version = next(_VERSIONS)

    def fantasize(self, x: Tensor) -> FastMultiTaskGP:
        """A copy that also holds ``x`` as target points at the posterior mean (same parameters)."""
        if not self.fitted or x.shape[0] == 0:
            return self
        other = FastMultiTaskGP.__new__(FastMultiTaskGP)
        other.__dict__.update(self.__dict__)
        mean = torch.as_tensor(self.mean_x(x), dtype=DTYPE)
        other._condition(torch.cat([self.x0, x]), torch.cat([self.y0, mean]))
        other._key = None
        return other

    # -- predictions ---------------------------------------------------------------------------------
    @property
    def has_target(self) -> bool:
        """True once the target's part is fitted to its observations."""
        return self.fitted

    @property
    def prior_var(self) -> float:
        """Largest possible posterior variance of the target task."""
        return float(self.b00) * self.kernel.prior_var

    def mean_x(self, x: Tensor) -> np.ndarray:
        """Posterior mean of the target task at rows ``x`` (dense)."""
        with torch.no_grad(), single_threaded():
            return (self.fit.mean + self.kernel(x, self.train_x) @ self.coef).numpy()

    def mean(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """Posterior mean of the target task at candidate ``rows``."""
        key = ("mtgp-mean", self.version)
        if cands.cache.get("mtgp-key") != key:
            cands.cache["mtgp-key"] = key
            cands.cache["mtgp-mean"] = self.fit.mean + cands.kernel_sums(self.kernel, self.train_x, self.coef)
        return cands.cache["mtgp-mean"][rows]

    def variance_x(self, x: Tensor) -> np.ndarray:
        """Posterior variance of the target task at rows ``x``."""
        with torch.no_grad(), single_threaded():
            ks = self.kernel(self.xs, x) * self.b[self.ts][:, None]  # `ns x m`
            k0 = self.b00 * self.kernel(self.x0, x)  # `n0 x m`
            vs = torch.linalg.solve_triangular(self.l_ss, ks, upper=False)
            v0 = torch.linalg.solve_triangular(self.l_s, k0 - self.w.T @ vs, upper=False)
            var = self.b00 * self.kernel.prior_var - (vs * vs).sum(0) - (v0 * v0).sum(0)
            return var.clamp_min(1e-12).numpy()

    def variance(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """Posterior variance of the target task at candidate ``rows`` (exact)."""
        return self.variance_x(cands.x[torch.as_tensor(rows)])

    def variance_bound(self, cands: Candidates, rows: np.ndarray, size: int = 64) -> np.ndarray:
        """Upper bound of :meth:`variance` (:class:`SubsetBound`): the variance given the target's
        and the sources' observations with the largest expected contribution to the target
        (``y`` times the task covariance with it), ``size`` in all."""
        with torch.no_grad():
            bss = torch.as_tensor(self.factor @ self.factor.T, dtype=DTYPE)
            score = torch.cat([self.y0, self.ys * self.b[self.ts] / bss.diagonal()[self.ts].sqrt()])
            x_all = torch.cat([self.x0, self.xs])
            scale_all = torch.cat([torch.full((self.x0.shape[0],), self.b00, dtype=DTYPE), self.b[self.ts]])
            keep = torch.argsort(-score, stable=True)[:size]
            n0 = self.x0.shape[0]
            tasks = torch.cat([torch.zeros(n0, dtype=torch.long), self.ts + 1])[keep]
            bfull = torch.as_tensor(self.task_covariance(), dtype=DTYPE)
            noise = torch.cat([torch.full((n0,), self.fit.noise, dtype=DTYPE),
                               torch.as_tensor(self.source_fit.noise, dtype=DTYPE)[self.ts]])[keep]
            z = x_all[keep]
            k_zz = bfull[tasks][:, tasks] * self.kernel(z, z) + torch.diag(noise)
        bound = SubsetBound(self.kernel, z, scale_all[keep], k_zz, self.prior_var)
        return bound(cands.x[torch.as_tensor(rows)])

    def task_covariance(self) -> np.ndarray:
        """`(K+1) x (K+1)` task covariance ``B`` (target first)."""
        bss = self.factor @ self.factor.T
        b = self.fit.b_row(self.factor)
        return np.block([[np.array([[self.fit.b00]]), b[None, :]], [b[:, None], bss]])

    def source_weights(self) -> dict[str, float]:
        """``task -> correlation`` of each source with the target in ``B`` (the prior weights
        before the target part is fitted; negative: the model transfers it upside down)."""
        if not self.fitted:
            return {s.task: float(w) for s, w in zip(self.sources, prior_weights(self.sources))}
        bmat = self.task_covariance()
        d = np.sqrt(np.diag(bmat))
        return {s.task: float(bmat[0, i + 1] / (d[0] * d[i + 1])) for i, s in enumerate(self.sources)}

    def botorch_model(self):
        """The equivalent BoTorch ``MultiTaskGP`` (eval mode, task 0 = target, fixed noises).

        Same data, data kernel, task covariance ``B`` (an ``IndexKernel`` with factor
        ``chol(B)``), per-task constant means and per-point noise (``train_Yvar``).
        """
        from botorch.models import MultiTaskGP
        from gpytorch.kernels import IndexKernel, RBFKernel, ScaleKernel
        from gpytorch.means import ConstantMean, MultitaskMean

        k = len(self.sources)
        x = torch.cat([self.x0, self.xs])
        tasks = torch.cat([torch.zeros(self.x0.shape[0], dtype=DTYPE), (self.ts + 1).to(DTYPE)])
        y = torch.cat([self.y0, self.ys])
        noise = torch.cat([torch.full((self.x0.shape[0],), self.fit.noise, dtype=DTYPE),
                           torch.as_tensor(self.source_fit.noise, dtype=DTYPE)[self.ts]])
        model = MultiTaskGP(torch.cat([x, tasks[:, None]], 1), y[:, None], task_feature=-1, train_Yvar=noise[:, None],
                            outcome_transform=None, task_covar_prior=None, output_tasks=[0])
        d = x.shape[1]
        kernels = []
        for bi in range(self.layout.n_blocks):
            cols = self.layout.block_columns(bi)
            ls = np.zeros(len(cols))
            pos = {c: i for i, c in enumerate(cols)}
            for gi, gcols in enumerate(self.layout.groups):
                if self.layout.block_of[gi] == bi:
                    for c in gcols:
                        ls[pos[c]] = self.kernel.lengthscales[gi]
            rbf = RBFKernel(ard_num_dims=len(cols), active_dims=torch.as_tensor(cols))
            rbf.lengthscale = torch.as_tensor(ls, dtype=DTYPE).reshape(1, -1)
            sk = ScaleKernel(rbf)
            sk.outputscale = torch.as_tensor(float(self.kernel.outputscales[bi]), dtype=DTYPE)
            kernels.append(sk)
        data = kernels[0]
        for kk in kernels[1:]:
            data = data + kk
        task = IndexKernel(num_tasks=k + 1, rank=k + 1, active_dims=[d])
        bmat = torch.as_tensor(self.task_covariance(), dtype=DTYPE)
        task.covar_factor.data = torch.linalg.cholesky(bmat + 1e-12 * torch.eye(k + 1, dtype=DTYPE))
        task.var = torch.full((k + 1,), 1e-12, dtype=DTYPE)
        model.covar_module = data * task
        means = [self.fit.mean] + [float(m) for m in self.source_fit.means]
        mm = MultitaskMean(base_means=ConstantMean(), num_tasks=k + 1)
        for m_mod, value in zip(mm.base_means, means):
            m_mod.constant = torch.as_tensor(value, dtype=DTYPE)
        model.mean_module = mm
        model = model.to(DTYPE)
        model.eval()
        return model


# -- the strategy's side -----------------------------------------------------------------------------


class TransferProposer:
    """Warm-started proposals of one :class:`~workbench.strategy.bo.strategy.BayesianOptimization`.

    Built lazily on the first ask from the strategy's sources; the source part of the model is
    fitted then and never again. Each ask conditions the model on the target's usable
    observations (transformed like the sources) and maximises LogEI over the candidates. With no
    or one target observation there is nothing to rank or fit yet: the first proposal is what
    the sources observed best (weighted by their prior trust), the second a uniformly random
    probe (the pair tells a source that ranks the target backwards from one that ranks it well;
    a search led only by the sources would first see points they all agree on).

    Args:
        strategy: The owning strategy (its features, layout, transform, pools and history).
        sources: ``(task, genotypes, values, weight)`` tuples.
        method: ``"rgpe"`` or ``"mtgp"``.
        max_source_points: Most observations kept per source.
        n_bootstrap: RGPE's bootstrap samples.
    """

    def __init__(self, strategy: Any, sources: Sequence[Any], method: str = "rgpe", max_source_points: int = 300,
                 n_bootstrap: int = 256) -> None:
        if method not in TRANSFER_MODELS:
            raise UserError(f"bo transfer must be one of {list(TRANSFER_MODELS)}; got {method!r}")
        self.strategy = strategy
        self.raw = list(sources)
        self.method = method
        self.max_source_points = int(max_source_points)
        self.n_bootstrap = int(n_bootstrap)
        self.sources: list[Source] | None = None
        self.model: RGPE | FastMultiTaskGP | None = None
        self.pool: Candidates | None = None
        #: Seconds of the one-off source preparation (features, source fits).
        self.setup_seconds = 0.0

    # -- building --------------------------------------------------------------------------------
    def _transform(self, values: np.ndarray) -> np.ndarray:
        from workbench.strategy.bo.strategy import transform_targets

        return transform_targets(values, self.strategy.transform)

    def ready(self) -> bool:
        """Build the sources and models if needed; False when no usable source remains."""
        if self.sources is None:
            import time

            t0 = time.perf_counter()
            s = self.strategy
            self.sources = prepare_sources(self.raw, s._features, self._transform, self.max_source_points)
            if self.sources:
                layout = s._layout()
                if s.full_pool is not None:
                    self.pool = Candidates(s.full_pool.features(), layout)
                if self.method == "rgpe":
                    self.model = RGPE(self.sources, layout, s.fit_settings, self.n_bootstrap)
                else:
                    self.model = FastMultiTaskGP(self.sources, layout, s.fit_settings)
            self.setup_seconds = time.perf_counter() - t0
        return bool(self.sources)

    @property
    def source_fits(self) -> int:
        """Source model fits so far (they happen once, on the first ask)."""
        return 0 if self.model is None else self.model.source_fits

    def _target_data(self) -> tuple[list, Tensor, Tensor]:
        s = self.strategy
        used, values = s._targets(s.history)
        if not used:
            return [], torch.zeros((0, self.sources[0].x.shape[1]), dtype=DTYPE), torch.zeros(0, dtype=DTYPE)
        x0 = torch.as_tensor(s._features([o.genotype for o in used]), dtype=DTYPE)
        return used, x0, torch.as_tensor(self._transform(values[:, 0]), dtype=DTYPE)

    def _rng(self) -> np.random.Generator:
        s = self.strategy
        return np.random.default_rng([s.seed, len(s.history), 0xB007])

    def refresh(self) -> tuple[list, Tensor, Tensor]:
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
    def propose(self, k: int, pending: Sequence[Genotype], taken: set[str], rng: np.random.Generator) -> list[Genotype]:
        """``k`` new genotypes (distinct, not told, not pending)."""
        import time

        s = self.strategy
        t0 = time.perf_counter()
        used, x0, y0 = self.refresh()
        t_fit = time.perf_counter() - t0
        t1 = time.perf_counter()
        if self.pool is not None:
            rows = s.full_pool.available([o.genotype for o in s.history] + list(pending))
            members = s.full_pool.members()
            cands = self.pool
            genotypes = None
        else:
            genotypes = self._sampled_candidates(used, y0, taken, rng)
            if not genotypes:
                return []
            cands = Candidates(s.featurizer.cached(genotypes), s._layout())
            rows = np.arange(len(genotypes))
        model = self.model if self.model.has_target and x0.shape[0] > RANDOM_PROBES else None
        if model is not None and pending:
            model = model.fantasize(torch.as_tensor(s._features(list(pending)), dtype=DTYPE))
        picks: list[int] = []
        warm_first = self._warm_order(cands, rows, genotypes) if model is None else []
        for _ in range(min(k, len(rows))):
            free = np.setdiff1d(rows, np.asarray(picks, dtype=np.int64), assume_unique=True) if picks else rows
            if model is None:  # nothing to rank yet
                slot = x0.shape[0] + len(pending) + len(picks)
                left = [r for r in warm_first if r not in picks]
                if 1 <= slot <= RANDOM_PROBES:  # random probes: a source's ranking is testable against them
                    pick = int(free[int(rng.integers(len(free)))])
                elif left:  # what the trusted sources observed best
                    pick = left[0]
                else:
                    pick = int(free[int(np.argmax(self.model.mean(cands, free)))])
            else:
                best_f = float(y0.max())
                pos, _ = top_log_ei_rows(model, cands, free, best_f, 1)
                pick = int(free[int(pos[0])])
                model = model.fantasize(cands.x[pick : pick + 1])
            picks.append(pick)
        s.last_ask = {
            "fit_s": t_fit, "acq_s": time.perf_counter() - t1, "candidates": len(rows), "observations": len(used),
            "transfer": self.method, "source_weights": self.model.source_weights(),
            "target_weight": getattr(self.model, "target_weight", None), "setup_s": self.setup_seconds,
        }
        if genotypes is None:
            return [members[i] for i in picks]
        return [genotypes[i] for i in picks]

    def _warm_order(self, cands: Candidates, rows: np.ndarray, genotypes: list[Genotype] | None) -> list[int]:
        """Candidate rows that some source observed, best first by ``sum_t w_t y_t`` (``y_t`` the
        source's transformed value, 0 where it did not observe the row; ``w`` the prior weights).
        The first proposals of a warm search, before the target has two observations."""
        s = self.strategy
        weights = prior_weights(self.sources)
        if genotypes is None:
            score: dict[int, float] = {}
            for src, w in zip(self.sources, weights):
                for g, y in zip(src.genotypes, src.y.numpy()):
                    i = s.full_pool.index_of(g)
                    if i is not None:
                        score[i] = score.get(i, 0.0) + float(w) * float(y)
            allowed = set(int(r) for r in rows)
        else:
            row_of = {g.key: i for i, g in enumerate(genotypes)}
            score = {}
            for src, w in zip(self.sources, weights):
                for g, y in zip(src.genotypes, src.y.numpy()):
                    i = row_of.get(g.key)
                    if i is not None:
                        score[i] = score.get(i, 0.0) + float(w) * float(y)
            allowed = set(range(len(genotypes)))
        ranked = sorted((i for i in score if i in allowed), key=lambda i: (-score[i], i))
        return ranked

    def _sampled_candidates(self, used: list, y0: Tensor, taken: set[str], rng: np.random.Generator) -> list[Genotype]:
        """Candidates in spaces without a pool: samples, mutations of the target's and the
        trusted sources' best, and those best themselves."""
        s = self.strategy
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
        excluded = s._seen | taken
        out = {g.key: g for g in s.sampled_pool.candidates(parents, rng, excluded, len(s.history))}
        for g in best_sources:
            if g.key not in excluded and g.key not in out:
                try:
                    s.space.validate(g)
                except InvalidGenotype:
                    continue
                out[g.key] = g
        return list(out.values())
