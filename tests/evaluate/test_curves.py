"""Learning-curve extrapolation: the ensemble predicts synthetic curves, the stop rule stops bad
curves and not good ones, and a stopped trial is recorded as such."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from workbench.evaluate.curves import MODELS, LCStopRule, fit_model, predict, replay_stop_epoch

X = np.arange(1, 41, dtype=np.float64)


def pow_curve(c: float, a: float = 0.6, alpha: float = 0.8, noise: float = 0.003, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return c - a * X**-alpha + noise * rng.standard_normal(len(X))


def exp_curve(c: float, rate: float = 0.15, noise: float = 0.003, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return c - (c - 0.1) * np.exp(-rate * X) + noise * rng.standard_normal(len(X))


def test_every_model_fits_its_own_shape():
    for model in MODELS:
        fitted = fit_model(model, pow_curve(0.9)[:12], upper=1.0)
        assert fitted is not None, model.name
        params, cov, sd = fitted
        assert np.all(np.isfinite(params)) and sd < 0.05


@pytest.mark.parametrize("curve", [pow_curve(0.9), pow_curve(0.7, a=0.4, alpha=1.2, seed=1), exp_curve(0.85, seed=2)])
def test_the_ensemble_extrapolates_within_tolerance(curve):
    for seen in (10, 20):
        pred = predict(curve[:seen], 40, upper=1.0, lower=0.0)
        assert pred.ok and len(pred.names) >= 4
        assert abs(pred.mean - curve[-1]) < 0.05, (seen, pred.mean, curve[-1])
        assert abs(pred.mean - curve[-1]) < 3 * pred.sd + 0.01  # honest uncertainty


def test_uncertainty_shrinks_with_more_epochs():
    curve = pow_curve(0.85, seed=3)
    sds = [predict(curve[:t], 40, upper=1.0, lower=0.0).sd for t in (6, 12, 30)]
    assert sds[0] > sds[2]


def test_stop_rule_stops_bad_curves_and_keeps_good_ones():
    incumbent_curve = pow_curve(0.88, seed=3)
    incumbent = float(incumbent_curve[-1])  # 0.85
    bad = pow_curve(0.6, seed=4)  # ends at 0.57
    good = pow_curve(0.93, seed=5)  # ends at 0.90
    close_above = pow_curve(0.89, seed=6)  # ends at 0.86, just above the incumbent
    assert bad[-1] < incumbent < close_above[-1] < good[-1]
    for curve_of_incumbent in ((), incumbent_curve):
        rule = LCStopRule(target_epoch=40, incumbent=incumbent, incumbent_curve=curve_of_incumbent)
        stop = replay_stop_epoch(bad, rule)
        assert stop is not None and stop.epoch <= 8 and stop.p_better < 0.05
        assert stop.predicted < incumbent and "P(final > " in stop.reason
        assert (
            replay_stop_epoch(
                good, LCStopRule(target_epoch=40, incumbent=incumbent, incumbent_curve=curve_of_incumbent)
            )
            is None
        )
    fair = LCStopRule(target_epoch=40, incumbent=incumbent, incumbent_curve=incumbent_curve)
    assert replay_stop_epoch(close_above, fair) is None


def test_no_incumbent_or_too_few_epochs_never_stops():
    bad = pow_curve(0.4)
    assert replay_stop_epoch(bad, LCStopRule(target_epoch=40, incumbent=None)) is None
    rule = LCStopRule(target_epoch=40, incumbent=0.99, min_epochs=10)
    assert all(not rule.check(bad[:t]).stop for t in range(1, 10))
    assert rule.check(bad[:10]).stop


def test_the_incumbent_correction_removes_a_shared_late_jump():
    # a learning-rate decay lifts every curve by 0.06 in its last epochs: no saturating model sees it coming
    def jump(c: float, seed: int) -> np.ndarray:
        y = pow_curve(c, seed=seed)
        return y + 0.06 * (X > 30)

    incumbent_curve = jump(0.84, 7)
    incumbent = float(incumbent_curve[-1])  # 0.9
    runner_up = jump(0.86, 8)  # will end above the incumbent
    naive = LCStopRule(target_epoch=40, incumbent=incumbent, min_epochs=20)
    fair = LCStopRule(target_epoch=40, incumbent=incumbent, incumbent_curve=incumbent_curve, min_epochs=20)
    assert naive.check(runner_up[:25]).stop  # without the correction it would be wrongly stopped
    decision = fair.check(runner_up[:25])
    assert not decision.stop and decision.predicted > incumbent - 0.02


def test_rule_round_trips_as_json():
    rule = LCStopRule(target_epoch=30, incumbent=0.8, incumbent_curve=[0.1, 0.5, 0.8], threshold=0.1, min_epochs=5)
    again = LCStopRule.from_json(rule.to_json())
    assert (again.target_epoch, again.incumbent, list(again.incumbent_curve), again.threshold, again.min_epochs) == (
        30,
        0.8,
        [0.1, 0.5, 0.8],
        0.1,
        5,
    )


def test_a_search_with_lc_stops_trials_and_records_the_decision():
    from metastore import open_store
    from workbench.evaluate.synthetic import SyntheticEvaluator
    from workbench.search import Search, observation_of
    from workbench.space.genotype import Genotype
    from workbench.space.registry import make_space
    from workbench.strategy.registry import make_strategy
    from workbench.task import parse_task_dict

    task = parse_task_dict(
        {
            "name": "synthetic-lc",
            "kind": "trained",
            "dataset": {"loader": "digits"},
            "space": {
                "kind": "chain",
                "max_layers": 4,
                "kernels": [3, 5, 7],
                "widths": [8, 16, 32],
                "dense_widths": [16, 32],
            },
            "training": {"epochs": 30},
        }
    )
    space = make_space(**task.space)
    store = open_store("memory://")
    ev = SyntheticEvaluator(full_epochs=30)
    search = Search(store, task, make_strategy("random", space, seed=1), ev, space, 20, seed=0, stop_early="lc")
    search.start()
    result = search.run()
    trials = store.trials(result.search_id)
    stopped = [t for t in trials if t.tags.get("nasw.stopped_early") == "lc"]
    assert stopped, "some of 20 random architectures should be stopped"
    for t in stopped:
        assert t.state == "finished" and t.metrics["epochs"] < 30
        rec = json.loads(t.tags["nasw.fidelity"])
        assert rec["full"] is False and rec["stopped"] == "lc" and rec["planned_epochs"] == 30
        assert "P(final > " in t.tags["nasw.lc.decision"]
        assert t.metrics["lc_p_better"] < 0.05 and math.isfinite(t.metrics["lc_predicted_final"])
        obs = observation_of(t, "val_accuracy", space)
        assert obs.value == pytest.approx(t.metrics["lc_predicted_final"]) and obs.fidelity["stopped"] == "lc"
    best = result.best_trial
    assert best.tags.get("nasw.stopped_early") is None
    hidden = {t.trial_id: ev.quality(Genotype.from_json(t.genotype_json)) for t in trials}
    assert hidden[best.trial_id] >= max(hidden.values()) - 0.05  # the stops did not lose the best architecture
    assert result.summary["n_stopped_early"] == len(stopped)
    assert result.summary["compute_full_equivalents"] < 20
    assert set(store.histories("chain-v1", "val_accuracy")["synthetic-lc"].trial_ids) == {
        t.trial_id for t in trials if t not in stopped
    }


def test_a_trial_headed_for_the_top_ten_percent_is_kept_even_below_the_incumbent():
    incumbent_curve = pow_curve(0.93, seed=10)
    runner_up = pow_curve(0.88, seed=11)  # clearly below the incumbent, above most trials
    population = [0.4, 0.5, 0.55, 0.6, 0.62, 0.7, 0.75, 0.8, 0.85, float(incumbent_curve[-1])]
    kept = LCStopRule(
        target_epoch=40, incumbent=float(incumbent_curve[-1]), incumbent_curve=incumbent_curve, population=population
    )
    assert kept.reference < kept.incumbent
    assert replay_stop_epoch(runner_up, kept) is None
    strict = LCStopRule(
        target_epoch=40,
        incumbent=float(incumbent_curve[-1]),
        incumbent_curve=incumbent_curve,
        population=population,
        quantile=1.0,
    )
    assert strict.reference == strict.incumbent
    assert replay_stop_epoch(runner_up, strict) is not None  # Domhan et al.'s rule stops it
