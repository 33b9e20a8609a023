"""The copula prior model of ``bo``'s warm start: one forest over all sources, a GP on the residuals.

CTS / CGP of Salinas, Shen & Perrone (2020, "A quantile-based approach for hyperparameter
transfer learning") as a :class:`~workbench.strategy.bo.transfer_model.TransferModel`: every
source's values are already per-task normal scores of their ranks (the strategy's ``transform``,
``"rank"`` by default: the Gaussian copula), so they are comparable across tasks and pooled
as they are. One random forest over the architecture features of all sources' observations
predicts them: the prior mean ``m(x)`` of the target. The target part is an exact GP on the
residuals of the target's own transformed values from ``w m``; the posterior is
``w m(x) + GP mean`` with the GP's variance. Unlike :mod:`.rgpe`, which trusts one source model at a
time by how it ranks the target, the forest learns what all sources agree on (a region of the
space that is good everywhere) and the residual GP corrects it where the target disagrees.

The trust ``w`` in the forest is RGPE's ranking weight (:func:`~workbench.strategy.bo.rgpe.rgpe_weights`)
of the forest against a GP on the target's own values: the share of bootstrap samples of the
target's observations on which the forest mis-ranks the fewest pairs, 0 when it ranks the
target worse than the target's own (leave-pair-out) model or no better than chance. ``w = 1``
before the target has 2 observations. With ``w = 0`` the model is the target's own GP: cold
BO's model. ``trust=False`` keeps ``w = 1`` (CTS's CGP).

:class:`CopulaPrior` is the ``transfer="copula"`` option (opt-in: on NAS-Bench-Graph, 40 seeds,
evaluations to the top 1% against cold BO, geometric mean 0.94 with evolution sources and 0.85
with random-search ones, never worse, against RGPE's 0.91 and 0.81; issue 19's fourth session in
``benchmarks/results/transfer.md``). Deterministic: the forest's seed is
fixed, the GP fit starts from fixed values. The forest's predictions on a candidate set are
cached on it (the whole pool of a tabular space: once per search).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from workbench.strategy.bo.model import DTYPE, FitSettings, GPModel, KernelLayout
from workbench.strategy.bo.pool_kernel import Candidates, gp_pool_mean, gp_subset_bound, gp_variance
from workbench.strategy.bo.rgpe import leave_pair_out_wrong, rgpe_weights, wrong_pairs
from workbench.strategy.bo.sources import PreparedSource, prior_weights
from workbench.strategy.bo.transfer_model import believed_copy, data_key, next_version

__all__ = ["FOREST_SEED", "CopulaPrior", "fit_forest"]

#: The forest's fixed seed (its bootstrap samples and feature draws).
FOREST_SEED = 0


def fit_forest(x: np.ndarray, y: np.ndarray, trees: int = 100, seed: int = FOREST_SEED):
    """A scikit-learn ``RandomForestRegressor`` of ``y`` on ``x`` (CTS's settings: 100 trees,
    ``min_samples_leaf=3``, ``max_features=0.5``), single-threaded and seeded."""
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(
        n_estimators=trees, min_samples_leaf=3, max_features=0.5, random_state=seed, n_jobs=1
    ).fit(x, y)


class CopulaPrior:
    """Prior mean from a forest over all sources' copula values, GP on the target's residuals.

    Args:
        sources: The prepared sources (values per task already transformed, e.g. normal scores).
        layout: Kernel layout of the residual GP.
        settings: Its hyperparameter fit settings.
        trees: Trees of the forest.
        trust: Weigh the forest by how it ranks the target's observations (else weight 1).
        n_bootstrap: Bootstrap samples of that ranking.
    """

    name = "copula"

    def __init__(
        self,
        sources: Sequence[PreparedSource],
        layout: KernelLayout,
        settings: FitSettings,
        trees: int = 100,
        trust: bool = True,
        n_bootstrap: int = 256,
    ) -> None:
        self.sources = list(sources)
        self.layout = layout
        self.settings = settings
        self.trust = bool(trust)
        self.n_bootstrap = int(n_bootstrap)
        #: The forest's current weight ``w`` in the mean.
        self.weight = 1.0
        x = np.concatenate([s.x.numpy() for s in self.sources])
        y = np.concatenate([s.y.numpy() for s in self.sources])
        self.forest = fit_forest(x, y, trees)
        #: Fits of the source part (the one forest).
        self.source_fits = 1
        self.target: GPModel | None = None
        self.version = next_version()
        self._key: tuple | None = None

    # -- the prior ------------------------------------------------------------------------------------
    def prior_mean(self, x: Tensor | np.ndarray) -> np.ndarray:
        """The forest's prediction at feature rows ``x`` (`n`)."""
        x = np.asarray(x.numpy() if isinstance(x, Tensor) else x, dtype=np.float64)
        return self.forest.predict(x) if len(x) else np.zeros(0)

    def _prior_all(self, cands: Candidates) -> np.ndarray:
        if "copula-prior" not in cands.cache:
            cands.cache["copula-prior"] = self.prior_mean(cands.x)
        return cands.cache["copula-prior"]

    # -- fitting ----------------------------------------------------------------------------------------
    def update(self, x0: Tensor, y0: Tensor, rng: np.random.Generator) -> None:
        """Fit the forest's weight and the residual GP on the target's observations (no-op if
        unchanged); ``rng`` draws the weight's bootstrap samples."""
        key = data_key(x0, y0)
        if key == self._key:
            return
        self._key = key
        self.version = next_version()
        self.weight = 1.0
        if x0.shape[0] == 0:
            self.target = None
            return
        prior = self.prior_mean(x0)
        if self.trust and x0.shape[0] >= 2:
            own = GPModel.fit(x0, y0, self.layout, self.settings)
            y = y0.numpy()
            wrong = np.concatenate([wrong_pairs(prior[None], y), leave_pair_out_wrong(own)[None]])
            weights, _ = rgpe_weights(wrong, y, rng, self.n_bootstrap)
            self.weight = float(weights[0])
            if self.weight == 0.0:
                self.target = own
                return
        resid = y0 - self.weight * torch.as_tensor(prior, dtype=DTYPE)
        self.target = GPModel.fit(x0, resid, self.layout, self.settings)

    def fantasize(self, x: Tensor) -> CopulaPrior:
        """A copy whose residual GP also holds ``x`` at its posterior mean (kriging believer)."""
        if self.target is None or x.shape[0] == 0:
            return self
        return believed_copy(self, x)

    @property
    def has_target(self) -> bool:
        """True once the residual GP has at least 2 target observations."""
        return self.target is not None and self.target.x.shape[0] >= 2

    @property
    def target_weight(self) -> float:
        """``1 - w``: the share of the prediction that is the target's own."""
        return 1.0 - self.weight

    # -- predictions ----------------------------------------------------------------------------------
    @property
    def prior_var(self) -> float:
        """The residual GP's prior variance (1 before the target has data)."""
        return self.target.prior_var if self.target is not None else 1.0

    def mean(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """The forest's weighted mean plus the residual GP's mean at candidate ``rows``."""
        out = self.weight * self._prior_all(cands)[rows]
        if self.target is not None:
            key = ("copula-target", self.version)
            if cands.cache.get("copula-target-key") != key:
                cands.cache["copula-target-key"] = key
                cands.cache["copula-target"] = gp_pool_mean(self.target, cands)
            out += cands.cache["copula-target"][rows]
        return out

    def variance(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """The residual GP's variance at candidate ``rows``."""
        if self.target is None:
            return np.full(len(rows), self.prior_var)
        return gp_variance(self.target, cands.x[torch.as_tensor(rows)]).numpy()

    def variance_bound(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """Upper bound of :meth:`variance`: the residual GP given its best 64 points."""
        if self.target is None:
            return np.full(len(rows), self.prior_var)
        return gp_subset_bound(self.target)(cands.x[torch.as_tensor(rows)])

    def prior_bound(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """The residual GP's prior variance at every row."""
        return np.full(len(rows), self.prior_var)

    def source_weights(self) -> dict[str, float]:
        """``task -> w x prior weight`` (the forest pools the sources; it does not weight them)."""
        return {s.task: self.weight * float(w) for s, w in zip(self.sources, prior_weights(self.sources))}
