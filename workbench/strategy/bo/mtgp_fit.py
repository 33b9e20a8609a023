"""The fast multi-task GP's once-per-source-set fit: MAP hyperparameters of the sources' ICM.

The intrinsic coregionalisation model of :mod:`.mtgp` has the kernel of BoTorch's
``MultiTaskGP``: ``K = B[t_i, t_j] k(x_i, x_j) + noise[t_i] delta_ij`` with a data kernel ``k``
(the additive RBF of a :class:`~workbench.strategy.bo.model.KernelLayout`), a task covariance
``B`` and a constant mean per task. Its data kernel, the sources' block of ``B`` and their noises
and means depend only on the sources, so they are fitted **once per search**
(:class:`SourceObjective`, L-BFGS-B from fixed initial values on a thinned subset, with an
analytic gradient) and kept as a :class:`SourceFit`. The target's part is fitted per ask by
:class:`~workbench.strategy.bo.mtgp.FastMultiTaskGP` with :func:`minimize_torch`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import OptimizeResult, minimize
from torch import Tensor

from workbench.strategy.bo.model import DTYPE, MAX_NOISE, MIN_NOISE, FitSettings, KernelLayout, _sqdist, single_threaded

__all__ = ["SourceFit", "SourceObjective", "minimize_numpy", "minimize_torch"]


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


def minimize_torch(
    fun: Callable[[Tensor], Tensor], x0: np.ndarray, bounds: list[tuple[float, float]], maxiter: int
) -> OptimizeResult:
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


def minimize_numpy(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    bounds: list[tuple[float, float]],
    maxiter: int,
) -> OptimizeResult:
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

    def __init__(
        self, x: Tensor, y: Tensor, tasks: Tensor, k: int, layout: KernelLayout, settings: FitSettings
    ) -> None:
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
        return np.concatenate(
            [
                np.log(self.layout.prior_lengthscale),
                np.zeros(self.layout.n_blocks),
                np.log(np.diag(l0)),
                l0[rows, cols],
                np.full(k, math.log(self.settings.noise_prior)),
                np.zeros(k),
            ]
        )

    def bounds(self) -> list[tuple[float, float]]:
        g, b, k, n_off, _, _ = self.sizes
        return (
            [(math.log(1e-2), math.log(1e3))] * g
            + [(-5.0, 5.0)] * b
            + [(math.log(1e-3), math.log(10.0))] * k
            + [(-5.0, 5.0)] * n_off
            + [(math.log(MIN_NOISE), math.log(MAX_NOISE))] * k
            + [(-3.0, 3.0)] * k
        )

    def _prior(
        self, log_ls: Tensor, logits: Tensor, diag_log: Tensor, off: Tensor, log_noise: Tensor, means: Tensor
    ) -> Tensor:
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
        nll = (
            0.5 * float(r @ alpha) + float(torch.log(torch.diagonal(chol)).sum()) + 0.5 * self.n * math.log(2 * math.pi)
        )
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
            lengthscales=torch.exp(log_ls).numpy(),
            outputscales=torch.softmax(logits, 0).numpy(),
            task_factor=_tril_from(diag_log, off, self.k).numpy(),
            noise=torch.exp(log_noise).numpy(),
            means=means.numpy(),
            iterations=iterations,
        )
