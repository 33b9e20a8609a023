"""Multi-task BO warm-started from other tasks (``bo`` with ``sources``): RGPE, the fast ICM GP and the
copula prior."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

pytest.importorskip("botorch")

from workbench.errors import UserError  # noqa: E402
from workbench.evaluate.tabular import table_arrays  # noqa: E402
from workbench.space.nbgraph import NBGraphSpace  # noqa: E402
from workbench.strategy.base import Observation, WarmSource, WarmStart  # noqa: E402
from workbench.strategy.bo.copula import CopulaPrior  # noqa: E402
from workbench.strategy.bo.model import DTYPE, FitSettings, GPModel, KernelLayout  # noqa: E402
from workbench.strategy.bo.mtgp import FastMultiTaskGP  # noqa: E402
from workbench.strategy.bo.mtgp_fit import SourceObjective  # noqa: E402
from workbench.strategy.bo.pool_kernel import CategoricalSums, DataKernel  # noqa: E402
from workbench.strategy.bo.rgpe import RGPE, leave_pair_out_wrong, rgpe_weights, wrong_pairs  # noqa: E402
from workbench.strategy.bo.sources import prepare_sources  # noqa: E402
from workbench.strategy.bo.strategy import BayesianOptimization, transform_targets  # noqa: E402
from workbench.strategy.bo.transfer import AskRecord  # noqa: E402
from workbench.strategy.bo.transfer_model import TransferModel  # noqa: E402
from workbench.strategy.registry import make_strategy  # noqa: E402

DATASET = "photo"


@pytest.fixture(scope="module")
def space():
    return NBGraphSpace(DATASET)


@pytest.fixture(scope="module")
def vals():
    return table_arrays(DATASET).val_accuracy


def _search_history(space, values, seed: int, n: int, strategy: str = "evolution"):
    """A real search on the table (in memory): its genotypes and values, in order."""
    strat = make_strategy(strategy, space, seed=seed)
    gs, vs = [], []
    for _ in range(n):
        (p,) = strat.ask(1)
        v = float(values[space.index_of(p.genotype)])
        strat.tell([Observation(p.genotype, v)])
        gs.append(p.genotype)
        vs.append(v)
    return gs, np.array(vs)


def _run(strategy, space, values, budget: int, threshold: float) -> int:
    """Evaluations until the top 1% (budget + 1 if never)."""
    for t in range(budget):
        (p,) = strategy.ask(1)
        v = float(values[space.index_of(p.genotype)])
        strategy.tell([Observation(p.genotype, v)])
        if v >= threshold - 1e-9:
            return t + 1
    return budget + 1


# -- pieces ------------------------------------------------------------------------------------


def test_categorical_kernel_sums_equal_the_dense_product(space):
    bo = BayesianOptimization(space)
    layout = bo._layout()
    pool = bo.full_pool.features()
    sums = CategoricalSums.build(pool, layout)
    assert sums is not None and len(sums.decisions) == 5
    rng = np.random.default_rng(0)
    train = torch.as_tensor(pool[rng.choice(len(pool), 40, replace=False)])
    c = rng.normal(size=40)
    for ls in (0.3, 1.7, 40.0):
        kernel = DataKernel(layout, np.array([ls]), np.array([1.3]))
        fast = sums.matvec(sums.codes(train.numpy()), c, kernel.lengthscales, kernel.outputscales)
        dense = (kernel(torch.as_tensor(pool[:3000]), train) @ torch.as_tensor(c)).numpy()
        np.testing.assert_allclose(fast[:3000], dense, rtol=1e-9, atol=1e-12)
    assert CategoricalSums.build(pool + 0.5, layout) is None  # not one-hot: the dense path


def test_source_objective_gradient_matches_autograd():
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.integers(0, 2, (36, 10)).astype(float))
    y = torch.as_tensor(rng.normal(size=36))
    tasks = torch.as_tensor(np.repeat([0, 1, 2], 12))
    layout = KernelLayout.from_blocks([[[0, 1, 2, 3], [4, 5]], [[6, 7, 8, 9]]])
    obj = SourceObjective(x, y, tasks, 3, layout, FitSettings())
    theta = obj.start() + rng.normal(scale=0.3, size=len(obj.start()))
    value, grad = obj(theta)
    t = torch.tensor(theta, requires_grad=True)
    ref = obj.value(t)
    (ref_grad,) = torch.autograd.grad(ref, t)
    assert value == pytest.approx(float(ref.detach()), rel=1e-10)
    np.testing.assert_allclose(grad, ref_grad.numpy(), rtol=1e-6, atol=1e-8)


def _sources(space, specs, n: int = 80):
    """Warm sources from random architectures of other datasets."""
    pool = space.pool()
    out = []
    for j, (name, values) in enumerate(specs):
        idx = np.random.default_rng(10 + j).choice(len(pool), n, replace=False)
        out.append(WarmSource(name, tuple(pool[i] for i in idx), np.asarray(values)[idx], 0.5))
    return out


def test_fast_multitask_gp_posterior_equals_botorch_multitask_gp(space, vals):
    bo = BayesianOptimization(space)
    layout = bo._layout()
    raw = _sources(
        space, [("cs", table_arrays("cs").val_accuracy), ("computers", table_arrays("computers").val_accuracy)], 60
    )
    sources = prepare_sources(raw, bo._features, lambda v: transform_targets(v, "rank"))
    gp = FastMultiTaskGP(sources, layout, FitSettings())
    idx = np.random.default_rng(3).choice(len(vals), 12, replace=False)
    x0 = torch.as_tensor(bo.full_pool.features()[idx])
    gp.update(x0, torch.as_tensor(transform_targets(vals[idx], "rank")))
    assert gp.has_target and gp.source_fits == 1
    xt = torch.as_tensor(bo.full_pool.features()[:25])
    model = gp.botorch_model()
    with torch.no_grad():
        post = model.posterior(torch.cat([xt, torch.zeros(25, 1, dtype=DTYPE)], 1))
    np.testing.assert_allclose(gp.mean_x(xt), post.mean[:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(gp.variance_x(xt), post.variance[:, 0].numpy(), atol=1e-6)
    bmat = gp.task_covariance()
    assert np.all(np.linalg.eigvalsh(bmat) > -1e-10)  # the target row keeps B positive semi-definite


def test_rgpe_weights_favour_the_model_that_ranks_and_drop_a_backwards_source():
    rng = np.random.default_rng(0)
    y = rng.normal(size=15)
    preds = np.stack([y + 0.01 * rng.normal(size=15), -y, rng.normal(size=15)])  # good, backwards, target
    w, mis_ranked = rgpe_weights(wrong_pairs(preds, y), y, np.random.default_rng(1))
    assert w[0] > 0.9 and w[1] == 0.0 and w.sum() == pytest.approx(1.0)
    assert mis_ranked[0] < mis_ranked[2] < mis_ranked[1]


def test_leave_pair_out_predictions_match_refitting_without_the_pair():
    rng = np.random.default_rng(2)
    x = torch.as_tensor(rng.integers(0, 2, (9, 6)).astype(float))
    y = torch.as_tensor(rng.normal(size=9))
    layout = KernelLayout.from_blocks([[list(range(6))]])
    gp = GPModel.fit(x, y, layout)
    wrong = leave_pair_out_wrong(gp)
    for j, k in [(0, 1), (2, 7), (8, 3)]:
        keep = [i for i in range(9) if i not in (j, k)]
        sub = GPModel(x[keep], y[keep], layout, gp.hp)
        mu = sub.predict_mean(x[[j, k]]).numpy()
        assert wrong[j, k] == ((mu[0] < mu[1]) != bool(y[j] < y[k]))
    # a constant-mean model ties every pair: chance level, not the leave-one-out reversal
    flat = GPModel(x, y, layout, type(gp.hp)(np.array([1e-3]), np.array([1e-6]), 1.0, 0.0))
    assert leave_pair_out_wrong(flat).sum() <= 9 * 8 / 2 + 1


# -- the strategy ------------------------------------------------------------------------------


def test_bad_transfer_option_is_a_clear_error(space):
    with pytest.raises(UserError, match="transfer"):
        BayesianOptimization(space, transfer="magic")
    gs = space.pool()[:5]
    with pytest.raises(TypeError, match="WarmSource"):  # the old (task, genotypes, values, weight) tuples
        BayesianOptimization(space, sources=[("cs", gs, np.arange(5.0), 1.0)])


def test_warm_start_options_hand_over_the_sources(space):
    raw = _sources(space, [("cs", table_arrays("cs").val_accuracy)], 10)
    warm = WarmStart(tuple(raw), tuple(raw[0].best(2)))
    options = BayesianOptimization.warm_start_options(warm, {"transfer": "mtgp"})
    assert options == {"sources": raw}
    strat = BayesianOptimization(space, seed=0, transfer="mtgp", **options)
    assert strat.transfer_model == "mtgp" and set(strat.source_weights()) == {"cs"}
    # several objectives: each source's two best are evaluated first instead of a model
    mo = BayesianOptimization(space, objectives=["a", "-b"], **options)
    assert mo.transfer_model == "" and mo.prior == raw[0].best(2)


@pytest.mark.parametrize("transfer", ["rgpe", "mtgp", "copula"])
def test_the_multi_task_models_are_transfer_models(space, transfer):
    raw = _sources(space, [("cs", table_arrays("cs").val_accuracy)], 30)
    strat = BayesianOptimization(space, seed=0, sources=raw, transfer=transfer)
    assert strat._transfer.ready()
    model = strat._transfer.model
    assert isinstance(model, TransferModel) and model.name == transfer
    assert isinstance(model, RGPE) == (transfer == "rgpe")
    strat.ask(1)  # the proposer reports how the ask went; the strategy keeps it
    assert list(strat.last_ask) == [f.name for f in dataclasses.fields(AskRecord)]
    assert strat.last_ask["transfer"] == transfer and set(strat.last_ask["source_weights"]) == {"cs"}


@pytest.mark.parametrize("transfer", ["rgpe", "mtgp", "copula"])
def test_a_source_that_is_the_target_itself_finds_the_top_1_percent_far_faster(space, vals, transfer):
    threshold = float(np.quantile(vals, 0.99))
    warm, cold = [], []
    for seed in range(2):
        gs, vs = _search_history(space, vals, seed=100 + seed, n=100)
        src = [WarmSource(DATASET, tuple(gs), vs, 1.0)]
        warm.append(
            _run(BayesianOptimization(space, seed=seed, sources=src, transfer=transfer), space, vals, 40, threshold)
        )
        cold.append(_run(BayesianOptimization(space, seed=seed), space, vals, 40, threshold))
    assert max(warm) <= 3, (warm, cold)
    assert np.median(warm) * 4 <= np.median(cold), (warm, cold)


def test_an_anticorrelated_source_gets_no_weight_and_costs_little(space, vals):
    threshold = float(np.quantile(vals, 0.99))
    gs, vs = _search_history(space, vals, seed=7, n=100, strategy="random")
    anti = [WarmSource("anti", tuple(gs), -vs, 1.0)]
    warm = BayesianOptimization(space, seed=0, sources=anti)
    hit_warm = _run(warm, space, vals, 45, threshold)
    assert warm.source_weights()["anti"] <= 0.05
    hit_cold = _run(BayesianOptimization(space, seed=0), space, vals, 45, threshold)
    assert hit_warm <= hit_cold + 10, (hit_warm, hit_cold)


@pytest.mark.parametrize("transfer", ["rgpe", "mtgp", "copula"])
def test_replay_with_sources_reproduces_the_next_proposal(space, vals, transfer):
    raw = _sources(space, [("cs", table_arrays("cs").val_accuracy), ("arxiv", table_arrays("arxiv").val_accuracy)])
    a = BayesianOptimization(space, seed=3, sources=raw, transfer=transfer)
    told = []
    for _ in range(6):
        (p,) = a.ask(1)
        obs = Observation(p.genotype, float(vals[space.index_of(p.genotype)]))
        a.tell([obs])
        told.append(obs)
    nxt = a.ask(1)[0].genotype
    b = BayesianOptimization(space, seed=3, sources=raw, transfer=transfer)  # a resumed search: all tells at once
    b.tell(told)
    assert b.ask(1)[0].genotype == nxt
    assert b.source_weights() == a.source_weights()
    c = BayesianOptimization(space, seed=3, sources=raw, transfer=transfer)
    assert [c.ask(1)[0].genotype] == [told[0].genotype]  # the same first proposal


@pytest.mark.parametrize("transfer", ["rgpe", "mtgp", "copula"])
def test_sources_are_fitted_once_not_on_every_ask(space, vals, transfer, monkeypatch):
    raw = _sources(
        space,
        [
            ("cs", table_arrays("cs").val_accuracy),
            ("arxiv", table_arrays("arxiv").val_accuracy),
            ("cora", table_arrays("cora").val_accuracy),
        ],
    )
    fits = []
    original = GPModel.fit.__func__

    def counting(cls, x, y, layout, settings=None):
        fits.append(x.shape[0])
        return original(cls, x, y, layout, settings if settings is not None else FitSettings())

    monkeypatch.setattr(GPModel, "fit", classmethod(counting))
    strat = BayesianOptimization(space, seed=0, sources=raw, transfer=transfer)
    for _ in range(8):
        (p,) = strat.ask(1)
        strat.tell([Observation(p.genotype, float(vals[space.index_of(p.genotype)]))])
    assert strat._transfer.source_fits == (3 if transfer == "rgpe" else 4)  # one GP per source (+ the model's own)
    if transfer == "rgpe":
        source_fits = [n for n in fits if n == 80]
        assert len(source_fits) == 3  # once each, at the first ask
        assert len(fits) - 3 <= 8  # then at most one target fit per ask
    weights = strat.source_weights()
    assert set(weights) == {"cs", "arxiv", "cora"}


def test_batches_and_pending_stay_distinct(space, vals):
    raw = _sources(space, [("cs", table_arrays("cs").val_accuracy)])
    strat = BayesianOptimization(space, seed=0, sources=raw)
    first = strat.ask(3)
    strat.tell([Observation(p.genotype, float(vals[space.index_of(p.genotype)])) for p in first])
    batch = strat.ask(3, pending=[first[0].genotype])
    keys = [p.genotype.key for p in first + batch]
    assert len(set(keys)) == 6


def test_sources_in_a_space_without_a_pool(chain_space, rng):
    gs = [chain_space.sample(rng) for _ in range(30)]
    vs = rng.normal(size=30)
    strat = BayesianOptimization(
        chain_space, seed=0, sources=[WarmSource("other", tuple(gs), vs, 1.0)], n_samples=100, n_mutations=20
    )
    seen = set()
    for _ in range(4):
        (p,) = strat.ask(1)
        assert p.genotype.key not in seen
        seen.add(p.genotype.key)
        strat.tell([Observation(p.genotype, float(rng.normal()))])
    assert set(strat.source_weights()) == {"other"}


def test_hedge_turns_propose_what_cold_bo_would(space, vals):
    raw = _sources(space, [("cs", table_arrays("cs").val_accuracy), ("arxiv", table_arrays("arxiv").val_accuracy)])
    warm = BayesianOptimization(space, seed=0, sources=raw, hedge=2, schedule="fixed")
    told, same_as_cold = [], {}
    for _ in range(8):
        expect = None
        if len(told) >= 2:  # what cold BO's model proposes after the same observations
            cold = BayesianOptimization(space, seed=0, n_init=2)
            cold.tell(told)
            expect = cold.ask(1)[0].genotype
        turn = warm.cold_turn()
        (p,) = warm.ask(1)
        if expect is not None:
            same_as_cold[len(told)] = (turn, p.genotype == expect)
        told.append(Observation(p.genotype, float(vals[space.index_of(p.genotype)])))
        warm.tell([told[-1]])
    assert [n for n, (turn, _) in same_as_cold.items() if turn] == [2, 4, 6]
    assert all(same for turn, same in same_as_cold.values() if turn)
    assert not all(same for turn, same in same_as_cold.values() if not turn)  # the other asks are the sources'
    assert set(warm.source_weights()) == {"cs", "arxiv"}
    never = BayesianOptimization(space, seed=0, sources=raw, hedge=0, schedule="fixed")
    never.tell(told)
    assert not never.cold_turn()
    with pytest.raises(UserError, match="hedge"):
        BayesianOptimization(space, hedge=-1)


def test_copula_prior_pools_the_sources_and_the_residual_gp_follows_the_target(space, vals):
    raw = _sources(space, [("cs", table_arrays("cs").val_accuracy), ("arxiv", table_arrays("arxiv").val_accuracy)])
    strat = BayesianOptimization(space, seed=0, sources=raw, transfer="copula")
    assert strat._transfer.ready()
    model = strat._transfer.model
    assert isinstance(model, CopulaPrior) and model.source_fits == 1 and not model.has_target
    assert model.source_weights() == {"cs": 0.5, "arxiv": 0.5}
    cands = strat._transfer.pool
    rows = np.arange(len(cands))
    prior = model.mean(cands, rows)
    # the forest ranks what the sources observed like the sources' values do
    for src in strat._transfer.sources:
        seen = np.array([strat.full_pool.index_of(g) for g in src.genotypes])
        assert np.corrcoef(prior[seen], src.y.numpy())[0, 1] > 0.5
    # with target data, the mean at the observed points is close to the target's own values
    obs = [space.pool()[i] for i in range(0, 2000, 100)]
    x0 = torch.as_tensor(strat._features(obs), dtype=DTYPE)
    y0 = torch.as_tensor(transform_targets(np.array([vals[space.index_of(g)] for g in obs]), "rank"), dtype=DTYPE)
    model.update(x0, y0, np.random.default_rng(0))
    assert model.has_target and 0.0 <= model.weight <= 1.0 and model.target_weight == 1.0 - model.weight
    at = np.array([strat.full_pool.index_of(g) for g in obs])
    assert np.corrcoef(model.mean(cands, at), y0.numpy())[0, 1] > 0.9
    far = np.setdiff1d(rows[:5000], at)
    assert np.all(model.variance(cands, far) <= model.variance_bound(cands, far) + 1e-9)
    assert np.all(model.variance_bound(cands, far) <= model.prior_bound(cands, far) + 1e-9)
    assert np.all(model.variance(cands, at) < model.prior_var)
    fantasy = model.fantasize(torch.as_tensor(cands.x[far[:3]]))
    assert np.all(fantasy.variance(cands, far[:3]) < model.variance(cands, far[:3]))
    assert model.target.x.shape[0] == len(obs)  # the model itself is unchanged


def test_copula_transfer_in_a_space_without_a_pool_and_in_batches(chain_space, rng, space, vals):
    gs = [chain_space.sample(rng) for _ in range(30)]
    src = [WarmSource("other", tuple(gs), rng.normal(size=30), 1.0)]
    strat = BayesianOptimization(chain_space, seed=0, sources=src, transfer="copula", n_samples=100, n_mutations=20)
    seen = set()
    for _ in range(8):
        (p,) = strat.ask(1)
        chain_space.validate(p.genotype)
        assert p.genotype.key not in seen
        seen.add(p.genotype.key)
        strat.tell([Observation(p.genotype, float(rng.normal()))])
    assert strat.transfer_model == "copula" and set(strat.source_weights()) == {"other"}
    raw = _sources(space, [("cs", table_arrays("cs").val_accuracy)])
    batch = BayesianOptimization(space, seed=0, sources=raw, transfer="copula")
    first = batch.ask(3)
    batch.tell([Observation(p.genotype, float(vals[space.index_of(p.genotype)])) for p in first])
    more = batch.ask(3, pending=[first[0].genotype])
    assert len({p.genotype.key for p in first + more}) == 6


def test_copula_prior_that_ranks_the_target_backwards_gets_no_weight(space, vals):
    gs, vs = _search_history(space, vals, seed=7, n=100, strategy="random")
    anti = [WarmSource("anti", tuple(gs), -vs, 1.0)]
    strat = BayesianOptimization(space, seed=0, sources=anti, transfer="copula")
    assert strat._transfer.ready()
    model = strat._transfer.model
    obs = [space.pool()[i] for i in range(0, 3000, 150)]
    x0 = torch.as_tensor(strat._features(obs), dtype=DTYPE)
    y0 = torch.as_tensor(transform_targets(np.array([vals[space.index_of(g)] for g in obs]), "rank"), dtype=DTYPE)
    model.update(x0, y0, np.random.default_rng(0))
    assert model.weight == 0.0 and model.source_weights() == {"anti": 0.0}
    own = GPModel.fit(x0, y0, strat._layout(), FitSettings())  # cold BO's model of the same data
    rows = np.arange(0, 26000, 13)
    expect = own.predict(strat._transfer.pool.x[torch.as_tensor(rows)])
    assert np.allclose(model.mean(strat._transfer.pool, rows), expect[0].numpy(), atol=1e-8)
    assert np.allclose(model.variance(strat._transfer.pool, rows), expect[1].numpy(), atol=1e-8)
    untrusting = CopulaPrior(strat._transfer.sources, strat._layout(), FitSettings(), trust=False)
    untrusting.update(x0, y0, np.random.default_rng(0))
    assert untrusting.weight == 1.0  # CTS's CGP: the forest is always the prior mean
