"""Network morphisms: every operator at every site preserves the function (property-based)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.errors import InvalidGenotype
from workbench.morph.base import Morphism, MorphismError
from workbench.morph.chain import ChainWiden
from workbench.morph.lineage import inherit_state, load_matching, morph_child
from workbench.morph.registry import morphism, morphism_for, morphism_ops
from workbench.nn.build import build_model
from workbench.space.chain import ChainSpace
from workbench.space.dag import DAG_OPS, DagSpace
from workbench.space.edits import MorphismStep, steps_from_json, steps_to_json
from workbench.space.morphs import (
    CHAIN_MAX_FLAT_FEATURES,
    apply_steps,
    chain_flat_grid,
    edit_ops,
    morph_sites,
    random_morphisms,
)

torch.set_num_threads(1)
TOL = 1e-5


def max_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest deviation relative to the logits' scale when it exceeds 1 (float32 keeps ~7 digits)."""
    return float((got - want).abs().max()) / max(1.0, float(want.abs().max()))


HYP = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CHAIN = ChainSpace(max_layers=6, kernels=[3, 5, 7], widths=[4, 8, 16], dense_widths=[8, 16], max_dense=2)
DAG = DagSpace(max_nodes=5, width=4)

shapes_1d = st.tuples(st.integers(1, 3), st.integers(1, 48))
shapes_2d = st.tuples(st.integers(1, 3), st.integers(1, 10), st.integers(1, 10))
input_shapes = st.one_of(shapes_1d, shapes_2d)


def trained_ish(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights and BatchNorm statistics far from their initial values, eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():  # keep the fan-in scale of the initialisation, perturb every entry
            scale = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.1
            p.mul_(1 + 0.5 * torch.randn(p.shape, generator=gen)).add_(
                0.3 * scale * torch.randn(p.shape, generator=gen)
            )
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.num_batches_tracked.fill_(100)
    return net.eval()


def build(g, shape, n_classes, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(g, shape, n_classes)


def check_every_site(g, shape, n_classes, seed, morphisms=None):
    """Child == parent (eval, float32) for every operator and every site of ``g``; returns #sites."""
    parent = trained_ish(build(g, shape, n_classes, seed), seed)
    x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(seed + 1)) * 2.0
    with torch.no_grad():
        want = parent(x)
    n = 0
    ms = morphisms or [morphism(op, g.space) for op in morphism_ops(g.space)]
    for m in ms:
        for step in m.sites(g, input_shape=shape):
            child_g = m.apply(g, step)
            assert child_g != g
            child = build(child_g, shape, n_classes, seed + 7)
            m.transfer(parent, child, step)
            child.eval()
            with torch.no_grad():
                got = child(x)
            err = max_error(got, want)
            assert err <= TOL, f"{step} on {g} for {shape}: max error {err:.3g}"
            n += 1
    # the parent is untouched
    with torch.no_grad():
        assert torch.equal(parent(x), want)
    return n


@HYP
@given(seed=st.integers(0, 2**31 - 1), shape=input_shapes, n_classes=st.integers(2, 7))
def test_chain_morphisms_preserve_the_function(seed, shape, n_classes):
    g = CHAIN.sample(np.random.default_rng(seed))
    check_every_site(g, shape, n_classes, seed % 10_000)


@HYP
@given(seed=st.integers(0, 2**31 - 1), shape=input_shapes, noise=st.floats(0.01, 0.5))
def test_chain_widen_with_symmetry_breaking_noise_preserves_the_function(seed, shape, noise):
    g = CHAIN.sample(np.random.default_rng(seed))
    check_every_site(g, shape, 3, seed % 10_000, morphisms=[ChainWiden(noise=noise)])


@HYP
@given(seed=st.integers(0, 2**31 - 1), shape=input_shapes, n_classes=st.integers(2, 7))
def test_dag_morphisms_preserve_the_function(seed, shape, n_classes):
    g = DAG.sample(np.random.default_rng(seed))
    check_every_site(g, shape, n_classes, seed % 10_000)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), shape=input_shapes)
def test_dag_morphisms_with_restricted_ops(seed, shape):
    space = DagSpace(max_nodes=6, width=3, ops=["conv5", "sepconv3", "maxpool3", "identity"])
    g = space.sample(np.random.default_rng(seed))
    parent = trained_ish(build(g, shape, 4, 0), seed)
    x = torch.randn(4, *shape)
    for step in morph_sites(g, space=space):
        child_g = apply_steps(g, [step])
        space.validate(child_g)
        m = morphism_for(g, step)
        child = build(child_g, shape, 4, 1)
        m.transfer(parent, child, step)
        with torch.no_grad():
            assert max_error(child.eval()(x), parent(x)) <= TOL


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_steps=st.integers(1, 4),
    space_kind=st.sampled_from(["chain", "dag"]),
    shape=input_shapes,
)
def test_morph_child_replays_a_lineage(seed, n_steps, space_kind, shape):
    space = CHAIN if space_kind == "chain" else DAG
    rng = np.random.default_rng(seed)
    g = space.sample(rng)
    out = random_morphisms(g, rng, n_steps, space=space, input_shape=shape)
    if out is None:
        return
    child_g, steps = out
    assert 1 <= len(steps) <= n_steps and child_g.key != g.key
    space.validate(child_g)
    parent = trained_ish(build(g, shape, 3, 0), seed)
    state = {k: v.clone() for k, v in parent.state_dict().items()}
    got_g, child_state = morph_child(g, state, steps, shape, 3, seed=5)
    assert got_g == child_g == apply_steps(g, steps)
    child = build(child_g, shape, 3, 9)
    child.load_state_dict(child_state)
    x = torch.randn(5, *shape)
    with torch.no_grad():
        assert max_error(child.eval()(x), parent(x)) <= TOL
    # steps survive the JSON round trip (the lineage tag)
    assert steps_from_json(steps_to_json(steps)) == steps


def test_every_operator_of_the_issue_is_registered():
    assert set(morphism_ops("chain-v1")) == {"deepen", "widen", "enlarge_kernel"}
    assert set(morphism_ops("dag-v1")) == {"deepen", "widen", "skip", "enlarge_kernel"}
    assert edit_ops("chain-v1") == morphism_ops("chain-v1") and edit_ops("dag-v1") == morphism_ops("dag-v1")
    assert all(isinstance(morphism(op, "dag-v1"), Morphism) for op in morphism_ops("dag-v1"))
    assert edit_ops("cell-v1") == [] and morph_sites(ChainSpace().sample(np.random.default_rng(0)), ops=["nope"]) == []


def test_space_filter_keeps_children_in_the_space(chain_space):
    rng = np.random.default_rng(3)
    for _ in range(30):
        g = chain_space.sample(rng)
        for step in morph_sites(g, space=chain_space):
            chain_space.validate(apply_steps(g, [step]))
    dag = DagSpace(max_nodes=3)
    for _ in range(30):
        g = dag.sample(rng)
        for step in morph_sites(g, space=dag):
            dag.validate(apply_steps(g, [step]))


def test_deepen_only_after_non_negative_outputs():
    g = CHAIN.make(
        [
            {"op": "conv", "kernel": 3, "width": 8, "act": "tanh"},
            {"op": "conv", "kernel": 3, "width": 8, "act": "relu"},
            {"op": "maxpool"},
            {"op": "dense", "width": 8, "act": "gelu"},
            {"op": "dense", "width": 16, "act": "relu"},
        ]
    )
    sites = {(s.site, s.param("layer")) for s in morph_sites(g, ops=["deepen"])}
    # after the tanh conv: no; after the relu conv and after its pooling: yes; after gelu: no
    assert sites == {((2,), "conv"), ((2,), "sepconv"), ((3,), "conv"), ((3,), "sepconv"), ((5,), "dense")}
    dag = DagSpace(max_nodes=4)
    d = dag.make(
        [
            {"op": "conv3", "merge": "add", "inputs": [0]},
            {"op": "identity", "merge": "concat", "inputs": [0, 1]},
            {"op": "maxpool3", "merge": "add", "inputs": [2]},
        ]
    )
    assert {s.site for s in morph_sites(d, ops=["deepen"])} == {(0,), (1,)}


def test_widen_site_that_would_change_the_flattened_grid_is_left_out_and_refused():
    # 1 x 40 signal, conv 64 -> 64 * 40 = 2560 features; 128 wide: 5120 > 4096 -> pooled to 32
    space = ChainSpace(max_layers=3, kernels=[3], widths=[64, 128], dense_widths=[16])
    g = space.make([{"op": "conv", "kernel": 3, "width": 64, "act": "relu"}])
    step = MorphismStep.make("widen", (0,), width=128)
    assert step in morph_sites(g, space=space)
    assert step not in morph_sites(g, space=space, input_shape=(1, 40))
    assert step in morph_sites(g, space=space, input_shape=(1, 20))
    parent = build(g, (1, 40), 3, 0)
    child = build(apply_steps(g, [step]), (1, 40), 3, 0)
    with pytest.raises(MorphismError, match="flattened layout"):
        morphism_for(g, step).transfer(parent, child, step)


def test_flat_grid_mirrors_the_builder():
    from workbench.nn.chain import MAX_FLAT_FEATURES

    assert CHAIN_MAX_FLAT_FEATURES == MAX_FLAT_FEATURES
    rng = np.random.default_rng(0)
    space = ChainSpace(max_layers=5, widths=[16, 64, 128], dense_widths=[16])
    for shape in [(1, 40), (1, 8, 8), (3, 28, 28), (2, 300)]:
        for _ in range(20):
            g = space.sample(rng)
            c, grid = chain_flat_grid(g.value["layers"], shape)
            net = build_model(g, shape, 2)
            first = net.classifier[0]
            assert first.in_features == c * int(np.prod(grid))


def test_apply_rejects_steps_that_do_not_apply():
    g = CHAIN.make([{"op": "conv", "kernel": 3, "width": 8, "act": "tanh"}])
    with pytest.raises(InvalidGenotype):
        apply_steps(g, [MorphismStep.make("deepen", (1,), layer="conv", width=8, kernel=3)])
    with pytest.raises(InvalidGenotype):
        apply_steps(g, [MorphismStep.make("widen", (0,), width=4)])
    with pytest.raises(InvalidGenotype):
        apply_steps(g, [MorphismStep.make("skip", (0, 1))])
    with pytest.raises(InvalidGenotype):
        apply_steps(g, [MorphismStep.make("enlarge_kernel", (0,), kernel=4)])
    # other valid targets than the default candidates are accepted
    assert apply_steps(g, [MorphismStep.make("widen", (0,), width=12)]).value["layers"][0]["width"] == 12
    assert apply_steps(g, [MorphismStep.make("enlarge_kernel", (0,), kernel=7)]).value["layers"][0]["kernel"] == 7


def test_step_json_accepts_the_dataclass_layout():
    import json
    from dataclasses import asdict

    s = MorphismStep.make("widen", (np.int64(2),), width=np.int64(32))
    assert s.site == (2,) and s.param("width") == 32 and type(s.param("width")) is int
    assert steps_from_json(json.dumps([asdict(s)])) == (s,)
    assert steps_from_json(steps_to_json([s])) == (s,)
    assert steps_from_json("") == ()
    with pytest.raises(InvalidGenotype):
        steps_from_json("{")
    with pytest.raises(InvalidGenotype):
        steps_from_json('[{"site": []}]')


def test_morph_child_refuses_weights_of_another_genotype():
    g = CHAIN.make([{"op": "conv", "kernel": 3, "width": 8, "act": "relu"}])
    other = CHAIN.make([{"op": "conv", "kernel": 3, "width": 16, "act": "relu"}])
    state = build(other, (1, 8, 8), 3, 0).state_dict()
    with pytest.raises(MorphismError, match="do not fit"):
        morph_child(g, state, [], (1, 8, 8), 3)
    with pytest.raises(MorphismError, match="do not fit"):
        morph_child(g, {"garbage": torch.zeros(1)}, [], (1, 8, 8), 3)


def test_inherit_state_checks_the_proposed_genotype():
    g = CHAIN.make([{"op": "conv", "kernel": 3, "width": 8, "act": "relu"}])
    step = MorphismStep.make("widen", (0,), width=16)
    state = build(g, (1, 8, 8), 3, 0).state_dict()
    child_state, notes = inherit_state(g, state, [step], apply_steps(g, [step]), (1, 8, 8), 3)
    assert child_state["features.0.0.weight"].shape[0] == 16 and notes == {}
    with pytest.raises(MorphismError, match="not the proposed"):
        inherit_state(g, state, [step], g, (1, 8, 8), 3)
    with pytest.raises(MorphismError, match="do not apply"):
        inherit_state(g, state, [MorphismStep.make("skip", (0, 1))], g, (1, 8, 8), 3)


def test_weights_from_another_task_keep_matching_tensors_and_fresh_head():
    space = ChainSpace(max_layers=4, kernels=[3], widths=[8], dense_widths=[16])
    g = space.make(
        [
            {"op": "conv", "kernel": 3, "width": 8, "act": "relu"},
            {"op": "maxpool"},
            {"op": "dense", "width": 16, "act": "relu"},
        ]
    )
    source = trained_ish(build(g, (1, 8, 8), 10, 0), 1).state_dict()  # digits-shaped
    net = build(g, (1, 28, 28), 10, 3)  # MNIST-shaped: the first dense layer differs
    fresh_head = net.classifier[-1].weight.detach().clone()
    plant = load_matching(net, source)
    assert "features.0.0.weight" in plant.kept and "features.0.1.running_var" in plant.kept
    assert "classifier.0.weight" in plant.fresh  # 8*14*14 inputs, not 8*4*4
    assert "classifier.2.weight" in plant.fresh  # the head: other task, other classes
    assert torch.equal(net.classifier[-1].weight, fresh_head)
    assert torch.equal(plant.state["features.0.0.weight"], source["features.0.0.weight"])
    # with steps: carried over, then morphed, in this task's shapes
    step = MorphismStep.make("widen", (0,), width=16)
    wide_space = ChainSpace(max_layers=4, kernels=[3], widths=[8, 16], dense_widths=[16])
    child_g = apply_steps(g, [step])
    wide_space.validate(child_g)
    state, notes = inherit_state(g, source, [step], child_g, (1, 28, 28), 10, other_task=True)
    assert "another task" in notes["transfer"] and state["features.0.0.weight"].shape[0] == 16
    # 1-D weights into a 2-D task: only shape-free tensors (BatchNorm) fit, never a crash
    source_1d = build(g, (1, 40), 10, 0).state_dict()
    state, notes = inherit_state(g, source_1d, [], g, (1, 8, 8), 10, other_task=True)
    assert "kept" in notes["transfer"]


def test_dag_widen_keeps_the_key_but_not_the_width():
    g = DAG.make([{"op": "conv3", "merge": "add", "inputs": [0]}])
    (step,) = morph_sites(g, ops=["widen"])
    child = apply_steps(g, [step])
    assert child.key == g.key and child.value["macro"]["width"] == 8
    assert set(DAG_OPS) >= {"conv3"}


def test_random_morphisms_is_deterministic_and_none_without_sites():
    g = CHAIN.sample(np.random.default_rng(1))
    a = random_morphisms(g, np.random.default_rng(2), 3, space=CHAIN)
    b = random_morphisms(g, np.random.default_rng(2), 3, space=CHAIN)
    assert a == b
    tiny = ChainSpace(max_layers=1, kernels=[3], widths=[8], dense_widths=[8], activations=["tanh"])
    t = tiny.make([{"op": "conv", "kernel": 3, "width": 8, "act": "tanh"}])
    assert random_morphisms(t, np.random.default_rng(0), 2, space=tiny) is None
