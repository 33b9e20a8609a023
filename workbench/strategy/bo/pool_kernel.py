"""Scoring whole candidate pools with a GP's kernel: cached kernel sums and variance bounds.

Warm-started BO scores every candidate (all 26,206 NAS-Bench-Graph architectures) at each ask.
The posterior *mean* over a pool is ``K(pool, X) c``; for a one-hot encoding whose kernel is an
exponentiated Hamming distance, :class:`CategoricalSums` computes it without the `N x n` matrix:
the kernel is a product over decisions of ``r_d + (1 - r_d) [x_d = x'_d]``, so ``K c`` is a sum
over subsets ``S`` of the decisions of weighted lookups in tables of ``c`` summed by the values
on ``S`` (32 subsets for nbgraph, milliseconds for any ``n``). Other encodings fall back to dense
chunks of :class:`DataKernel`.

* :class:`DataKernel`: the additive RBF kernel of a
  :class:`~workbench.strategy.bo.model.KernelLayout` with fixed hyperparameters;
* :class:`Candidates`: a candidate set's features, its kernel-sum structure and the caches that
  models keep on it (a tabular space's pool is one for the life of a strategy);
* :class:`SubsetBound`: a cheap upper bound of a GP's posterior variance, from a subset of its
  training points;
* :func:`gp_pool_mean`, :func:`gp_variance`, :func:`gp_subset_bound`: the same for one
  :class:`~workbench.strategy.bo.model.GPModel`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from workbench.strategy.bo.model import DTYPE, GPModel, KernelLayout, _cholesky, _sqdist, single_threaded

__all__ = [
    "Candidates",
    "CategoricalSums",
    "DataKernel",
    "SubsetBound",
    "gp_kernel",
    "gp_pool_mean",
    "gp_subset_bound",
    "gp_variance",
]


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

    def __init__(
        self,
        decisions: list[list[int]],
        block_decisions: list[list[int]],
        decision_group: list[int],
        pool_codes: np.ndarray,
    ) -> None:
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

    def matvec(
        self, train_codes: np.ndarray, c: np.ndarray, lengthscales: np.ndarray, outputscales: np.ndarray
    ) -> np.ndarray:
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


def gp_kernel(gp: GPModel) -> DataKernel:
    """The data kernel of a fitted GP (its layout and hyperparameters)."""
    return DataKernel(gp.layout, gp.hp.lengthscales, gp.hp.outputscales)


def gp_pool_mean(gp: GPModel, cands: Candidates) -> np.ndarray:
    """Posterior mean of ``gp`` at every candidate (`N`)."""
    return gp.hp.mean + cands.kernel_sums(gp_kernel(gp), gp.x, gp.alpha)


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

    def __init__(
        self, kernel: Callable[[Tensor, Tensor], Tensor], z: Tensor, scale: Tensor, k_zz: Tensor, prior_var: float
    ) -> None:
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
    kernel = gp_kernel(gp)
    z = gp.x[keep]
    k_zz = kernel(z, z) + (gp.hp.noise + gp.jitter) * torch.eye(len(keep), dtype=DTYPE)
    return SubsetBound(kernel, z, torch.ones(len(keep), dtype=DTYPE), k_zz, gp.prior_var)
