"""Fidelities: cheaper, approximate evaluations of a genotype, and what they cost.

A :class:`Fidelity` says how much of a full training one evaluation gets:

* ``epochs``: passes over the training data (None: the task's ``[training] epochs``);
* ``data_fraction``: the fraction of the training split used (a fixed, nested, class-balanced
  subset: every larger fraction contains the smaller ones);
* ``resolution``: the input size as a fraction of the full size along every spatial axis
  (``0.5`` = downsampled by a factor 2; images `H x W` and signals `L` alike, area-averaged);
* ``width_mult``: multiplier of every conv / dense width of the network (at least one channel).

``start_epoch`` is not part of the fidelity's identity: it says how many of ``epochs`` were
already trained by the weights the evaluation starts from (a promotion that continues the
lower-fidelity trial's training), so only ``epochs - start_epoch`` epochs are trained.

A task's ``[fidelity]`` table gives the range a scheduler may use (:class:`FidelitySpace`)::

    [fidelity]
    epochs = [1, 27]          # [min, max]; max defaults to [training] epochs
    data_fraction = [0.25, 1.0]
    resolution = [0.5, 1.0]
    width_mult = [0.5, 1.0]
    eta = 3                   # reduction factor between rungs

A single number instead of a pair fixes that setting for every trial of the task. The cost
model (:meth:`Fidelity.cost`) is the training compute relative to a full training::

    cost = (epochs - start_epoch) / full_epochs * data_fraction * resolution**dims * width_mult**2

(convolutions and dense layers cost about ``width**2``; the spatial size scales every layer).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from workbench.errors import TaskError, UserError

#: Params ``fidelity.<field>`` carry a trial's fidelity for the MLflow runs table (the same prefix
#: as :data:`metastore.schema.FIDELITY_PARAM_PREFIX`, which this layer may not import; the record
#: itself goes to the ``nasw.fidelity`` tag, :data:`metastore.schema.TAG_FIDELITY`).
PARAM_PREFIX = "fidelity."
_KNOBS = ("epochs", "data_fraction", "resolution", "width_mult")


@dataclass(frozen=True)
class Fidelity:
    """How much of a full training one evaluation gets (see the module docstring).

    Attributes:
        epochs: Training epochs at this fidelity; None: the trainer's configured epochs.
        data_fraction: Fraction of the training split, in ``(0, 1]``.
        resolution: Input size as a fraction of the full size per spatial axis, in ``(0, 1]``.
        width_mult: Width multiplier of the network, ``> 0``.
        start_epoch: Epochs already trained by the starting weights (continued training).
    """

    epochs: int | None = None
    data_fraction: float = 1.0
    resolution: float = 1.0
    width_mult: float = 1.0
    start_epoch: int = 0

    def __post_init__(self) -> None:
        if self.epochs is not None and (
            isinstance(self.epochs, bool) or int(self.epochs) != self.epochs or self.epochs < 1
        ):
            raise UserError(f"fidelity epochs must be a positive integer, got {self.epochs!r}")
        for name in ("data_fraction", "resolution"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= 1:
                raise UserError(f"fidelity {name} must be a number in (0, 1], got {v!r}")
        if (
            not isinstance(self.width_mult, (int, float))
            or isinstance(self.width_mult, bool)
            or not self.width_mult > 0
        ):
            raise UserError(f"fidelity width_mult must be a positive number, got {self.width_mult!r}")
        if int(self.start_epoch) != self.start_epoch or self.start_epoch < 0:
            raise UserError(f"fidelity start_epoch must be a non-negative integer, got {self.start_epoch!r}")
        if self.epochs is not None and self.start_epoch >= self.epochs:
            raise UserError(f"fidelity start_epoch ({self.start_epoch}) must be below epochs ({self.epochs})")

    # -- identity ---------------------------------------------------------------------------
    def knobs(self) -> dict[str, Any]:
        """The four settings that define the fidelity (``start_epoch`` left out)."""
        return {k: getattr(self, k) for k in _KNOBS}

    def same_level(self, other: Fidelity) -> bool:
        """True when both fidelities train the same way (``start_epoch`` ignored)."""
        return self.knobs() == other.knobs()

    def same_model(self, other: Fidelity) -> bool:
        """True when networks at both fidelities have the same shapes (width and input size),
        so weights trained at one can continue training at the other."""
        return self.width_mult == other.width_mult and self.resolution == other.resolution

    # -- cost -------------------------------------------------------------------------------
    def cost(self, full_epochs: int, dims: int = 1) -> float:
        """Training compute relative to a full training of ``full_epochs`` epochs at full data,
        resolution and width, for inputs with ``dims`` spatial axes."""
        epochs = full_epochs if self.epochs is None else self.epochs
        return (
            max(0, epochs - self.start_epoch)
            / max(1, full_epochs)
            * self.data_fraction
            * self.resolution ** max(0, int(dims))
            * self.width_mult**2
        )

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field (JSON-able)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Fidelity:
        """Inverse of :meth:`to_dict`; extra keys (``full``, ``rung``, ...) are ignored."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if kw.get("epochs") is not None:
            kw["epochs"] = int(kw["epochs"])
        if "start_epoch" in kw:
            kw["start_epoch"] = int(kw["start_epoch"])
        for k in ("data_fraction", "resolution", "width_mult"):
            if k in kw:
                kw[k] = float(kw[k])
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Fidelity:
        return cls.from_dict(json.loads(text))

    def record(self, *, full: bool, cost: float | None = None, **extra: Any) -> dict[str, Any]:
        """What a trial records in its ``nasw.fidelity`` tag: the fields, ``full`` (measured at the
        task's full fidelity), the relative ``cost`` and scheduler details (``rung``, ...)."""
        out = {**self.to_dict(), "full": bool(full)}
        if cost is not None:
            out["cost"] = round(float(cost), 6)
        out.update(extra)
        return out

    def params(self) -> dict[str, Any]:
        """``fidelity.<field>`` params for the run (the MLflow runs table)."""
        return {f"{PARAM_PREFIX}{k}": v for k, v in self.to_dict().items() if v is not None}

    def __str__(self) -> str:
        parts = [f"{self.epochs} epochs" if self.epochs is not None else "full epochs"]
        if self.start_epoch:
            parts[0] += f" (from epoch {self.start_epoch})"
        if self.data_fraction != 1:
            parts.append(f"{self.data_fraction:g} of the data")
        if self.resolution != 1:
            parts.append(f"resolution x{self.resolution:g}")
        if self.width_mult != 1:
            parts.append(f"width x{self.width_mult:g}")
        return ", ".join(parts)


def stopped_record(
    planned: Mapping[str, Any], epochs_done: int, planned_epochs: int | None, rule: str
) -> dict[str, Any]:
    """The ``nasw.fidelity`` record of a trial stopped early after ``epochs_done`` epochs: not
    full, the epochs it trained, the epochs it was planned for, and its ``cost`` scaled down."""
    out = dict(planned)
    target = planned_epochs or out.get("epochs") or epochs_done
    out.update(
        epochs=int(epochs_done),
        planned_epochs=int(target),
        full=False,
        stopped=rule,
        cost=round(float(out.get("cost", 1.0)) * epochs_done / max(1, int(target)), 6),
    )
    return out


@dataclass(frozen=True)
class FidelitySpace:
    """The range of fidelities of a task and the rungs a scheduler uses.

    Attributes:
        low: The cheapest fidelity.
        high: The full fidelity (``high.epochs`` is the task's full training).
        eta: Reduction factor between rungs (``>= 2``).
        dims: Spatial axes of the task's inputs (for the cost model).
    """

    low: Fidelity
    high: Fidelity
    eta: int = 3
    dims: int = 1

    def __post_init__(self) -> None:
        if self.low.epochs is None or self.high.epochs is None:
            raise UserError("a fidelity space needs epochs at both ends")
        for k in _KNOBS:
            if getattr(self.low, k) > getattr(self.high, k):
                raise UserError(
                    f"fidelity {k}: the minimum {getattr(self.low, k)} is above the maximum {getattr(self.high, k)}"
                )
        if isinstance(self.eta, bool) or int(self.eta) != self.eta or self.eta < 2:
            raise UserError(f"fidelity eta must be an integer >= 2, got {self.eta!r}")

    @property
    def full_epochs(self) -> int:
        return int(self.high.epochs)  # type: ignore[arg-type]

    def cost(self, f: Fidelity) -> float:
        """:meth:`Fidelity.cost` relative to this space's full fidelity (``high`` costs 1)."""
        return f.cost(self.full_epochs, self.dims) / self.high.cost(self.full_epochs, self.dims)

    @property
    def n_rungs(self) -> int:
        """``floor(log_eta(cost(high) / cost(low))) + 1`` (1 when nothing varies)."""
        ratio = self.cost(self.high) / max(self.cost(self.low), 1e-12)
        return int(math.floor(math.log(max(ratio, 1.0)) / math.log(self.eta) + 1e-9)) + 1

    def at(self, t: float) -> Fidelity:
        """The fidelity a fraction ``t`` of the way from ``low`` (0) to ``high`` (1), every setting
        interpolated geometrically (epochs rounded, never below ``low.epochs``)."""
        t = min(1.0, max(0.0, float(t)))

        def geo(a: float, b: float) -> float:
            return a * (b / a) ** t if a > 0 else b

        epochs = max(int(self.low.epochs), int(round(geo(float(self.low.epochs), float(self.high.epochs)))))  # type: ignore[arg-type]
        return Fidelity(
            epochs=epochs,
            data_fraction=round(geo(self.low.data_fraction, self.high.data_fraction), 6),
            resolution=round(geo(self.low.resolution, self.high.resolution), 6),
            width_mult=round(geo(self.low.width_mult, self.high.width_mult), 6),
        )

    def rungs(self, n: int | None = None) -> list[Fidelity]:
        """The fidelities of ``n`` rungs (default :attr:`n_rungs`), geometrically spaced in cost:
        rung ``k`` of ``K`` is :meth:`at` ``(k / (K - 1))``; the last is ``high``."""
        n = self.n_rungs if n is None else int(n)
        if n <= 1:
            return [self.high]
        out = [self.at(k / (n - 1)) for k in range(n - 1)] + [self.high]
        return out

    def is_full(self, f: Fidelity) -> bool:
        """True when ``f`` trains like the full fidelity."""
        return f.same_level(self.high)

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low.to_dict(), "high": self.high.to_dict(), "eta": self.eta, "dims": self.dims}


def _pair(table: Mapping[str, Any], key: str, default_high: float, where: str) -> tuple[float, float]:
    value = table.get(key, default_high)
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise TaskError(f"{where}: [fidelity] {key} must be a number or a pair [min, max], got {list(value)!r}")
        lo, hi = value
    else:
        lo = hi = value
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TaskError(f"{where}: [fidelity] {key} must hold numbers, got {v!r}")
    if lo > hi:
        raise TaskError(f"{where}: [fidelity] {key}: the minimum {lo} is above the maximum {hi}")
    return float(lo), float(hi)


def fidelity_space(
    table: Mapping[str, Any] | None, full_epochs: int, dims: int = 1, where: str = "task"
) -> FidelitySpace:
    """The :class:`FidelitySpace` of a task's ``[fidelity]`` table.

    Without the table (or without ``epochs`` in it), epochs range from
    ``max(1, round(full_epochs / eta**3))`` to ``full_epochs`` (the ``[training] epochs``) and
    everything else is fixed at full.

    Args:
        table: The task's ``[fidelity]`` table (may be empty).
        full_epochs: The task's ``[training] epochs``.
        dims: Spatial axes of the inputs (1 for signals, 2 for images).
        where: Task name for error messages.

    Raises:
        TaskError: A malformed table (what was expected and what was found).
    """
    table = dict(table or {})
    unknown = set(table) - {*_KNOBS, "eta"}
    if unknown:
        raise TaskError(
            f"{where}: unknown [fidelity] keys {sorted(unknown)}; expected some of {sorted({*_KNOBS, 'eta'})}"
        )
    eta = table.get("eta", 3)
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise TaskError(f"{where}: [fidelity] eta must be an integer >= 2, got {eta!r}")
    if "epochs" in table:
        lo_e, hi_e = _pair(table, "epochs", full_epochs, where)
        if lo_e != int(lo_e) or hi_e != int(hi_e) or lo_e < 1:
            raise TaskError(f"{where}: [fidelity] epochs must be positive integers, got {table['epochs']!r}")
    else:
        lo_e, hi_e = float(max(1, round(full_epochs / eta**3))), float(full_epochs)
    knobs = {}
    for key in ("data_fraction", "resolution"):
        lo, hi = _pair(table, key, 1.0, where)
        if not (0 < lo <= 1 and 0 < hi <= 1):
            raise TaskError(f"{where}: [fidelity] {key} must be in (0, 1], got {table[key]!r}")
        knobs[key] = (lo, hi)
    lo_w, hi_w = _pair(table, "width_mult", 1.0, where)
    if lo_w <= 0:
        raise TaskError(f"{where}: [fidelity] width_mult must be positive, got {table['width_mult']!r}")
    try:
        return FidelitySpace(
            low=Fidelity(int(lo_e), knobs["data_fraction"][0], knobs["resolution"][0], lo_w),
            high=Fidelity(int(hi_e), knobs["data_fraction"][1], knobs["resolution"][1], hi_w),
            eta=int(eta),
            dims=int(dims),
        )
    except UserError as exc:
        raise TaskError(f"{where}: [fidelity]: {exc}") from None


def full_fidelity(space: FidelitySpace | None) -> Fidelity | None:
    """The full fidelity of a space (None: none)."""
    return None if space is None else space.high


def continued(f: Fidelity, parent: Fidelity | None) -> Fidelity:
    """``f`` continuing from weights trained at ``parent`` (``start_epoch`` = the parent's epochs)
    when the networks have the same shapes and the parent trained fewer epochs; else ``f``
    from scratch."""
    if parent is None or parent.epochs is None or f.epochs is None:
        return replace(f, start_epoch=0)
    if f.same_model(parent) and parent.epochs < f.epochs and parent.data_fraction <= f.data_fraction:
        return replace(f, start_epoch=int(parent.epochs))
    return replace(f, start_epoch=0)


__all__: Sequence[str] = (
    "Fidelity",
    "FidelitySpace",
    "continued",
    "fidelity_space",
    "full_fidelity",
    "stopped_record",
)
