"""Chain-structured space: sampling, mutation, validation, identity, encodings, networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import InvalidGenotype
from workbench.nn.build import build_model
from workbench.space.chain import ChainSpace
from workbench.space.genotype import Genotype

SPACE = ChainSpace()
seeds = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=200, deadline=None)
@given(seeds)
def test_sample_validates_and_mutation_is_one_valid_edit(seed):
    rng = np.random.default_rng(seed)
    g = SPACE.sample(rng)
    SPACE.validate(g)
    child = SPACE.mutate(g, rng)
    SPACE.validate(child)
    assert child != g and child.key != g.key
    a, b = g.value["layers"], child.value["layers"]
    assert abs(len(a) - len(b)) <= 1


@settings(max_examples=100, deadline=None)
@given(seeds)
def test_json_round_trip_and_stable_key(seed):
    g = SPACE.sample(np.random.default_rng(seed))
    back = Genotype.from_json(g.to_json())
    assert back == g and back.key == g.key and hash(back) == hash(g)


@settings(max_examples=40, deadline=None)
@given(seeds, st.sampled_from([(1, 40), (1, 8, 8), (3, 28, 28)]))
def test_every_genotype_builds_a_working_network(seed, shape):
    g = SPACE.sample(np.random.default_rng(seed))
    net = build_model(g, shape, 7)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, *shape))
    assert out.shape == (2, 7)


def test_encoding_has_fixed_width_and_separates_genotypes(rng):
    gs = [SPACE.sample(rng) for _ in range(30)]
    x = SPACE.encode(gs)
    assert x.shape == (30, SPACE.encode(gs[:1]).shape[1])
    keys = {g.key for g in gs}
    assert len({tuple(row) for row in x}) == len(keys)


@pytest.mark.parametrize(
    "layers, message",
    [
        ([], "1..6 layers"),
        ([{"op": "dense", "width": 64, "act": "relu"}, {"op": "maxpool"}], "after a dense layer"),
        ([{"op": "conv", "kernel": 4, "width": 32, "act": "relu"}], "kernel must be one of"),
        ([{"op": "conv", "kernel": 3, "width": 32}], "expected keys"),
        ([{"op": "attention"}], "op must be one of"),
        ([{"op": "conv", "kernel": 3, "width": 32, "act": "swish"}], "act must be one of"),
    ],
)
def test_invalid_genotypes_get_clear_errors(layers, message):
    with pytest.raises(InvalidGenotype, match=message):
        SPACE.validate(Genotype.of("chain-v1", {"layers": layers}))


def test_other_space_and_malformed_json_rejected():
    with pytest.raises(InvalidGenotype, match="expected 'chain-v1'"):
        SPACE.validate(Genotype.of("cell-v1", {"layers": []}))
    with pytest.raises(InvalidGenotype, match="malformed"):
        Genotype.from_json("{not json")
    with pytest.raises(InvalidGenotype, match="exactly 'space' and 'spec'"):
        Genotype.from_json('{"space": "chain-v1"}')


def test_contains_the_convolutional_models_that_matter():
    g = SPACE.make(
        [
            {"op": "conv", "kernel": 5, "width": 64, "act": "relu"},
            {"op": "conv", "kernel": 3, "width": 64, "act": "relu"},
            {"op": "maxpool"},
            {"op": "sepconv", "kernel": 3, "width": 64, "act": "gelu"},
            {"op": "dense", "width": 256, "act": "relu"},
        ]
    )
    net = build_model(g, (1, 40), 10)
    kinds = [type(m).__name__ for m in net.modules()]
    assert "Conv1d" in kinds and "MaxPool1d" in kinds and "Linear" in kinds
