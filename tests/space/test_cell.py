"""NAS-Bench-201-style cell space: sampling, mutation, validation, canonical keys, encodings, networks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import InvalidGenotype, UserError
from workbench.nn.build import build_model
from workbench.space.cell import CELL_OPS, EDGE_PAIRS, EDGES, CellSpace, live_ops
from workbench.space.genotype import Genotype
from workbench.space.registry import make_space, space_class

torch.set_num_threads(1)

SPACE = CellSpace()
seeds = st.integers(min_value=0, max_value=2**32 - 1)
ops6 = st.lists(st.sampled_from(CELL_OPS), min_size=6, max_size=6)


def cell(ops, macro=None) -> Genotype:
    spec = {"edges": dict(zip(EDGES, ops))}
    if macro is not None:
        spec["macro"] = macro
    return Genotype.of("cell-v1", spec)


def swapped(ops):
    """The same cell with intermediate nodes 1 and 2 renamed (needs edge 2<-1 = none)."""
    edge = dict(zip(EDGE_PAIRS, ops))
    rename = {0: 0, 1: 2, 2: 1, 3: 3}
    new = {(min(rename[i], rename[j]), max(rename[i], rename[j])): op for (i, j), op in edge.items()}
    return [new[p] for p in EDGE_PAIRS]


def reaches_output(ops) -> set[tuple[int, int]]:
    """Edges on some 0 -> 3 path of non-none edges, by enumerating the 4 paths."""
    edge = dict(zip(EDGE_PAIRS, ops))
    on = set()
    for route in ((0, 3), (0, 1, 3), (0, 2, 3), (0, 1, 2, 3)):
        hops = list(zip(route, route[1:]))
        if all(edge[h] != "none" for h in hops):
            on.update(hops)
    return on


# -- sampling, mutation, JSON -------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(seeds)
def test_sample_validates_and_mutation_changes_one_edge_and_the_key(seed):
    rng = np.random.default_rng(seed)
    g = SPACE.sample(rng)
    SPACE.validate(g)
    assert g.value["macro"] == {"stages": 3, "cells_per_stage": 1, "width": 16}
    child = SPACE.mutate(g, rng)
    SPACE.validate(child)
    assert child != g and child.key != g.key
    a, b = SPACE.ops_of(g), SPACE.ops_of(child)
    assert sum(x != y for x, y in zip(a, b)) == 1
    assert child.value["macro"] == g.value["macro"]


@settings(max_examples=100, deadline=None)
@given(seeds)
def test_json_round_trip_keeps_genotype_and_key(seed):
    g = SPACE.sample(np.random.default_rng(seed))
    back = Genotype.from_json(g.to_json())
    assert back == g and back.key == g.key and hash(back) == hash(g)


def test_list_layout_and_nb201_strings_read_the_same_cell():
    ops = ["conv3x3", "none", "skip", "avgpool3x3", "conv1x1", "conv3x3"]
    as_map = SPACE.make(dict(zip(EDGES, ops)))
    as_list = Genotype.of("cell-v1", {"edges": ops})
    SPACE.validate(as_list)
    assert SPACE.ops_of(as_list) == SPACE.ops_of(as_map) == tuple(ops)
    assert as_list.key == as_map.key
    text = SPACE.to_nb201(as_map)
    assert text == "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    assert SPACE.from_nb201(text) == as_map
    with pytest.raises(InvalidGenotype, match="NAS-Bench-201 string"):
        SPACE.from_nb201("|conv~0|")


# -- canonical keys -----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(ops6)
def test_key_and_encodings_are_invariant_under_relabelling_nodes_1_and_2(ops):
    ops[2] = "none"  # renaming 1 <-> 2 is a valid relabelling only without the 2<-1 edge
    a, b = cell(ops), cell(swapped(ops))
    assert a.key == b.key
    for encoding in SPACE.encodings:
        x = SPACE.encode([a, b], encoding)
        assert np.array_equal(x[0], x[1])


@settings(max_examples=100, deadline=None)
@given(ops6, st.data())
def test_key_ignores_edges_off_every_input_output_path(ops, data):
    on = reaches_output(ops)
    assert {p for p, op in zip(EDGE_PAIRS, live_ops(ops)) if op != "none"} == on
    g = cell(ops)
    changed = list(ops)
    for t, pair in enumerate(EDGE_PAIRS):
        if pair not in on:
            changed[t] = data.draw(st.sampled_from(CELL_OPS))
    # changing inert edges keeps the key unless it creates a new input -> output path
    if reaches_output(changed) == on:
        assert cell(changed).key == g.key


def test_known_equivalences_and_differences():
    base = ["conv3x3", "none", "none", "none", "conv1x1", "none"]  # 0 -conv3-> 1 -conv1-> 3
    # an edge into a node that reaches nothing, and one out of a node nothing reaches, are inert
    assert cell(["conv3x3", "avgpool3x3", "none", "none", "conv1x1", "none"]).key == cell(base).key
    assert cell(["conv3x3", "none", "skip", "none", "conv1x1", "none"]).key == cell(base).key
    # the same path through node 2 instead of node 1
    assert cell(["none", "conv3x3", "none", "none", "none", "conv1x1"]).key == cell(base).key
    # order along the path matters
    assert cell(["conv1x1", "none", "none", "none", "conv3x3", "none"]).key != cell(base).key
    # a cell without any input -> output path is the zero cell, whatever else it holds
    assert cell(["conv3x3", "skip", "conv1x1", "none", "none", "none"]).key == cell(["none"] * 6).key
    # the macro is a task setting, not part of the key
    assert cell(base, {"stages": 2, "width": 8}).key == cell(base).key


def test_enumeration_has_every_cell_and_fewer_unique_keys():
    cells = list(SPACE.enumerate())
    assert len(cells) == 5**6 == 15_625
    assert len(set(cells)) == 15_625
    keys = {g.key for g in cells}
    # pruning edges off every input -> output path and ordering nodes 1 and 2 leave 8,765
    assert len(keys) == 8_765
    # independent count: brute force over the two node labellings of the pruned cells
    forms = set()
    for ops in itertools.product(CELL_OPS, repeat=6):
        live = live_ops(ops)
        forms.add(min(tuple(live), tuple(swapped(live))) if live[2] == "none" else tuple(live))
    assert len(forms) == len(keys)


# -- encodings ----------------------------------------------------------------------------------


def test_encodings_have_fixed_width_and_known_entries(rng):
    gs = [SPACE.sample(rng) for _ in range(30)]
    assert SPACE.encode(gs, "onehot").shape == (30, 36)
    assert SPACE.encode(gs, "path").shape == (30, 84)
    g = cell(["conv3x3", "none", "skip", "skip", "conv1x1", "avgpool3x3"])
    onehot = SPACE.encode([g], "onehot")[0]
    assert list(onehot[:6]) == [1, 0, 1, 1, 1, 1]
    assert onehot[6:].reshape(6, 5).sum(axis=1).tolist() == [1] * 6
    assert onehot[6 + 0 * 5 + CELL_OPS.index("conv3x3")] == 1
    # paths: 0-3 (skip), 0-1-3 (conv3x3, conv1x1), 0-1-2-3 (conv3x3, skip, avgpool3x3)
    path = SPACE.encode([g], "path")[0]
    assert path.sum() == 3
    index = SPACE._path_index
    assert path[index[("skip",)]] == 1
    assert path[index[("conv3x3", "conv1x1")]] == 1
    assert path[index[("conv3x3", "skip", "avgpool3x3")]] == 1
    with pytest.raises(UserError, match="encoding must be one of"):
        SPACE.encode([g], "graph")


# -- networks -----------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(seeds, st.sampled_from([(1, 40), (1, 8, 8)]))
def test_every_genotype_builds_a_working_network(seed, shape):
    g = SPACE.sample(np.random.default_rng(seed))
    net = build_model(g, shape, 10).eval()
    with torch.no_grad():
        out = net(torch.randn(1, *shape))
    assert out.shape == (1, 10)
    assert torch.isfinite(out).all()


def test_macro_from_settings_shapes_the_network():
    space = CellSpace(stages=2, cells_per_stage=2, width=4)
    g = space.make(["conv3x3", "skip", "conv1x1", "none", "avgpool3x3", "conv3x3"])
    assert g.value["macro"] == {"stages": 2, "cells_per_stage": 2, "width": 4}
    net = build_model(g, (1, 8, 8), 3)
    assert net.head.in_features == 8  # width doubled once
    assert sum(type(m).__name__ == "Cell" for m in net.modules()) == 4
    loss = net(torch.randn(4, 1, 8, 8)).sum()
    loss.backward()
    # a genotype without a macro builds the default skeleton
    bare = cell(SPACE.ops_of(g))
    assert build_model(bare, (1, 8, 8), 3).head.in_features == 64


def test_isomorphic_cells_build_networks_of_equal_size():
    ops = ["conv3x3", "avgpool3x3", "none", "skip", "conv1x1", "conv3x3"]
    sizes = {sum(p.numel() for p in build_model(cell(o), (1, 8, 8), 3).parameters()) for o in (ops, swapped(ops))}
    assert len(sizes) == 1


def test_zero_cell_still_gives_logits():
    net = build_model(cell(["none"] * 6), (1, 40), 4).eval()
    assert net(torch.randn(2, 1, 40)).shape == (2, 4)


# -- validation and settings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (["conv3x3"] * 6, "keys must be 'edges'"),
        ({"ops": ["none"] * 6}, "keys must be 'edges'"),
        ({"edges": ["none"] * 5}, "hold 6 ops .*got 5"),
        ({"edges": {"1<-0": "none"}}, "must name exactly"),
        ({"edges": dict(zip(EDGES, ["none"] * 5 + ["conv5x5"]))}, r"edge 3<-2: op must be one of .*got 'conv5x5'"),
        ({"edges": "none"}, "mapping .* or a list of 6 ops"),
        ({"edges": ["none"] * 6, "macro": {"depth": 2}}, "macro' keys must be among"),
        ({"edges": ["none"] * 6, "macro": {"stages": 0}}, "'stages' must be a positive integer; got 0"),
    ],
)
def test_validation_errors_say_what_was_expected(spec, message):
    g = Genotype.of("cell-v1", spec)
    with pytest.raises(InvalidGenotype, match=message):
        SPACE.validate(g)
    assert not SPACE.contains(g)


def test_wrong_space_is_rejected():
    with pytest.raises(InvalidGenotype, match="expected 'cell-v1'"):
        SPACE.validate(Genotype.of("dag-v1", {"edges": ["none"] * 6}))


@pytest.mark.parametrize("settings_", [{"stages": 0}, {"cells_per_stage": -1}, {"width": 2.5}])
def test_bad_settings_are_user_errors(settings_):
    with pytest.raises(UserError):
        CellSpace(**settings_)


def test_registered_and_rebuildable_from_settings():
    space = make_space("cell", stages=2, cells_per_stage=1, width=8)
    assert space_class("cell-v1") is CellSpace
    assert make_space("cell", **space.settings()).settings() == space.settings()
