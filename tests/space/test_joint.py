"""Joint architecture + training-hyperparameter space: sampling, mutation, keys, encodings, networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import InvalidGenotype, UserError
from workbench.nn.build import build_model
from workbench.space.genotype import Genotype
from workbench.space.joint import JointSpace
from workbench.space.registry import make_space, space_class

torch.set_num_threads(1)

BASES = {
    "dag": {"kind": "dag", "max_nodes": 4, "width": 8},
    "cell": {"kind": "cell", "width": 8},
    "chain": {"kind": "chain", "max_layers": 3},
}


def _space(name: str) -> JointSpace:
    try:
        return JointSpace(BASES[name])
    except (UserError, ImportError) as exc:  # pragma: no cover - another space not there yet
        pytest.skip(f"base space {name!r} unavailable: {exc}")


SPACES = {name: _space(name) for name in ("dag", "cell")}
seeds = st.integers(min_value=0, max_value=2**32 - 1)
names = st.sampled_from(sorted(SPACES))


def joint(arch: Genotype, hp: dict) -> Genotype:
    return Genotype.of("joint-v1", {"arch": {"space": arch.space, "spec": arch.value}, "hp": hp})


HP = {"lr": 0.01, "weight_decay": 1e-4, "batch_size": 64, "epochs": 10}


@settings(max_examples=100, deadline=None)
@given(names, seeds)
def test_sample_validates_and_carries_architecture_and_hyperparameters(name, seed):
    space = SPACES[name]
    g = space.sample(np.random.default_rng(seed))
    space.validate(g)
    arch = JointSpace.architecture(g)
    assert arch.space == space.inner.name
    space.inner.validate(arch)
    hp = JointSpace.hyperparameters(g)
    assert set(hp) == {"lr", "weight_decay", "batch_size", "epochs"}
    assert 1e-4 <= hp["lr"] <= 1e-1 and 1e-6 <= hp["weight_decay"] <= 1e-2
    assert hp["batch_size"] in (32, 64, 128, 256) and hp["epochs"] in (5, 10, 20)
    assert isinstance(hp["batch_size"], int) and isinstance(hp["lr"], float)


@settings(max_examples=100, deadline=None)
@given(names, seeds)
def test_mutation_edits_either_the_architecture_or_one_hyperparameter(name, seed):
    space = SPACES[name]
    rng = np.random.default_rng(seed)
    g = space.sample(rng)
    child = space.mutate(g, rng)
    space.validate(child)
    assert child != g and child.key != g.key
    arch_changed = JointSpace.architecture(child) != JointSpace.architecture(g)
    a, b = JointSpace.hyperparameters(g), JointSpace.hyperparameters(child)
    hp_changed = [k for k in a if a[k] != b[k]]
    assert arch_changed + len(hp_changed) == 1
    if hp_changed == ["batch_size"] or hp_changed == ["epochs"]:
        values = space.choices[hp_changed[0]]
        k = hp_changed[0]
        assert abs(values.index(a[k]) - values.index(b[k])) == 1


def test_continuous_steps_stay_in_range_and_are_local():
    space = JointSpace(BASES["dag"], lr=(1e-3, 1e-2), weight_decay=(1e-5, 1e-5), batch_size=[64], epochs=[5])
    rng = np.random.default_rng(3)
    g = space.make(space.inner.sample(rng), {"lr": 1e-2, "weight_decay": 1e-5, "batch_size": 64, "epochs": 5})
    ratios = []
    for _ in range(60):
        child = space.mutate(g, rng)
        space.validate(child)
        lr = JointSpace.hyperparameters(child)["lr"]
        if lr != 1e-2:
            ratios.append(math.log(1e-2 / lr))
            assert 1e-3 <= lr < 1e-2  # at the upper bound a step can only go down
    assert ratios and max(ratios) <= math.log(10) and min(ratios) > 0


@settings(max_examples=50, deadline=None)
@given(names, seeds)
def test_json_round_trip_keeps_genotype_and_key(name, seed):
    g = SPACES[name].sample(np.random.default_rng(seed))
    back = Genotype.from_json(g.to_json())
    assert back == g and back.key == g.key


def test_key_is_inner_canonical_plus_rounded_hyperparameters():
    space = SPACES["cell"]
    inner = space.inner
    a = inner.make(["conv3x3", "avgpool3x3", "none", "skip", "conv1x1", "conv3x3"])
    b = inner.make(["avgpool3x3", "conv3x3", "none", "skip", "conv3x3", "conv1x1"])  # nodes 1, 2 swapped
    assert a != b and a.key == b.key
    assert joint(a, HP).key == joint(b, HP).key
    # hyperparameters are compared at 3 significant digits
    assert joint(a, {**HP, "lr": 0.0100001}).key == joint(a, HP).key
    assert joint(a, {**HP, "lr": 0.0101}).key != joint(a, HP).key
    assert joint(a, {**HP, "epochs": 20}).key != joint(a, HP).key
    # and the inner space is part of the identity
    dag = SPACES["dag"].inner.sample(np.random.default_rng(0))
    assert JointSpace.canonical(joint(dag, HP)).startswith("dag-v1|")


@pytest.mark.parametrize("encoding", ["onehot", "path"])
def test_encoding_is_inner_encoding_then_normalised_hyperparameters(encoding):
    space = SPACES["dag"]
    rng = np.random.default_rng(5)
    gs = [space.sample(rng) for _ in range(20)]
    x = space.encode(gs, encoding)
    inner = space.inner.encode([JointSpace.architecture(g) for g in gs], encoding)
    assert x.shape == (20, inner.shape[1] + 4)
    assert space.encode([], encoding).shape == (0, inner.shape[1] + 4)
    assert np.array_equal(x[:, :-4], inner)
    assert (x[:, -4:] >= 0).all() and (x[:, -4:] <= 1).all()
    arch = gs[0].value["arch"]
    lo = joint(
        Genotype.of(arch["space"], arch["spec"]), {"lr": 1e-4, "weight_decay": 1e-2, "batch_size": 32, "epochs": 10}
    )
    assert space.encode([lo], encoding)[0, -4:].tolist() == [0.0, 1.0, 0.0, 0.5]
    mid = joint(JointSpace.architecture(lo), {**HP, "lr": 10**-2.5, "weight_decay": 1e-4})
    np.testing.assert_allclose(space.encode([mid], encoding)[0, -4:-2], [0.5, 0.5])


def test_encoding_follows_the_inner_spaces_encodings():
    assert SPACES["cell"].encodings == ("onehot", "path")
    with pytest.raises(UserError, match="encoding must be one of"):
        SPACES["cell"].encode([], "zcp")


@settings(max_examples=30, deadline=None)
@given(names, seeds, st.sampled_from([(1, 40), (1, 8, 8)]))
def test_builds_the_network_of_its_architecture(name, seed, shape):
    g = SPACES[name].sample(np.random.default_rng(seed))
    net = build_model(g, shape, 10).eval()
    with torch.no_grad():
        assert net(torch.randn(1, *shape)).shape == (1, 10)


def test_chain_base_works_when_available(rng):
    space = _space("chain")
    g = space.sample(rng)
    space.validate(g)
    assert JointSpace.architecture(g).space == "chain-v1"
    child = space.mutate(g, rng)
    space.validate(child)
    assert space.encode([g, child]).shape[0] == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: {**s, "hp": {**s["hp"], "lr": 0.5}}, r"'lr' must be in \[0.0001, 0.1\]; got 0.5"),
        (
            lambda s: {**s, "hp": {**s["hp"], "batch_size": 48}},
            r"'batch_size' must be one of \[32, 64, 128, 256\]; got 48",
        ),
        (lambda s: {**s, "hp": {**s["hp"], "epochs": 2.5}}, "'epochs' must be a positive integer"),
        (lambda s: {**s, "hp": {"lr": 0.01}}, "must have keys"),
        (lambda s: {**s, "hp": {**s["hp"], "weight_decay": -1}}, "positive finite number"),
        (lambda s: {"arch": s["arch"]}, r"must have keys \['arch', 'hp'\]"),
        (
            lambda s: {**s, "arch": {"space": "cell-v1", "spec": {"edges": ["none"] * 6}}},
            "belongs to space 'cell-v1', expected 'dag-v1'",
        ),
        (lambda s: {**s, "arch": {"space": "dag-v1", "spec": {"nodes": []}}}, "1..4 nodes; got 0"),
        (lambda s: {**s, "arch": s["arch"]["spec"]}, "'arch' must be"),
    ],
)
def test_validation_errors_say_what_was_expected(change, message):
    space = SPACES["dag"]
    g = space.sample(np.random.default_rng(0))
    bad = Genotype.of("joint-v1", change(g.value))
    with pytest.raises(InvalidGenotype, match=message):
        space.validate(bad)
    assert not space.contains(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": {"max_nodes": 3}},
        {"base": {"kind": "nope"}},
        {"base": {"kind": "joint", "base": {"kind": "dag"}}},
        {"base": {"kind": "dag", "bogus": 1}},
        {"base": {"kind": "dag"}, "lr": (0.1, 0.01)},
        {"base": {"kind": "dag"}, "weight_decay": (0, 1e-3)},
        {"base": {"kind": "dag"}, "batch_size": []},
        {"base": {"kind": "dag"}, "epochs": [5, 5]},
    ],
)
def test_bad_settings_are_user_errors(kwargs):
    with pytest.raises(UserError):
        JointSpace(**kwargs)


def test_registered_and_rebuildable_from_settings():
    space = make_space("joint", base={"kind": "cell", "stages": 2}, epochs=[3])
    assert space_class("joint-v1") is JointSpace
    again = make_space("joint", **space.settings())
    assert again.settings() == space.settings()
    assert again.inner.settings()["stages"] == 2
    # a single choice fixes that hyperparameter
    g = again.sample(np.random.default_rng(0))
    assert JointSpace.hyperparameters(g)["epochs"] == 3
