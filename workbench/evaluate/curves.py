"""Learning-curve extrapolation: predict where a partial validation curve ends, and stop losers.

After Domhan, Springenberg & Hutter (IJCAI 2015), "Speeding up automatic hyperparameter
optimization of deep neural networks by extrapolation of learning curves", with a cheap
ensemble instead of MCMC:

* Each parametric model of :data:`MODELS` (pow3, log-power, exp3, ilog2, MMF, Weibull) is fitted
  to the curve ``y(1..t)`` with bounded, robust least squares (``scipy.optimize.curve_fit``,
  trust-region reflective, soft-L1 loss); models with as many parameters as points are skipped.
* A model's prediction at the final epoch ``T`` is Gaussian: its mean ``f(T)``, its variance the
  residual variance plus the parameter uncertainty propagated through the gradient
  (delta method, ``g' Cov g``). Failed fits and absurd predictions are dropped; the ensemble is
  the equal-weight mixture of the rest (:class:`CurvePrediction`).
* :class:`LCStopRule` stops a trial when it is unlikely to end among the best trials so far:
  ``P(final > reference) < threshold`` (default 5%), where the reference is the ``quantile``
  (default 0.8) of the final values seen so far (finished trials' finals, stopped trials'
  predictions) and the incumbent: the incumbent itself while there are one or two, later the
  top-20% mark. A trial that would end in the top 10% is thus not stopped merely because it
  would not beat the very best (the mark sits below the top-10% boundary because it is
  estimated from few trials). ``quantile=1`` compares with the incumbent itself (Domhan et
  al.'s rule); on recorded mnist1d / mnist5k curves that rule also stops 13-24% of the top-10%
  trials, 0.8 none (``benchmarks/fidelity.py``). Curves trained with a decaying learning rate
  gain most at the end, which no saturating model foresees. The rule therefore also
  extrapolates the *incumbent's* curve from the same number of epochs and adds its error
  (``incumbent final - its prediction``) to the trial's prediction: both are judged from equal
  footing, so the shared bias cancels.

Nothing here knows about trials or stores: the rule sees lists of numbers.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Model = Callable[..., np.ndarray]


def _pow3(x: np.ndarray, c: float, a: float, alpha: float) -> np.ndarray:
    return c - a * np.power(x, -alpha)


def _log_power(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a / (1.0 + np.power(x / math.exp(b), -c))


def _exp3(x: np.ndarray, c: float, a: float, b: float) -> np.ndarray:
    return c - np.exp(-a * x + b)


def _ilog2(x: np.ndarray, c: float, a: float) -> np.ndarray:
    return c - a / np.log(x + 1.0)


def _mmf(x: np.ndarray, alpha: float, beta: float, kappa: float, delta: float) -> np.ndarray:
    return alpha - (alpha - beta) / (1.0 + np.power(kappa * x, delta))


def _weibull(x: np.ndarray, alpha: float, beta: float, kappa: float, delta: float) -> np.ndarray:
    return alpha - (alpha - beta) * np.exp(-np.power(kappa * x, delta))


@dataclass(frozen=True)
class CurveModel:
    """A parametric learning-curve family ``f(x; p)`` (``x`` = 1-based epoch).

    Attributes:
        name: Short name.
        fn: ``fn(x, *p)``.
        init: ``init(y_last, y_first, top) -> p0``.
        bounds: ``bounds(top) -> (lower, upper)`` (``top``: the most the metric can reach).
    """

    name: str
    fn: Model
    init: Callable[[float, float, float], list[float]]
    bounds: Callable[[float], tuple[list[float], list[float]]]

    @property
    def n_params(self) -> int:
        return len(self.bounds(1.0)[0])


def _top(y: np.ndarray, upper: float | None) -> float:
    if upper is not None:
        return float(upper)
    span = float(np.max(y) - np.min(y)) or abs(float(np.max(y))) or 1.0
    return float(np.max(y)) + 2.0 * span


MODELS: tuple[CurveModel, ...] = (
    CurveModel(
        "pow3",
        _pow3,
        lambda last, first, top: [min(top, last + 0.02), max(1e-3, last - first + 0.02), 0.5],
        lambda top: ([-top, 0.0, 1e-3], [top, 10.0, 5.0]),
    ),
    CurveModel(
        "log_power",
        _log_power,
        lambda last, first, top: [min(top, last + 0.02), 0.0, 1.0],
        lambda top: ([0.0, -10.0, 1e-3], [top, 10.0, 10.0]),
    ),
    CurveModel(
        "exp3",
        _exp3,
        lambda last, first, top: [min(top, last + 0.02), 0.3, math.log(max(1e-3, last - first + 0.02)) + 0.3],
        lambda top: ([-top, 1e-4, -20.0], [top, 10.0, 5.0]),
    ),
    CurveModel(
        "ilog2",
        _ilog2,
        lambda last, first, top: [min(top, last + 0.05), max(1e-3, (last - first) * 0.7)],
        lambda top: ([-top, 0.0], [top, 10.0]),
    ),
    CurveModel(
        "mmf",
        _mmf,
        lambda last, first, top: [min(top, last + 0.02), first - 0.05, 0.5, 1.0],
        lambda top: ([-top, -top, 1e-4, 1e-2], [top, top, 10.0, 5.0]),
    ),
    CurveModel(
        "weibull",
        _weibull,
        lambda last, first, top: [min(top, last + 0.02), first - 0.05, 0.5, 1.0],
        lambda top: ([-top, -top, 1e-4, 1e-2], [top, top, 10.0, 5.0]),
    ),
)


@dataclass(frozen=True)
class CurvePrediction:
    """The ensemble's predictive distribution of the curve at one epoch.

    Attributes:
        means: Each kept model's prediction.
        sds: Each kept model's predictive standard deviation.
        names: The kept models.
    """

    means: tuple[float, ...] = ()
    sds: tuple[float, ...] = ()
    names: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when at least one model fitted."""
        return bool(self.means)

    @property
    def mean(self) -> float:
        """Mean of the equal-weight mixture (NaN without models)."""
        return float(np.mean(self.means)) if self.means else float("nan")

    @property
    def sd(self) -> float:
        """Standard deviation of the mixture (within- and between-model spread)."""
        if not self.means:
            return float("nan")
        m, s = np.asarray(self.means), np.asarray(self.sds)
        return float(math.sqrt(np.mean(s**2 + m**2) - np.mean(m) ** 2))

    def shifted(self, delta: float) -> CurvePrediction:
        """Every model's mean moved by ``delta``."""
        return CurvePrediction(tuple(m + delta for m in self.means), self.sds, self.names)

    def prob_above(self, value: float) -> float:
        """``P(y > value)`` under the mixture."""
        if not self.means:
            return float("nan")
        from scipy.stats import norm

        m, s = np.asarray(self.means), np.maximum(np.asarray(self.sds), 1e-9)
        return float(np.mean(norm.sf((value - m) / s)))


def fit_model(
    model: CurveModel, y: Sequence[float], upper: float | None = None
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Fit one model to ``y`` (epochs ``1..len(y)``); ``(params, covariance, residual sd)`` or
    None when it does not converge or has too many parameters for the points."""
    from scipy.optimize import OptimizeWarning, curve_fit

    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    k = model.n_params
    if n <= k or not np.all(np.isfinite(y)):
        return None
    x = np.arange(1, n + 1, dtype=np.float64)
    top = _top(y, upper)
    lo, hi = model.bounds(top)
    p0 = np.clip(model.init(float(y[-1]), float(y[0]), top), np.asarray(lo) + 1e-9, np.asarray(hi) - 1e-9)
    scale = max(float(np.std(y)), 1e-3)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", OptimizeWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            p, cov = curve_fit(
                model.fn, x, y, p0=p0, bounds=(lo, hi), method="trf", loss="soft_l1", f_scale=scale, max_nfev=400 * k
            )
        except (RuntimeError, ValueError, FloatingPointError, np.linalg.LinAlgError):
            return None
        resid = y - model.fn(x, *p)
    if not np.all(np.isfinite(resid)):
        return None
    sd = float(math.sqrt(np.sum(resid**2) / max(1, n - k)))
    return p, np.asarray(cov, dtype=np.float64), sd


def _model_prediction(
    model: CurveModel, fitted: tuple[np.ndarray, np.ndarray, float], at: float
) -> tuple[float, float] | None:
    p, cov, sd = fitted
    with np.errstate(all="ignore"):
        mean = float(model.fn(np.asarray([at]), *p)[0])
        grad = np.zeros(len(p))
        for i in range(len(p)):
            h = 1e-6 * max(1.0, abs(p[i]))
            q = p.copy()
            q[i] += h
            grad[i] = (float(model.fn(np.asarray([at]), *q)[0]) - mean) / h
    if not math.isfinite(mean):
        return None
    if np.all(np.isfinite(cov)):
        var_p = float(grad @ cov @ grad)
    else:
        var_p = float("inf")
    var = sd**2 + max(0.0, var_p)
    if not math.isfinite(var):
        return None
    return mean, math.sqrt(var)


def predict(
    y: Sequence[float],
    at: int,
    *,
    upper: float | None = None,
    lower: float | None = None,
    models: Sequence[CurveModel] = MODELS,
    max_sd: float | None = None,
) -> CurvePrediction:
    """Extrapolate the curve ``y`` (values at epochs ``1..len(y)``) to epoch ``at``.

    Args:
        y: The partial curve.
        at: The 1-based epoch to predict (the final one).
        upper: The most the metric can reach (``1.0`` for accuracies): bounds the asymptotes
            and clips the predictions.
        lower: The least the metric can reach (``0.0`` for accuracies).
        models: The ensemble.
        max_sd: Models whose predictive sd exceeds it are uninformative and dropped
            (default: the range ``upper - lower`` when both are given, else no limit).

    Returns:
        The mixture of the models that fitted (empty when none did).
    """
    if max_sd is None and upper is not None and lower is not None:
        max_sd = float(upper - lower)
    if tuple(models) == MODELS:  # the default ensemble: the same prefix is often asked again
        return _predict_default(tuple(float(v) for v in y), int(at), upper, lower, max_sd)
    return _predict(y, at, upper, lower, models, max_sd)


@functools.lru_cache(maxsize=8192)
def _predict_default(
    y: tuple[float, ...], at: int, upper: float | None, lower: float | None, max_sd: float | None
) -> CurvePrediction:
    return _predict(y, at, upper, lower, MODELS, max_sd)


def _predict(
    y: Sequence[float],
    at: int,
    upper: float | None,
    lower: float | None,
    models: Sequence[CurveModel],
    max_sd: float | None,
) -> CurvePrediction:
    means, sds, names = [], [], []
    for model in models:
        fitted = fit_model(model, y, upper)
        if fitted is None:
            continue
        pred = _model_prediction(model, fitted, float(at))
        if pred is None:
            continue
        mean, sd = pred
        if max_sd is not None and sd > max_sd:
            continue
        if upper is not None:
            mean = min(mean, float(upper))
        if lower is not None:
            mean = max(mean, float(lower))
        means.append(mean)
        sds.append(sd)
        names.append(model.name)
    return CurvePrediction(tuple(means), tuple(sds), tuple(names))


@dataclass(frozen=True)
class StopDecision:
    """What :meth:`LCStopRule.check` concluded after one epoch.

    Attributes:
        stop: True to stop the trial now.
        epoch: Epochs seen (1-based count).
        predicted: Predicted final value (after the incumbent correction), NaN if none.
        predicted_sd: Its standard deviation.
        p_better: ``P(final > incumbent)``.
        incumbent: The value to beat.
        reason: One line.
    """

    stop: bool
    epoch: int
    predicted: float = float("nan")
    predicted_sd: float = float("nan")
    p_better: float = float("nan")
    incumbent: float | None = None
    reason: str = ""

    def details(self) -> dict[str, float]:
        """Numbers for the run's metrics / tags."""
        out = {
            "lc_epoch": float(self.epoch),
            "lc_predicted_final": self.predicted,
            "lc_predicted_sd": self.predicted_sd,
            "lc_p_better": self.p_better,
        }
        if self.incumbent is not None:
            out["lc_incumbent"] = float(self.incumbent)
        return {k: v for k, v in out.items() if v is not None and math.isfinite(v)}


@dataclass
class LCStopRule:
    """Stop a trial whose extrapolated final value is unlikely to beat the incumbent.

    Args:
        target_epoch: The epoch the trial would end at (the curve's last, 1-based count).
        incumbent: The best final value so far (None: never stop).
        incumbent_curve: The incumbent's per-epoch curve (for the bias correction; optional).
        threshold: Stop when ``P(final > incumbent) < threshold``.
        min_epochs: Decide from this many points on (default: ``max(4, target_epoch // 10)``).
        upper: The most the metric can reach (1.0 for accuracies); None: unbounded.
        lower: The least it can reach (0.0 for accuracies).
        every: Check every ``every`` epochs (fits cost a few ms each).
        population: Final values of the trials so far (predicted ones for stopped trials).
        quantile: The reference is this quantile of ``population`` and the incumbent (linear
            interpolation; 1.0: the incumbent).
    """

    target_epoch: int
    incumbent: float | None = None
    incumbent_curve: Sequence[float] = ()
    threshold: float = 0.05
    min_epochs: int | None = None
    upper: float | None = 1.0
    lower: float | None = 0.0
    every: int = 1
    population: Sequence[float] = ()
    quantile: float = 0.8
    decisions: list[StopDecision] = field(default_factory=list)

    @property
    def reference(self) -> float | None:
        """The value a trial must be likely to reach to go on (None: no incumbent yet)."""
        if self.incumbent is None:
            return None
        values = [float(v) for v in self.population if v is not None and math.isfinite(v)] + [float(self.incumbent)]
        if self.quantile >= 1.0 or len(values) < 2:
            return float(self.incumbent)
        return float(min(self.incumbent, np.quantile(values, self.quantile)))

    @property
    def first_check(self) -> int:
        return int(self.min_epochs) if self.min_epochs is not None else max(4, int(self.target_epoch) // 10)

    def check(self, curve: Sequence[float]) -> StopDecision:
        """Decide after the latest epoch of ``curve`` (values at epochs ``1..len(curve)``)."""
        t = len(curve)
        inc = self.reference
        if inc is None or not math.isfinite(inc):
            return self._keep(StopDecision(False, t, reason="no incumbent yet"))
        if t >= self.target_epoch:
            return self._keep(StopDecision(False, t, incumbent=inc, reason="finished"))
        if t < self.first_check or (t - self.first_check) % max(1, self.every):
            return self._keep(StopDecision(False, t, incumbent=inc, reason="too few epochs to judge"))
        if max(curve) >= inc:
            return self._keep(StopDecision(False, t, incumbent=inc, reason="already as good as the incumbent"))
        pred = predict(curve, self.target_epoch, upper=self.upper, lower=self.lower)
        if not pred.ok:
            return self._keep(StopDecision(False, t, incumbent=inc, reason="no curve model fitted"))
        shift = self.bias_at(t)
        pred = pred.shifted(shift)
        p = pred.prob_above(inc)
        stop = p < self.threshold
        what = (
            "incumbent" if inc == self.incumbent else f"top-{100 * (1 - self.quantile):.0f}% mark (q{self.quantile:g})"
        )
        why = (
            f"P(final > {what} {inc:.4f}) = {p:.3f} {'<' if stop else '>='} {self.threshold:g} after "
            f"{t} of {self.target_epoch} epochs (predicted final {pred.mean:.4f} +- {pred.sd:.4f}"
            f"{f', incumbent correction {shift:+.4f}' if shift else ''})"
        )
        return self._keep(StopDecision(stop, t, pred.mean, pred.sd, p, inc, why))

    def bias_at(self, t: int) -> float:
        """How far the ensemble under-predicted the incumbent's final value from its first ``t``
        epochs (0 without a full incumbent curve)."""
        c = list(self.incumbent_curve)
        if self.incumbent is None or len(c) < max(t + 1, self.target_epoch):
            return 0.0
        pred = predict(c[:t], self.target_epoch, upper=self.upper, lower=self.lower)
        if not pred.ok:
            return 0.0
        return float(c[self.target_epoch - 1]) - pred.mean

    def _keep(self, d: StopDecision) -> StopDecision:
        self.decisions.append(d)
        return d

    # -- transport (a job carries the rule to a worker) ---------------------------------------
    def to_json(self) -> str:
        return json.dumps(
            {
                "rule": "lc",
                "target_epoch": int(self.target_epoch),
                "incumbent": self.incumbent,
                "incumbent_curve": [float(v) for v in self.incumbent_curve],
                "threshold": self.threshold,
                "min_epochs": self.min_epochs,
                "upper": self.upper,
                "lower": self.lower,
                "every": self.every,
                "population": [float(v) for v in self.population],
                "quantile": self.quantile,
            }
        )

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> LCStopRule:
        d = json.loads(text) if isinstance(text, str) else dict(text)
        return cls(
            target_epoch=int(d["target_epoch"]),
            incumbent=d.get("incumbent"),
            incumbent_curve=tuple(d.get("incumbent_curve") or ()),
            threshold=float(d.get("threshold", 0.05)),
            min_epochs=d.get("min_epochs"),
            upper=d.get("upper", 1.0),
            lower=d.get("lower", 0.0),
            every=int(d.get("every", 1)),
            population=tuple(d.get("population") or ()),
            quantile=float(d.get("quantile", 0.8)),
        )


def replay_stop_epoch(curve: Sequence[float], rule: LCStopRule) -> StopDecision | None:
    """Run ``rule`` over a recorded full curve, epoch by epoch, as a live trial would see it;
    the decision that stopped it, or None when it would have run to the end."""
    for t in range(1, len(curve) + 1):
        d = rule.check(curve[:t])
        if d.stop:
            return d
    return None


STOP_RULES = ("lc",)
