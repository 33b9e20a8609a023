"""RGPE: the ranking-weighted Gaussian process ensemble of Feurer, Letham & Bakshy (2018).

One exact GP per source (:class:`~workbench.strategy.bo.model.GPModel`, fitted once per search)
and one on the target, all on per-task transformed outcomes. The weight of each model is the
fraction of bootstrap resamples of the target's observations on which it mis-ranks the fewest
pairs (:func:`rgpe_weights`). The target model is judged on held-out predictions:
*leave-pair-out* rather than the paper's leave-one-out, whose predictions rank a weakly informed
model's own points backwards and hand the weight to unrelated sources while the target has few
points (:func:`leave_pair_out_wrong`). A source that ranks the target worse than the target's own
model (median loss), or clearly no better than chance, gets weight 0. Ensemble mean
``sum w_m mu_m``, variance ``sum w_m^2 s_m^2``. Robust against negative transfer: ``bo``'s
default ``transfer``.

:class:`RGPE` implements :class:`~workbench.strategy.bo.transfer_model.TransferModel`; the
sources' predictions on a candidate pool are cached on it (:mod:`.pool_kernel`). Deterministic:
the bootstrap samples come from the generator the proposer passes to :meth:`RGPE.update`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from workbench.strategy.bo.consensus import source_gps, source_pool_mean
from workbench.strategy.bo.model import FitSettings, GPModel, KernelLayout, single_threaded
from workbench.strategy.bo.pool_kernel import Candidates, gp_pool_mean, gp_subset_bound, gp_variance
from workbench.strategy.bo.sources import PreparedSource, prior_weights
from workbench.strategy.bo.transfer_model import believed_copy, data_key, next_version

__all__ = ["RGPE", "leave_pair_out_wrong", "ranking_losses", "rgpe_weights", "wrong_pairs"]


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


def rgpe_weights(
    wrong: np.ndarray, y: np.ndarray, rng: np.random.Generator, n_bootstrap: int = 256, dilution: float = 50.0
) -> tuple[np.ndarray, np.ndarray]:
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
        backwards = (
            np.nanpercentile(fractions[:, :-1], 10, axis=0) >= 0.5
            if np.isfinite(fractions).any()
            else np.zeros(m - 1, dtype=bool)
        )
    drop = (np.median(losses[:, :-1], axis=0) > target_cut) | backwards
    weights[:-1][drop] = 0.0
    total = weights.sum()
    weights = weights / total if total > 0 else np.eye(len(weights))[-1]
    return weights, median_fraction


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
        gps: The sources' GPs, already fitted (:func:`~workbench.strategy.bo.consensus.source_gps`,
            shared with the proposer's :class:`~workbench.strategy.bo.consensus.SourceConsensus`);
            None: fitted here.
    """

    name = "rgpe"

    def __init__(
        self,
        sources: Sequence[PreparedSource],
        layout: KernelLayout,
        settings: FitSettings,
        n_bootstrap: int = 256,
        dilution: float = 50.0,
        variance: str = "linear",
        pseudo_count: float | None = None,
        gps: Sequence[GPModel] | None = None,
    ) -> None:
        if variance not in ("mixture", "linear"):
            raise ValueError(f"RGPE variance must be 'mixture' or 'linear', got {variance!r}")
        self.variance_kind = variance
        self.pseudo_count = pseudo_count
        self.sources = list(sources)
        self.layout = layout
        self.settings = settings
        self.n_bootstrap = int(n_bootstrap)
        self.dilution = float(dilution)
        self.source_gps = list(gps) if gps is not None else source_gps(self.sources, layout, settings)
        #: Source GP fits so far (one per source, ever; none here when ``gps`` were given).
        self.source_fits = 0 if gps is not None else len(self.source_gps)
        self.target: GPModel | None = None
        self.weights = np.append(prior_weights(self.sources), 0.0)
        self.losses = np.full(len(self.sources) + 1, np.nan)
        self.ranked = False
        self.version = next_version()
        self._key: tuple | None = None

    # -- fitting ----------------------------------------------------------------------------------
    def update(self, x0: Tensor, y0: Tensor, rng: np.random.Generator) -> None:
        """Fit the target GP and the weights on the target's observations (no-op if unchanged).

        With fewer than 2 observations there is nothing to rank: the sources keep their prior
        weights and the target model none.
        """
        key = data_key(x0, y0)
        if key == self._key:
            return
        self._key = key
        n0 = x0.shape[0]
        self.target = GPModel.fit(x0, y0, self.layout, self.settings) if n0 else None
        self.version = next_version()
        self.ranked = n0 >= 2
        if not self.ranked:
            self.weights = np.append(prior_weights(self.sources), 0.0)
            self.losses = np.full(len(self.sources) + 1, np.nan)
            return
        preds = (
            np.stack([gp.predict_mean(x0).numpy() for gp in self.source_gps]) if self.source_gps else np.zeros((0, n0))
        )
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
        return believed_copy(self, x)

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
            return source_pool_mean(cands, gp)
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
