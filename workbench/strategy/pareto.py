"""Pareto dominance for multi-objective search: fronts, non-dominated sorting, crowding distance.

Points are `n x m` arrays (``n`` candidates, ``m`` objectives). Every function takes optional
``directions``, one per objective: ``"max"`` / ``+1`` (larger is better, the default) or
``"min"`` / ``-1`` (smaller is better). Point ``a`` *dominates* ``b`` when it is at least as good
in every objective and strictly better in one; equal points do not dominate each other (both
stay on a front).

Objective names in specs such as ``--objectives val_accuracy,-latency`` are read by
:func:`parse_objectives`: a leading ``-`` means minimise.

Used by multi-objective evolution (NSGA-II selection) and by the BO strategies (reference points,
the recorded front). Pure numpy; nothing heavy is imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Direction = str | int | float


@dataclass(frozen=True)
class Objective:
    """One objective of a multi-objective search.

    Attributes:
        key: The name in ``Observation.objectives`` (e.g. ``"latency"``).
        sign: ``+1`` to maximise, ``-1`` to minimise.
    """

    key: str
    sign: int = 1

    @property
    def direction(self) -> str:
        """``"max"`` or ``"min"``."""
        return "max" if self.sign > 0 else "min"

    def __str__(self) -> str:
        return self.key if self.sign > 0 else f"-{self.key}"


def parse_objectives(specs: Sequence[str] | str) -> list[Objective]:
    """Read objective specs: ``"val_accuracy"`` (maximise), ``"-latency"`` (minimise).

    Args:
        specs: A list of names, or one comma-separated string.

    Returns:
        One :class:`Objective` per spec, in order.

    Raises:
        ValueError: On an empty name or a repeated objective.
    """
    if isinstance(specs, str):
        specs = [s for s in (part.strip() for part in specs.split(",")) if s]
    out: list[Objective] = []
    for spec in specs:
        if not isinstance(spec, str):
            raise ValueError(f"objective must be a name such as 'val_accuracy' or '-latency'; got {spec!r}")
        text = spec.strip()
        sign = 1
        if text.startswith("-"):
            sign, text = -1, text[1:].strip()
        elif text.startswith("+"):
            text = text[1:].strip()
        if not text:
            raise ValueError(f"objective name is empty in {spec!r}")
        out.append(Objective(text, sign))
    keys = [o.key for o in out]
    if len(set(keys)) != len(keys):
        raise ValueError(f"objectives must be distinct; got {list(specs)}")
    return out


def objective_matrix(
    objectives: Sequence[Mapping[str, float]], specs: Sequence[Objective]
) -> tuple[np.ndarray, np.ndarray]:
    """Oriented values (every column maximised) of objective mappings.

    Args:
        objectives: One mapping per candidate (e.g. ``Observation.objectives``).
        specs: The objectives to read, with their directions.

    Returns:
        ``(values, ok)``: `n x m` float64 values multiplied by each objective's sign, and an `n`
        bool mask of rows where every objective is present and finite (other rows hold NaN).
    """
    n, m = len(objectives), len(specs)
    values = np.full((n, m), np.nan)
    for r, obj in enumerate(objectives):
        for c, spec in enumerate(specs):
            v = obj.get(spec.key) if obj is not None else None
            if v is not None:
                try:
                    values[r, c] = spec.sign * float(v)
                except (TypeError, ValueError):
                    pass
    ok = np.all(np.isfinite(values), axis=1) if m else np.ones(n, dtype=bool)
    return values, ok


def _signs(directions: Sequence[Direction] | None, m: int) -> np.ndarray:
    if directions is None:
        return np.ones(m)
    if len(directions) != m:
        raise ValueError(f"need one direction per objective ({m}); got {len(directions)}")
    out = np.empty(m)
    for i, d in enumerate(directions):
        if isinstance(d, str):
            if d.lower() in ("max", "maximize", "maximise"):
                out[i] = 1.0
            elif d.lower() in ("min", "minimize", "minimise"):
                out[i] = -1.0
            else:
                raise ValueError(f"direction must be 'max' or 'min'; got {d!r}")
        elif d in (1, -1):
            out[i] = float(d)
        else:
            raise ValueError(f"direction must be 'max', 'min', +1 or -1; got {d!r}")
    return out


def oriented(
    points: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Direction] | None = None
) -> np.ndarray:
    """``points`` as a float64 `n x m` array with every objective turned into a maximisation.

    Raises:
        ValueError: On a wrong shape, a bad direction, or NaN values.
    """
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, len(directions) if directions is not None else 0)
    if arr.ndim != 2:
        raise ValueError(f"points must be an `n x m` array; got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError("points must not contain NaN")
    return arr * _signs(directions, arr.shape[1])


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[Direction] | None = None) -> bool:
    """True when point ``a`` dominates point ``b``."""
    pa, pb = oriented([a, b], directions)
    return bool(np.all(pa >= pb) and np.any(pa > pb))


def _front_mask(arr: np.ndarray) -> np.ndarray:
    """Mask of the non-dominated rows of an oriented (maximised) array."""
    n = len(arr)
    mask = np.ones(n, dtype=bool)
    if n == 0:
        return mask
    # visit candidates best-sum first: they remove most of the others early
    order = np.argsort(-arr.sum(axis=1), kind="stable")
    for i in order:
        if not mask[i]:
            continue
        p = arr[i]
        dominated = np.all(p >= arr, axis=1) & np.any(p > arr, axis=1)
        mask &= ~dominated
    return mask


def pareto_front(
    points: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Direction] | None = None
) -> np.ndarray:
    """Indices (ascending) of the points no other point dominates.

    Args:
        points: `n x m` objective values.
        directions: One per objective, ``"max"`` (default) or ``"min"``.

    Returns:
        An int64 array of row indices.
    """
    arr = oriented(points, directions)
    return np.flatnonzero(_front_mask(arr))


def nondominated_sort(
    points: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Direction] | None = None
) -> np.ndarray:
    """Front rank of every point (NSGA-II): 0 = the Pareto front, 1 = the front once 0 is removed, ...

    Args:
        points: `n x m` objective values.
        directions: One per objective, ``"max"`` (default) or ``"min"``.

    Returns:
        An int64 array `n` of ranks.
    """
    arr = oriented(points, directions)
    ranks = np.full(len(arr), -1, dtype=np.int64)
    left = np.arange(len(arr))
    rank = 0
    while len(left):
        mask = _front_mask(arr[left])
        ranks[left[mask]] = rank
        left = left[~mask]
        rank += 1
    return ranks


def crowding_distance(
    points: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Direction] | None = None
) -> np.ndarray:
    """NSGA-II crowding distance of each point within the given set (usually one front).

    Boundary points of each objective get ``inf``; the others the sum over objectives of the
    normalised gap between their neighbours. Ties in an objective are broken by index, so the
    result is deterministic.

    Returns:
        A float64 array `n`.
    """
    arr = oriented(points, directions)
    n, m = arr.shape
    dist = np.zeros(n)
    if n <= 2:
        dist[:] = np.inf
        return dist
    for c in range(m):
        order = np.lexsort((np.arange(n), arr[:, c]))
        col = arr[order, c]
        span = col[-1] - col[0]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0 and np.isfinite(span):
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


def hypervolume_2d(
    points: np.ndarray | Sequence[Sequence[float]],
    reference: Sequence[float],
    directions: Sequence[Direction] | None = None,
) -> float:
    """Area dominated by 2-objective points and bounded by ``reference`` (same directions).

    Points that do not dominate the reference point contribute nothing.
    """
    if len(points) == 0:
        return 0.0
    arr = oriented(points, directions)
    if arr.shape[1] != 2:
        raise ValueError(f"hypervolume_2d needs 2 objectives; got {arr.shape[1]}")
    ref = oriented([reference], directions)[0]
    arr = arr[np.all(arr > ref, axis=1)]
    if not len(arr):
        return 0.0
    arr = arr[_front_mask(arr)]
    arr = arr[np.argsort(-arr[:, 0], kind="stable")]  # first objective descending
    area, y_prev = 0.0, ref[1]
    for x, y in arr:
        if y > y_prev:
            area += (x - ref[0]) * (y - y_prev)
            y_prev = y
    return float(area)
