"""The contract between the warm-start proposer and its multi-task models.

:class:`TransferModel` is what :class:`~workbench.strategy.bo.transfer.TransferProposer` and
:func:`~workbench.strategy.bo.acquisition.top_log_ei_rows` use of a model of the target task
that also learns from other tasks (sources): :class:`~workbench.strategy.bo.rgpe.RGPE`,
:class:`~workbench.strategy.bo.mtgp.FastMultiTaskGP` and
:class:`~workbench.strategy.bo.copula.CopulaPrior` implement it. A model is built once per
search from the prepared sources (its source part is fitted then and never again); each ask
conditions it on the target's observations (:meth:`TransferModel.update`) and scores candidate
rows of a :class:`~workbench.strategy.bo.pool_kernel.Candidates`, where it may cache per-row
results between asks.

The two helpers below are shared by the implementations: :func:`data_key` (refit only when the
target's data changed) and :func:`next_version` (keys of what a model caches on candidates).
"""

from __future__ import annotations

import copy
import itertools
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from torch import Tensor

if TYPE_CHECKING:
    from workbench.strategy.bo.pool_kernel import Candidates

__all__ = ["TransferModel", "data_key", "next_version"]


@runtime_checkable
class TransferModel(Protocol):
    """A model of the target task warm-started from source tasks (all outcomes transformed
    per task: zero mean, unit variance).

    Attributes:
        name: The ``transfer`` option that selects it (``"rgpe"``, ``"mtgp"``, ``"copula"``).
        source_fits: Fits of the source part so far (they happen once, when it is built).
    """

    name: str
    source_fits: int

    def update(self, x0: Tensor, y0: Tensor, rng: np.random.Generator) -> None:
        """Condition on the target's observations `n0 x d`, `n0` (a no-op when unchanged);
        ``rng`` is the model's only randomness (RGPE's bootstrap)."""
        ...

    def fantasize(self, x: Tensor) -> TransferModel:
        """A copy that also holds target points ``x`` at its posterior mean (kriging believer,
        for batches and pending points); the model itself is unchanged."""
        ...

    @property
    def has_target(self) -> bool:
        """True once the model learnt from the target's observations (before that, it is the
        sources' prior-weighted prediction and the proposer does not maximise LogEI with it)."""
        ...

    @property
    def target_weight(self) -> float | None:
        """The target's own share of the prediction, None where the model has no such number."""
        ...

    @property
    def prior_var(self) -> float:
        """Largest possible posterior variance."""
        ...

    def mean(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """Posterior mean of the target at candidate ``rows``."""
        ...

    def variance(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """Posterior variance of the target at candidate ``rows`` (exact)."""
        ...

    def variance_bound(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """An upper bound of :meth:`variance`, cheaper per row."""
        ...

    def prior_bound(self, cands: Candidates, rows: np.ndarray) -> np.ndarray:
        """A looser upper bound of :meth:`variance` that is nearly free."""
        ...

    def source_weights(self) -> dict[str, float]:
        """``task -> trust`` in each source (RGPE's weights, the ICM's task correlations)."""
        ...


_VERSIONS = itertools.count()


def next_version() -> int:
    """A number never handed out before in this process (a model's state, as a cache key)."""
    return next(_VERSIONS)


def believed_copy(model, x: Tensor):
    """A shallow copy of ``model`` whose ``target`` GP also holds ``x`` at its own posterior mean
    (kriging believer, :meth:`GPModel.believe`), with a new version: how a transfer model with a
    single target GP fantasizes batches and pending points."""
    other = copy.copy(model)
    other.target = model.target.believe(x)
    other.version = next_version()
    other._key = None
    return other


def data_key(x: Tensor, y: Tensor) -> tuple:
    """An exact key of a data set (models refit only when it changes)."""
    return tuple(x.shape), x.numpy().tobytes(), y.numpy().tobytes()
