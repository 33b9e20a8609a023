"""The fast multi-task GP: an ICM ``MultiTaskGP`` of the target and its sources, fitted in two stages.

:class:`FastMultiTaskGP` is an intrinsic coregionalisation model with the kernel of BoTorch's
``MultiTaskGP`` (data kernel times a task covariance ``B``, the target task first, one noise
level and one constant mean per task); :meth:`FastMultiTaskGP.botorch_model` returns the
equivalent BoTorch model. Fitting the stock model with ``fit_gpytorch_mll`` takes minutes for
1,000 points; here the data kernel, the source block of ``B`` and the sources' noise and means
are fitted **once per source set** (:mod:`.mtgp_fit`, MAP on a thinned subset), and each ask
fits only the target's row of ``B`` (whitened against the source block, so ``B`` stays positive
definite), its noise and mean, by maximising ``p(y_target | y_sources)``: a likelihood over
`n_0 x n_0` matrices built from cached `n_s x n_0` solves (:class:`TargetFit`). The posterior is
exact, by a block Cholesky factor of all ``n_s + n_0`` points whose source block is cached.

It implements :class:`~workbench.strategy.bo.transfer_model.TransferModel` (``transfer="mtgp"``
of ``bo``); its posterior mean over a candidate pool uses the kernel sums of
:mod:`.pool_kernel`. Deterministic: every fit starts from fixed values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from workbench.strategy.bo.model import (
    DTYPE,
    MAX_NOISE,
    MIN_NOISE,
    FitSettings,
    KernelLayout,
    _cholesky,
    single_threaded,
)
from workbench.strategy.bo.mtgp_fit import SourceFit, SourceObjective, minimize_numpy, minimize_torch
from workbench.strategy.bo.pool_kernel import Candidates, DataKernel, SubsetBound
from workbench.strategy.bo.sources import PreparedSource, prior_weights, thin
from workbench.strategy.bo.transfer_model import data_key, next_version

__all__ = ["MIN_OWN_SD", "U_PRIOR_SD", "FastMultiTaskGP", "TargetFit"]

#: Prior standard deviation of the target's whitened task-covariance row (``B[0, 1:] = L u``): small,
#: so that a correlation with the sources must be supported by the target's data.
U_PRIOR_SD = 0.5
#: Smallest standard deviation of the target's own part (not explained by any source), so the
#: model never becomes certain that the target is a mix of the sources.
MIN_OWN_SD = 0.3


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

    def __init__(
        self,
        sources: Sequence[PreparedSource],
        layout: KernelLayout,
        settings: FitSettings,
        fit_points: int = 200,
        target_fit_points: int = 150,
        max_points: int = 1200,
        target_fit_sources: int = 600,
    ) -> None:
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
        keep = [thin(s.y.numpy(), per) for s in self.sources]
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
        res = minimize_numpy(obj, obj.start(), obj.bounds(), max(self.settings.maxiter, 60))
        return obj.result(res.x, int(res.nit))

    # -- stage 2: the target's row of B, each ask ----------------------------------------------------
    def _fit_target(self, x0: Tensor, y0: Tensor) -> TargetFit:
        k = len(self.sources)
        s = self.settings
        if x0.shape[0] > self.target_fit_points:
            keep = torch.as_tensor(
                np.unique(np.linspace(0, x0.shape[0] - 1, self.target_fit_points).round().astype(int))
            )
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
            w = torch.linalg.solve_triangular(lf, masked.reshape(len(sel), k * n0), upper=False).reshape(
                len(sel), k, n0
            )
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
        bounds = [(-5.0, 5.0)] * k + [
            (math.log(MIN_OWN_SD), math.log(5.0)),
            (math.log(MIN_NOISE), math.log(MAX_NOISE)),
            (-3.0, 3.0),
        ]
        res = minimize_torch(objective, x_init, bounds, s.maxiter)
        th = res.x
        return TargetFit(
            u=th[:k].copy(),
            v=float(math.exp(th[k])),
            noise=float(math.exp(th[k + 1])),
            mean=float(th[k + 2]),
            iterations=int(res.nit),
        )

    def update(self, x0: Tensor, y0: Tensor, rng: np.random.Generator | None = None) -> None:
        """Fit the target's part (if its data changed) and condition on everything.

        With fewer than 2 target observations nothing is fitted: the target is taken to be the
        sources' mixture by prior weight ``w`` (``B[0, 1:] = B_sources w``, a little extra
        variance of its own), so the posterior mean is the sources' weighted prediction.
        """
        key = data_key(x0, y0)
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
            self.w = torch.linalg.solve_triangular(
                self.l_ss, (a * self.b[self.ts][None, :]).T, upper=False
            )  # `ns x n0`
            s = self.b00 * self.kernel(x0, x0) - self.w.T @ self.w
            s.diagonal().add_(fit.noise)
            self.l_s, _ = _cholesky(s)
            z0 = torch.linalg.solve_triangular(self.l_s, (y0 - fit.mean - self.w.T @ self.z_s)[:, None], upper=False)[
                :, 0
            ]
            alpha0 = torch.linalg.solve_triangular(self.l_s.T, z0[:, None], upper=True)[:, 0]
            alpha_s = torch.linalg.solve_triangular(self.l_ss.T, (self.z_s - self.w @ alpha0)[:, None], upper=True)[
                :, 0
            ]
            self.train_x = torch.cat([self.xs, x0])
            self.coef = torch.cat([alpha_s * self.b[self.ts], self.b00 * alpha0])
        self.x0, self.y0 = x0, y0
        self.version = next_version()

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

    @property
    def target_weight(self) -> None:
        """None: the target's share is not one number here (see :meth:`task_covariance`)."""
        return None

    def prior_bound(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """A free upper bound of :meth:`variance`: the prior variance (at least 1e-12)."""
        return np.full(len(rows), max(self.prior_var, 1e-12))

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
            noise = torch.cat(
                [
                    torch.full((n0,), self.fit.noise, dtype=DTYPE),
                    torch.as_tensor(self.source_fit.noise, dtype=DTYPE)[self.ts],
                ]
            )[keep]
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
        noise = torch.cat(
            [
                torch.full((self.x0.shape[0],), self.fit.noise, dtype=DTYPE),
                torch.as_tensor(self.source_fit.noise, dtype=DTYPE)[self.ts],
            ]
        )
        model = MultiTaskGP(
            torch.cat([x, tasks[:, None]], 1),
            y[:, None],
            task_feature=-1,
            train_Yvar=noise[:, None],
            outcome_transform=None,
            task_covar_prior=None,
            output_tasks=[0],
        )
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
