"""The GP surrogate of ``bo``: an exact GP over architecture encodings with a fast, deterministic fit.

Kernel. The feature matrix (`n x d`, one row per genotype) is split into *blocks* (one per
encoding, e.g. one-hot and path) that add up, and each block into *groups* of columns that share
one lengthscale::

    k(x, x') = sum_b s_b * exp(-1/2 * sum_{g in b} ||x_g - x'_g||^2 / l_g^2)

On one-hot columns of categorical decisions, ``||x_g - x'_g||^2`` is twice the number of
decisions that differ, so an RBF block is an exponentiated Hamming (categorical) kernel;
continuous columns (the hyperparameters of joint spaces) get a lengthscale each. This is exactly
a sum of gpytorch ``ScaleKernel(RBFKernel(ard_num_dims=..., active_dims=...))``, and
:meth:`GPModel.single_task_gp` returns the equivalent BoTorch ``SingleTaskGP``.

Fit. The hyperparameters (log lengthscales, log outputscales, log noise, constant mean) are the
MAP estimate of the exact marginal likelihood (float64, Cholesky) under weak log-normal priors.
Instead of ``fit_gpytorch_mll`` (thousands of L-BFGS steps through gpytorch's lazy tensors), the
objective is written directly in torch over squared-distance matrices precomputed once per
group, and minimised by scipy's L-BFGS-B from *fixed* initial values with a small iteration cap:
a pure function of the data, so a replayed search refits to the same numbers.

Prediction. :meth:`GPModel.predict` computes the marginal posterior of many candidates in chunks
with one triangular solve each (`N x n` cross-covariances, never `N x N`); a whole NAS-Bench-Graph
pool (26,206 rows) takes a few tens of milliseconds. :class:`MarginalPosteriorModel` wraps it as a
BoTorch ``Model`` so that BoTorch's analytic ``LogExpectedImprovement`` can score such pools.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import minimize
from threadpoolctl import ThreadpoolController
from torch import Tensor

DTYPE = torch.float64
#: Smallest noise variance (on standardised targets), as BoTorch's default likelihood.
MIN_NOISE = 1e-4
MAX_NOISE = 2.0


@dataclass(frozen=True)
class KernelLayout:
    """Which feature columns share a lengthscale (groups) and which groups multiply (blocks).

    Attributes:
        groups: Column indices of each lengthscale group.
        block_of: The block (additive term) of each group.
        prior_lengthscale: Centre of the log-normal prior of each group's lengthscale.
    """

    groups: tuple[tuple[int, ...], ...]
    block_of: tuple[int, ...]
    prior_lengthscale: tuple[float, ...]

    def __post_init__(self) -> None:
        if not (len(self.groups) == len(self.block_of) == len(self.prior_lengthscale)):
            raise ValueError("groups, block_of and prior_lengthscale must have equal lengths")
        if not self.groups:
            raise ValueError("a kernel layout needs at least one group")

    @property
    def n_groups(self) -> int:
        """Number of lengthscales."""
        return len(self.groups)

    @property
    def n_blocks(self) -> int:
        """Number of additive kernel terms (outputscales)."""
        return max(self.block_of) + 1

    def block_columns(self, b: int) -> list[int]:
        """Sorted feature columns of block ``b``."""
        return sorted(c for g, cols in enumerate(self.groups) if self.block_of[g] == b for c in cols)

    @classmethod
    def from_blocks(
        cls, blocks: Sequence[Sequence[Sequence[int]]], prior: Sequence[Sequence[float]] | None = None
    ) -> KernelLayout:
        """Layout from ``blocks[b][g] = columns``; the default prior centre is ``sqrt(width)``
        of the block (a random pair of rows then correlates about ``exp(-1/4)``)."""
        groups: list[tuple[int, ...]] = []
        block_of: list[int] = []
        centres: list[float] = []
        for b, block in enumerate(blocks):
            width = sum(len(cols) for cols in block)
            for g, cols in enumerate(block):
                groups.append(tuple(int(c) for c in cols))
                block_of.append(b)
                centres.append(float(prior[b][g]) if prior is not None else math.sqrt(max(width, 1)))
        return cls(tuple(groups), tuple(block_of), tuple(centres))


@dataclass(frozen=True)
class FitSettings:
    """How hyperparameters are fitted.

    Attributes:
        maxiter: Most L-BFGS-B iterations (each one or a few likelihood evaluations).
        max_points: Hyperparameters are fitted on at most this many observations (every k-th,
            a deterministic thinning): each likelihood evaluation is cubic in their number,
            while the GP is then conditioned on all of them.
        lengthscale_sd: Standard deviation of the log-lengthscale priors.
        outputscale_sd: Standard deviation of the log-outputscale priors (centred at ``1/B``).
        noise_prior: Centre of the log-normal noise-variance prior (standardised targets).
        noise_sd: Its standard deviation in log space.
    """

    maxiter: int = 60
    max_points: int = 150
    lengthscale_sd: float = 1.0
    outputscale_sd: float = 1.0
    noise_prior: float = 0.05
    noise_sd: float = 1.5


@dataclass
class Hyperparameters:
    """Fitted kernel hyperparameters (natural scale)."""

    lengthscales: np.ndarray  # `G`
    outputscales: np.ndarray  # `B`
    noise: float
    mean: float
    nll: float = float("nan")
    iterations: int = 0
    evaluations: int = 0
    extra: dict = field(default_factory=dict)


_CONTROLLER: ThreadpoolController | None = None


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch and BLAS on one thread, restoring the previous settings after.

    The GP's matrices are small (`n x n` with n in the hundreds): extra threads only add
    synchronisation, and on a busy 2-core machine a 2-thread Cholesky was measured 10-20 times
    slower than a 1-thread one (benchmarks/bo_speed.py). The BLAS libraries are found once per
    process: ``threadpool_limits`` scans the loaded libraries on every call, which was measured
    at several milliseconds with torch and scipy loaded.
    """
    global _CONTROLLER
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


def _sqdist(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances `n x m` between rows of ``a`` (`n x k`) and ``b`` (`m x k`)."""
    d = (a * a).sum(-1)[:, None] + (b * b).sum(-1)[None, :] - 2.0 * a @ b.T
    return d.clamp_min_(0.0)


def _cholesky(k: Tensor) -> tuple[Tensor, float]:
    """Cholesky factor of ``k``, adding jitter only if needed; returns ``(L, jitter)``."""
    eye = torch.eye(k.shape[-1], dtype=k.dtype)
    jitter = 0.0
    for _ in range(8):
        factor, info = torch.linalg.cholesky_ex(k + jitter * eye if jitter else k)
        if int(info) == 0:
            return factor, jitter
        jitter = 1e-8 if jitter == 0.0 else jitter * 10.0
    raise torch.linalg.LinAlgError("covariance matrix is not positive definite even with jitter")


class _Objective:
    """Negative log posterior of the hyperparameters, over precomputed group distances."""

    def __init__(self, x: Tensor, y: Tensor, layout: KernelLayout, settings: FitSettings) -> None:
        self.layout = layout
        self.settings = settings
        self.y = y
        self.n = x.shape[0]
        self.dist = torch.stack([_sqdist(x[:, list(cols)], x[:, list(cols)]) for cols in layout.groups])
        self.block = torch.as_tensor(layout.block_of)
        self.prior_ls = torch.log(torch.as_tensor(layout.prior_lengthscale, dtype=DTYPE))
        self.prior_os = math.log(1.0 / layout.n_blocks)
        self.eye = torch.eye(self.n, dtype=DTYPE)
        self.evaluations = 0

    def unpack(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        g, b = self.layout.n_groups, self.layout.n_blocks
        return theta[:g], theta[g : g + b], theta[g + b], theta[g + b + 1]

    def kernel(self, log_ls: Tensor, log_os: Tensor) -> Tensor:
        scaled = self.dist * torch.exp(-2.0 * log_ls)[:, None, None]
        if self.layout.n_blocks == 1:
            return torch.exp(log_os[0]) * torch.exp(-0.5 * scaled.sum(0))
        per_block = torch.zeros((self.layout.n_blocks, self.n, self.n), dtype=DTYPE)
        per_block = per_block.index_add(0, self.block, scaled)
        return (torch.exp(log_os)[:, None, None] * torch.exp(-0.5 * per_block)).sum(0)

    def value(self, theta: Tensor) -> Tensor:
        log_ls, log_os, log_noise, mean = self.unpack(theta)
        k = self.kernel(log_ls, log_os) + torch.exp(log_noise) * self.eye
        factor, _ = _cholesky(k)
        r = (self.y - mean)[:, None]
        alpha = torch.cholesky_solve(r, factor)
        nll = 0.5 * (r * alpha).sum() + torch.log(torch.diagonal(factor)).sum() + 0.5 * self.n * math.log(2 * math.pi)
        s = self.settings
        prior = 0.5 * (((log_ls - self.prior_ls) / s.lengthscale_sd) ** 2).sum()
        prior = prior + 0.5 * (((log_os - self.prior_os) / s.outputscale_sd) ** 2).sum()
        prior = prior + 0.5 * ((log_noise - math.log(s.noise_prior)) / s.noise_sd) ** 2
        return nll + prior

    def __call__(self, theta_np: np.ndarray) -> tuple[float, np.ndarray]:
        """Value and analytic gradient (no autograd: one Cholesky and one inverse per call).

        With ``W = K^-1 - alpha alpha^T``, ``d nll / d theta = 1/2 sum(W * dK/d theta)``.
        """
        self.evaluations += 1
        theta = torch.as_tensor(theta_np, dtype=DTYPE)
        log_ls, log_os, log_noise, mean = self.unpack(theta)
        g_n, b_n = self.layout.n_groups, self.layout.n_blocks
        inv_l2 = torch.exp(-2.0 * log_ls)
        scaled = self.dist * inv_l2[:, None, None]
        per_block = torch.zeros((b_n, self.n, self.n), dtype=DTYPE).index_add_(0, self.block, scaled)
        terms = torch.exp(log_os)[:, None, None] * torch.exp(-0.5 * per_block)  # s_b E_b
        noise = float(torch.exp(log_noise))
        k = terms.sum(0)
        k.diagonal().add_(noise)
        factor, info = torch.linalg.cholesky_ex(k)
        if int(info) != 0:
            return 1e10, np.zeros_like(theta_np)
        r = self.y - mean
        alpha = torch.cholesky_solve(r[:, None], factor)[:, 0]
        s = self.settings
        d_ls = (log_ls - self.prior_ls) / s.lengthscale_sd**2
        d_os = (log_os - self.prior_os) / s.outputscale_sd**2
        d_noise = (log_noise - math.log(s.noise_prior)) / s.noise_sd**2
        value = (
            0.5 * float(r @ alpha)
            + float(torch.log(torch.diagonal(factor)).sum())
            + 0.5 * self.n * math.log(2 * math.pi)
            + 0.5 * float((d_ls * (log_ls - self.prior_ls)).sum())
            + 0.5 * float((d_os * (log_os - self.prior_os)).sum())
            + 0.5 * float(d_noise * (log_noise - math.log(s.noise_prior)))
        )
        w = torch.cholesky_inverse(factor) - torch.outer(alpha, alpha)
        wt = w[None] * terms  # `B x n x n`: W * s_b E_b
        grad = torch.empty(g_n + b_n + 2, dtype=DTYPE)
        grad[g_n : g_n + b_n] = 0.5 * wt.sum((1, 2)) + d_os
        # d E_b / d log l_g = E_b * D_g / l_g^2 (g in block b)
        grad[:g_n] = 0.5 * (wt[self.block] * scaled).sum((1, 2)) + d_ls
        grad[g_n + b_n] = 0.5 * noise * float(torch.diagonal(w).sum()) + d_noise
        grad[g_n + b_n + 1] = -alpha.sum()
        return value, grad.numpy()


def _data_lengthscales(obj: _Objective) -> np.ndarray:
    """A data-driven start per group: half the root median non-zero squared distance (on
    one-hot columns of five decisions, about 1.4), within the fit's bounds."""
    out = np.empty(obj.layout.n_groups)
    for gi in range(obj.layout.n_groups):
        d = obj.dist[gi]
        nz = d[d > 1e-12]
        med = float(nz.median()) if nz.numel() else 1.0
        out[gi] = min(max(0.5 * math.sqrt(med), 1e-2), 1e3)
    return out


def fit_hyperparameters(
    x: Tensor, y: Tensor, layout: KernelLayout, settings: FitSettings = FitSettings()
) -> Hyperparameters:
    """MAP hyperparameters of the exact GP on ``(x, y)``.

    Deterministic: runs scipy's L-BFGS-B (at most ``settings.maxiter`` iterations) from two fixed
    starts, data-driven lengthscales and the prior centres, and keeps the better optimum (the
    likelihood of rough objectives has a second, "all noise" mode with long lengthscales that a
    single start from long lengthscales sometimes ends in).

    Args:
        x: `n x d` features (float64).
        y: `n` targets, standardised (mean 0, unit variance) by the caller.
        layout: The kernel's groups and blocks.
        settings: Iteration cap and priors.
    """
    if x.shape[0] > settings.max_points:
        keep = torch.as_tensor(np.unique(np.linspace(0, x.shape[0] - 1, settings.max_points).round().astype(int)))
        x, y = x[keep], y[keep]
    obj = _Objective(x, y, layout, settings)
    g, b = layout.n_groups, layout.n_blocks
    rest = np.concatenate([np.full(b, obj.prior_os), [math.log(settings.noise_prior)], [0.0]])
    starts = [np.concatenate([np.log(_data_lengthscales(obj)), rest])]
    starts.append(np.concatenate([np.log(layout.prior_lengthscale), rest]))
    bounds = [(math.log(1e-2), math.log(1e3))] * g + [(math.log(1e-3), math.log(20.0))] * b
    bounds += [(math.log(MIN_NOISE), math.log(MAX_NOISE)), (-3.0, 3.0)]
    res, iterations = None, 0
    with single_threaded():
        for x0 in starts:
            r = minimize(obj, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": settings.maxiter})
            iterations += int(r.nit)
            if res is None or r.fun < res.fun - 1e-9:
                res = r
    theta = res.x
    return Hyperparameters(
        lengthscales=np.exp(theta[:g]),
        outputscales=np.exp(theta[g : g + b]),
        noise=float(np.exp(theta[g + b])),
        mean=float(theta[g + b + 1]),
        nll=float(res.fun),
        iterations=iterations,
        evaluations=obj.evaluations,
    )


class GPModel:
    """An exact GP with fixed hyperparameters: fast marginal posteriors, BoTorch on demand.

    Args:
        x: `n x d` training features.
        y: `n` (standardised) training targets.
        layout: Kernel layout.
        hp: Hyperparameters (e.g. from :func:`fit_hyperparameters`).
    """

    def __init__(self, x: Tensor, y: Tensor, layout: KernelLayout, hp: Hyperparameters) -> None:
        self.x = x.to(DTYPE)
        self.y = y.to(DTYPE)
        self.layout = layout
        self.hp = hp
        # per-column inverse lengthscale, and per block its columns
        inv = np.zeros(x.shape[1])
        for gi, cols in enumerate(layout.groups):
            inv[list(cols)] = 1.0 / hp.lengthscales[gi]
        self._inv = torch.as_tensor(inv, dtype=DTYPE)
        self._blocks = [torch.as_tensor(layout.block_columns(b)) for b in range(layout.n_blocks)]
        self._scaled_train = [self.x[:, cols] * self._inv[cols] for cols in self._blocks]
        with single_threaded():
            k = self.cross(self.x) + hp.noise * torch.eye(len(self.x), dtype=DTYPE)
            self.chol, self.jitter = _cholesky(k)
            self.alpha = torch.cholesky_solve((self.y - hp.mean)[:, None], self.chol)[:, 0]
        self.prior_var = float(np.sum(hp.outputscales))
        self._chol_inv: Tensor | None = None
        self._botorch = None

    @classmethod
    def fit(cls, x: Tensor, y: Tensor, layout: KernelLayout, settings: FitSettings = FitSettings()) -> GPModel:
        """Fit hyperparameters (:func:`fit_hyperparameters`) and condition on the data."""
        return cls(x, y, layout, fit_hyperparameters(x, y, layout, settings))

    def cross(self, xc: Tensor) -> Tensor:
        """Prior covariance `m x n` between rows of ``xc`` (`m x d`) and the training rows."""
        out = torch.zeros((xc.shape[0], self.x.shape[0]), dtype=DTYPE)
        for b, cols in enumerate(self._blocks):
            z = xc[:, cols] * self._inv[cols]
            out += float(self.hp.outputscales[b]) * torch.exp(-0.5 * _sqdist(z, self._scaled_train[b]))
        return out

    def believe(self, x: Tensor) -> GPModel:
        """This GP with ``x`` added at its own posterior mean, same hyperparameters (kriging
        believer: how batches and pending points are fantasized)."""
        return GPModel(torch.cat([self.x, x]), torch.cat([self.y, self.predict_mean(x)]), self.layout, self.hp)

    def predict_mean(self, xc: Tensor, chunk: int = 8192) -> Tensor:
        """Posterior mean only (`m`): one cross-covariance, no solve."""
        out = []
        with torch.no_grad(), single_threaded():
            for start in range(0, xc.shape[0], chunk):
                out.append(self.hp.mean + self.cross(xc[start : start + chunk].to(DTYPE)) @ self.alpha)
        return torch.cat(out) if out else torch.zeros(0, dtype=DTYPE)

    def predict(self, xc: Tensor | np.ndarray, chunk: int = 8192) -> tuple[Tensor, Tensor]:
        """Marginal posterior mean and variance of the latent function (`m` each), in chunks."""
        xc = torch.as_tensor(np.asarray(xc) if not isinstance(xc, Tensor) else xc, dtype=DTYPE)
        means, variances = [], []
        with torch.no_grad(), single_threaded():
            if self._chol_inv is None:
                eye = torch.eye(self.chol.shape[0], dtype=DTYPE)
                self._chol_inv = torch.linalg.solve_triangular(self.chol, eye, upper=False)
            for start in range(0, xc.shape[0], chunk):
                ks = self.cross(xc[start : start + chunk])
                means.append(self.hp.mean + ks @ self.alpha)
                v = ks @ self._chol_inv.T  # rows: L^-1 k(x, X)
                variances.append((self.prior_var - (v * v).sum(1)).clamp_min(1e-12))
        if not means:
            empty = torch.zeros(0, dtype=DTYPE)
            return empty, empty
        return torch.cat(means), torch.cat(variances)

    def single_task_gp(self):
        """The equivalent BoTorch ``SingleTaskGP`` (eval mode, same hyperparameters), cached."""
        if self._botorch is None:
            self._botorch = build_single_task_gp(self.x, self.y, self.layout, self.hp, extra_noise=self.jitter)
        return self._botorch


def build_single_task_gp(x: Tensor, y: Tensor, layout: KernelLayout, hp: Hyperparameters, extra_noise: float = 0.0):
    """A BoTorch ``SingleTaskGP`` whose kernel, mean and noise equal ``layout`` with ``hp``."""
    from botorch.models import SingleTaskGP
    from gpytorch.constraints import GreaterThan
    from gpytorch.kernels import RBFKernel, ScaleKernel
    from gpytorch.likelihoods import GaussianLikelihood
    from gpytorch.means import ConstantMean

    kernels = []
    for b in range(layout.n_blocks):
        cols = layout.block_columns(b)
        rbf = RBFKernel(ard_num_dims=len(cols), active_dims=torch.as_tensor(cols))
        ls = np.zeros(len(cols))
        pos = {c: i for i, c in enumerate(cols)}
        for gi, gcols in enumerate(layout.groups):
            if layout.block_of[gi] == b:
                for c in gcols:
                    ls[pos[c]] = hp.lengthscales[gi]
        rbf.lengthscale = torch.as_tensor(ls, dtype=DTYPE).reshape(1, -1)
        scale = ScaleKernel(rbf)
        scale.outputscale = torch.as_tensor(float(hp.outputscales[b]), dtype=DTYPE)
        kernels.append(scale)
    covar = kernels[0]
    for k in kernels[1:]:
        covar = covar + k
    likelihood = GaussianLikelihood(noise_constraint=GreaterThan(1e-9))
    likelihood.noise = torch.as_tensor(hp.noise + extra_noise, dtype=DTYPE)
    mean = ConstantMean()
    mean.constant = torch.as_tensor(hp.mean, dtype=DTYPE)
    model = SingleTaskGP(
        x.to(DTYPE),
        y.to(DTYPE)[:, None],
        likelihood=likelihood,
        covar_module=covar,
        mean_module=mean,
        outcome_transform=None,
    ).to(DTYPE)
    model.eval()
    return model


def marginal_model(gp: GPModel):
    """A BoTorch ``Model`` whose posterior at `b x 1 x d` inputs is ``gp``'s marginal posterior.

    It lets BoTorch's analytic acquisition functions (``LogExpectedImprovement``) score tens of
    thousands of candidates through :meth:`GPModel.predict` instead of gpytorch's batched path.
    """
    from botorch.models.model import Model
    from botorch.posteriors.gpytorch import GPyTorchPosterior
    from gpytorch.distributions import MultivariateNormal
    from linear_operator.operators import DiagLinearOperator

    class MarginalPosteriorModel(Model):
        _num_outputs = 1

        def __init__(self, gp: GPModel) -> None:
            super().__init__()
            self.gp = gp

        @property
        def num_outputs(self) -> int:
            return 1

        @property
        def batch_shape(self) -> torch.Size:
            return torch.Size()

        def posterior(self, X, output_indices=None, observation_noise=False, posterior_transform=None):
            if X.shape[-2] != 1:
                raise ValueError("MarginalPosteriorModel only gives marginal posteriors (q = 1)")
            flat = X.reshape(-1, X.shape[-1])
            mean, var = self.gp.predict(flat)
            shape = X.shape[:-1]
            mvn = MultivariateNormal(mean.reshape(shape), DiagLinearOperator(var.reshape(shape)))
            post = GPyTorchPosterior(mvn)
            return posterior_transform(post) if posterior_transform is not None else post

    return MarginalPosteriorModel(gp)
