"""Settings of a supernet training (SPOS, DARTS, GDAS) and of the one-shot estimator, read and
checked once: a bad value is one :class:`~workbench.errors.UserError` naming the setting."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from workbench.errors import UserError
from workbench.nn.supernet import has_supernet
from workbench.space.base import SearchSpace

#: Supernet training methods: uniform single-path (SPOS), softmax mixture (DARTS), hard
#: Gumbel-softmax sampling (GDAS).
SPOS, DARTS, GDAS = "spos", "darts", "gdas"
METHODS: tuple[str, ...] = (SPOS, DARTS, GDAS)
#: The most supernet epochs a setting may ask for (a sanity bound on user input).
MAX_EPOCHS = 1000
#: Options of ``--estimator oneshot`` (given as ``--option KEY=VALUE``; the rest go to the
#: strategy): the supernet's training and the estimate.
ESTIMATOR_OPTIONS: frozenset[str] = frozenset(
    {
        "retrain_top",
        "supernet_epochs",
        "supernet_lr",
        "supernet_batch_size",
        "supernet_fair",
        "bn_recalibrate",
        "bn_batches",
    }
)
#: A single-path supernet (SPOS, GDAS) trains one of the space's cells per step: without
#: ``epochs`` it gets this many times the task's ``[training] epochs`` (DARTS, which trains every op
#: at every step, the task's epochs). On digits-cell, GDAS with the task's 15 epochs had barely
#: trained its weights when its op weights settled (on pooling and skip: benchmarks/results/oneshot.md).
SPOS_EPOCH_FACTOR = 4
#: Without ``warmup_epochs``, DARTS and GDAS train the weights alone for this fraction of the
#: epochs before the op logits move (early on, parameter-free ops look best only because the
#: convolutions are untrained).
WARMUP_FRACTION = 0.25


@dataclass(frozen=True)
class SupernetSettings:
    """How a supernet is trained. ``None`` values are taken from the task's ``[training]`` table
    (:meth:`resolved`).

    Attributes:
        method: ``spos``, ``darts`` or ``gdas``.
        epochs: Passes over the training split (1..:data:`MAX_EPOCHS`; default: the task's epochs,
            times :data:`SPOS_EPOCH_FACTOR` for SPOS and GDAS).
        batch_size: Examples per step.
        w_lr: Peak learning rate of the shared weights (AdamW, cosine-annealed).
        w_wd: Weight decay of the shared weights.
        alpha_lr: Learning rate of the op logits (Adam, betas 0.5 / 0.999, as DARTS).
        alpha_wd: Weight decay of the op logits.
        order: 1 (first-order DARTS, the default) or 2 (second-order: one unrolled virtual step,
            Hessian-vector product by finite differences, as in DARTS' paper).
        tau_max: GDAS' Gumbel-softmax temperature at the first epoch ...
        tau_min: ... annealed linearly to this at the last.
        warmup_epochs: Epochs of weight training before the op logits start to move (default:
            :data:`WARMUP_FRACTION` of the epochs).
        grad_clip: Gradient-norm clip of the shared weights.
        fair: SPOS with strict fairness (FairNAS, Chu et al. 2021): every step draws a permutation
            of the ops per edge and accumulates the gradients of the ``len(CELL_OPS)`` paths it
            makes, so every op of every edge is trained on every batch (that many times the cost
            of a uniform step).
    """

    method: str = SPOS
    epochs: int | None = None
    batch_size: int | None = None
    w_lr: float | None = None
    w_wd: float | None = None
    alpha_lr: float = 0.03
    alpha_wd: float = 1e-3
    order: int = 1
    tau_max: float = 10.0
    tau_min: float = 0.1
    warmup_epochs: int | None = None
    grad_clip: float = 5.0
    fair: bool = False

    @classmethod
    def read(cls, method: str, options: Mapping[str, Any] | None = None, *, where: str = "") -> SupernetSettings:
        """Checked settings of ``method`` from ``options`` (unknown keys are an error).

        Raises:
            UserError: An unknown method or key, or a value out of range (``where`` prefixes the
                message, e.g. ``"strategy darts"``).
        """
        label = f"{where}: " if where else ""
        if method not in METHODS:
            raise UserError(f"{label}supernet method must be one of {list(METHODS)}; got {method!r}")
        opts = dict(options or {})
        names = {f.name for f in fields(cls)} - {"method"}
        unknown = sorted(set(opts) - names)
        if unknown:
            raise UserError(f"{label}unknown supernet setting(s) {unknown}; expected some of {sorted(names)}")
        out: dict[str, Any] = {"method": method}
        for key, value in opts.items():
            if value is None:
                continue
            out[key] = _checked(key, value, label)
        settings = cls(**out)
        if settings.tau_min > settings.tau_max:
            raise UserError(f"{label}tau_min ({settings.tau_min}) must not exceed tau_max ({settings.tau_max})")
        warm = settings.warmup_epochs
        if settings.epochs is not None and warm is not None and warm >= settings.epochs and method != SPOS:
            raise UserError(f"{label}warmup_epochs ({settings.warmup_epochs}) must be below epochs ({settings.epochs})")
        return settings

    def resolved(self, config: Any) -> SupernetSettings:
        """Missing values from the task's trainer settings (``epochs``, ``batch_size``, ``lr``,
        ``weight_decay``) and the defaults that depend on them (``warmup_epochs``)."""
        single_path = self.method in (SPOS, GDAS)
        epochs = self.epochs if self.epochs is not None else config.epochs * (SPOS_EPOCH_FACTOR if single_path else 1)
        epochs = int(min(MAX_EPOCHS, epochs))
        warmup = self.warmup_epochs
        if warmup is None:
            warmup = 0 if self.method == SPOS else int(WARMUP_FRACTION * epochs)
        return replace(
            self,
            epochs=epochs,
            warmup_epochs=min(int(warmup), epochs - 1),
            batch_size=int(self.batch_size if self.batch_size is not None else config.batch_size),
            w_lr=float(self.w_lr if self.w_lr is not None else config.lr),
            w_wd=float(self.w_wd if self.w_wd is not None else config.weight_decay),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_INTS = {"epochs": (1, MAX_EPOCHS), "batch_size": (2, 1 << 20), "order": (1, 2), "warmup_epochs": (0, MAX_EPOCHS)}
_FLOATS = {
    "w_lr": (0.0, 10.0),
    "w_wd": (-1e-12, 10.0),
    "alpha_lr": (0.0, 10.0),
    "alpha_wd": (-1e-12, 10.0),
    "tau_max": (0.0, 1e4),
    "tau_min": (0.0, 1e4),
    "grad_clip": (0.0, 1e6),
}


def _checked(key: str, value: Any, label: str) -> Any:
    if key == "fair":
        if not isinstance(value, bool):
            raise UserError(f"{label}fair must be true or false; got {value!r}")
        return value
    if key in _INTS:
        lo, hi = _INTS[key]
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not lo <= value <= hi:
            raise UserError(f"{label}{key} must be an integer in {lo}..{hi}; got {value!r}")
        return int(value)
    lo, hi = _FLOATS[key]
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not lo < value <= hi
    ):
        bound = "0" if lo == 0 else ">= 0"
        raise UserError(f"{label}{key} must be a finite number above {bound} and at most {hi:g}; got {value!r}")
    return float(value)


@dataclass(frozen=True)
class EstimatorSettings:
    """``--estimator oneshot`` options (``--option KEY=VALUE``).

    Attributes:
        retrain_top: How many of the best estimates are retrained from scratch at the end.
        supernet: The SPOS supernet's training (``supernet_epochs``, ``supernet_lr``,
            ``supernet_batch_size``, ``supernet_fair``).
        bn_recalibrate: Recompute BatchNorm statistics on the scored path before measuring it
            (the shared statistics mix every path's).
        bn_batches: Training batches the recalibration runs.
    """

    retrain_top: int = 3
    supernet: SupernetSettings = SupernetSettings()
    bn_recalibrate: bool = True
    bn_batches: int = 8

    @classmethod
    def read(cls, options: Mapping[str, Any] | None) -> EstimatorSettings:
        """Checked settings from the one-shot options.

        Raises:
            UserError: An unknown key or a bad value.
        """
        opts = dict(options or {})
        unknown = sorted(set(opts) - ESTIMATOR_OPTIONS)
        if unknown:
            raise UserError(
                f"unknown --estimator oneshot option(s) {unknown}; expected some of {sorted(ESTIMATOR_OPTIONS)}"
            )
        top = opts.get("retrain_top", cls.retrain_top)
        if not isinstance(top, numbers.Integral) or isinstance(top, bool) or not 0 <= top <= 1000:
            raise UserError(f"retrain_top must be an integer in 0..1000; got {top!r}")
        bn = opts.get("bn_recalibrate", cls.bn_recalibrate)
        if not isinstance(bn, bool):
            raise UserError(f"bn_recalibrate must be true or false; got {bn!r}")
        batches = opts.get("bn_batches", cls.bn_batches)
        if not isinstance(batches, numbers.Integral) or isinstance(batches, bool) or not 1 <= batches <= 10_000:
            raise UserError(f"bn_batches must be an integer in 1..10000; got {batches!r}")
        supernet = SupernetSettings.read(
            SPOS,
            {
                "epochs": opts.get("supernet_epochs"),
                "w_lr": opts.get("supernet_lr"),
                "batch_size": opts.get("supernet_batch_size"),
                "fair": opts.get("supernet_fair"),
            },
            where="--estimator oneshot",
        )
        return cls(int(top), supernet, bool(bn), int(batches))


def check_supernet_space(space: SearchSpace, what: str) -> None:
    """Raise one clear :class:`UserError` unless ``space`` has a supernet.

    Args:
        space: The task's space.
        what: What needs it (``"--strategy darts"``, ``"--estimator oneshot"``).
    """
    if not space.trainable:
        raise UserError(f"{what} trains a weight-sharing supernet; space {space.name!r} is a lookup table, not trained")
    if not has_supernet(space.name):
        raise UserError(
            f"{what} needs a space with a weight-sharing supernet (cell, i.e. cell-v1); "
            f'space {space.name!r} has none (use a task with [space] kind = "cell")'
        )
