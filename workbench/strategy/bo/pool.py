"""Candidate pools that ``bo`` maximises its acquisition over, and the features of genotypes.

* :class:`FullPool`: every member of a finite tabular space that exposes ``pool()`` and
  ``pool_encoding(encoding)`` (NAS-Bench-Graph: 26,206 architectures), as one cached feature
  matrix; a candidate set is an index array into it.
* :class:`SampledPool`: for the other spaces, a reservoir of random samples that grows with the
  history (drawn from a stream that depends only on the seed, so a replayed search sees the same
  reservoir) plus fresh mutations of the best observations at each ask.

:class:`Featurizer` turns genotypes into the GP's feature rows: the space's encodings side by
side (``"onehot"``, ``"path"``, ...); for joint spaces the hyperparameter columns, which every
encoding repeats, are kept once, at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.errors import UserError
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype


def hyperparameter_columns(space: SearchSpace) -> int:
    """How many trailing encoding columns are continuous hyperparameters (joint spaces), else 0."""
    if getattr(space, "kind", None) == "joint" or space.name.startswith("joint-"):
        from workbench.space.joint import HYPERPARAMETERS

        return len(HYPERPARAMETERS)
    return 0


class Featurizer:
    """Feature rows (`n x d`, float64) of genotypes: the chosen encodings concatenated.

    Args:
        space: The search space.
        encodings: Encoding names, each one of ``space.encodings``.

    Attributes:
        widths: Columns contributed by each encoding (hyperparameter columns excluded).
        n_hyper: Trailing hyperparameter columns (joint spaces), after all encodings.
    """

    def __init__(self, space: SearchSpace, encodings: Sequence[str]) -> None:
        unknown = [e for e in encodings if e not in space.encodings]
        if unknown or not encodings:
            raise UserError(
                f"bo encoding must be among {list(space.encodings)} for space {space.name!r}; got {list(encodings)}"
            )
        self.space = space
        self.encodings = tuple(encodings)
        self.n_hyper = hyperparameter_columns(space)
        self._cache: dict[str, np.ndarray] = {}
        self.widths: tuple[int, ...] = ()

    def __call__(self, gs: Sequence[Genotype]) -> np.ndarray:
        """Features of ``gs`` (`len(gs) x d`)."""
        parts = [
            np.asarray(self.space.encode(list(gs), e), dtype=np.float64).reshape(len(gs), -1) for e in self.encodings
        ]
        h = self.n_hyper
        if h:
            hyper = parts[0][:, -h:]
            parts = [p[:, :-h] for p in parts] + [hyper]
            widths = tuple(p.shape[1] for p in parts[:-1])
        else:
            widths = tuple(p.shape[1] for p in parts)
        if not self.widths:
            self.widths = widths
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def cached(self, gs: Sequence[Genotype]) -> np.ndarray:
        """Like calling, but remembers rows by genotype spec (for the growing history)."""
        missing = [g for g in dict.fromkeys(gs) if g.spec not in self._cache]
        if missing:
            rows = self(missing)
            for g, row in zip(missing, rows):
                self._cache[g.spec] = row
        if not gs:
            raise ValueError("no genotypes to encode")
        return np.stack([self._cache[g.spec] for g in gs])


class FullPool:
    """Every member of a finite space with ``pool()`` / ``pool_encoding()`` (a tabular benchmark).

    Args:
        space: A space with ``pool()``, ``pool_encoding(encoding)`` and ``index_of(g)``.
        encodings: Encodings to concatenate.
    """

    def __init__(self, space: SearchSpace, encodings: Sequence[str]) -> None:
        self.space = space
        self.encodings = tuple(encodings)
        self._features: np.ndarray | None = None

    @staticmethod
    def supports(space: SearchSpace) -> bool:
        """True for spaces that expose a whole, fixed-order pool."""
        return all(callable(getattr(space, a, None)) for a in ("pool", "pool_encoding", "index_of"))

    def members(self) -> list[Genotype]:
        """The pool, in the space's fixed order."""
        return self.space.pool()  # type: ignore[attr-defined]

    def features(self) -> np.ndarray:
        """`N x d` features of the whole pool (cached)."""
        if self._features is None:
            parts = [np.asarray(self.space.pool_encoding(e), dtype=np.float64) for e in self.encodings]  # type: ignore[attr-defined]
            self._features = np.ascontiguousarray(np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0])
        return self._features

    def widths(self) -> tuple[int, ...]:
        """Columns per encoding."""
        return tuple(int(self.space.pool_encoding(e).shape[1]) for e in self.encodings)  # type: ignore[attr-defined]

    def index_of(self, g: Genotype) -> int | None:
        """Pool position of ``g``, or None when it is not a member."""
        try:
            return int(self.space.index_of(g))  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - a foreign genotype is simply not in the pool
            return None

    def available(self, excluded: Sequence[Genotype]) -> np.ndarray:
        """Indices of members not in ``excluded`` (ascending)."""
        mask = np.ones(len(self.members()), dtype=bool)
        for g in excluded:
            i = self.index_of(g)
            if i is not None:
                mask[i] = False
        return np.flatnonzero(mask)


class SampledPool:
    """Random samples plus mutations of the best genotypes, for spaces without a pool.

    The reservoir is the first ``size(n)`` draws of a generator seeded only by ``seed``, where
    ``size`` grows with the number of observations ``n`` up to ``n_samples``: cheap while the
    history is short, and identical for an original and a replayed search.

    Args:
        space: The search space.
        seed: The strategy's seed.
        n_samples: Largest reservoir of random samples.
        n_mutations: Mutations drawn per ask (spread over the best few observations).
        per_observation: Reservoir growth per observation.
    """

    def __init__(
        self, space: SearchSpace, seed: int, n_samples: int = 1000, n_mutations: int = 200, per_observation: int = 20
    ) -> None:
        self.space = space
        self.n_samples = int(n_samples)
        self.n_mutations = int(n_mutations)
        self.per_observation = int(per_observation)
        self._stream = np.random.default_rng([int(seed), 0x5EED])
        self._reservoir: list[tuple[str, Genotype]] = []

    def reservoir(self, n_observations: int) -> list[tuple[str, Genotype]]:
        """``(key, genotype)`` of the first ``size(n_observations)`` samples of the seed's stream."""
        size = min(self.n_samples, 64 + self.per_observation * max(n_observations, 0))
        while len(self._reservoir) < size:
            g = self.space.sample(self._stream)
            self._reservoir.append((g.key, g))
        return self._reservoir[:size]

    def candidates(
        self,
        parents: Sequence[Genotype],
        rng: np.random.Generator,
        excluded: set[str],
        n_observations: int,
    ) -> list[Genotype]:
        """Distinct candidates (by key) outside ``excluded``: mutations of ``parents`` (best
        first, more for the better ones; some two edits away) and the reservoir."""
        out: dict[str, Genotype] = {}
        n_mut = min(self.n_mutations, 16 + 4 * max(n_observations, 0))
        if parents:
            weights = 1.0 / np.arange(1, len(parents) + 1)
            counts = np.floor(n_mut * weights / weights.sum()).astype(int)
            counts[0] += n_mut - counts.sum()
            for parent, count in zip(parents, counts):
                for _ in range(int(count)):
                    child = self.space.mutate(parent, rng)
                    if rng.random() < 0.3:
                        child = self.space.mutate(child, rng)
                    key = child.key
                    if key not in excluded and key not in out:
                        out[key] = child
        for key, g in self.reservoir(n_observations):
            if key not in excluded and key not in out:
                out[key] = g
        return list(out.values())
