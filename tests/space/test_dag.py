"""Multi-branch DAG space: sampling, mutation, validation, canonical keys, encodings, networks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import InvalidGenotype, UserError
from workbench.nn.build import build_model
from workbench.space.dag import DAG_OPS, DagNode, DagSpace, read_dag, reduce_dag
from workbench.space.genotype import Genotype
from workbench.space.registry import make_space, space_class

torch.set_num_threads(1)

SPACE = DagSpace()
# few ops and nodes, so that random pairs are often isomorphic
SMALL = DagSpace(max_nodes=4, ops=("conv3", "maxpool3", "identity"))
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def nodes_of(g: Genotype) -> list[DagNode]:
    return list(read_dag(g)[0])


def genotype(nodes, width: int = 16) -> Genotype:
    items = [n.as_dict() if isinstance(n, DagNode) else n for n in nodes]
    return Genotype.of("dag-v1", {"nodes": items, "macro": {"width": width}})


def relabel(g: Genotype, rng: np.random.Generator) -> Genotype:
    """The same graph with its intermediate nodes renumbered by a random topological order."""
    nodes, macro = read_dag(g)
    n = len(nodes)
    order: list[int] = []
    placed = {0}
    while len(order) < n - 1:
        ready = [k for k in range(1, n) if k not in placed and set(nodes[k - 1].inputs) <= placed]
        k = ready[int(rng.integers(len(ready)))]
        order.append(k)
        placed.add(k)
    new_index = {0: 0, n: n} | {old: new for new, old in enumerate(order, start=1)}
    out = []
    for old in [*order, n]:
        node = nodes[old - 1]
        inputs = [new_index[i] for i in node.inputs]
        rng.shuffle(inputs)  # inputs are a set: their order is irrelevant
        out.append({"op": node.op, "merge": node.merge, "inputs": [int(i) for i in inputs]})
    return Genotype.of("dag-v1", {"nodes": out, "macro": macro})


def brute_isomorphic(a: tuple[DagNode, ...], b: tuple[DagNode, ...]) -> bool:
    """Isomorphism of two reduced graphs by trying every relabelling of b's intermediate nodes."""
    if len(a) != len(b):
        return False
    n = len(a)
    target = [(x.op, x.merge, tuple(sorted(x.inputs))) for x in a]
    for perm in itertools.permutations(range(1, n)):
        new = {0: 0, n: n} | {old: new for new, old in enumerate(perm, start=1)}
        relabelled = [None] * n
        for old in range(1, n + 1):
            x = b[old - 1]
            relabelled[new[old] - 1] = (x.op, x.merge, tuple(sorted(new[i] for i in x.inputs)))
        if relabelled == target:
            return True
    return False


# -- sampling, mutation, JSON -------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(seeds)
def test_sample_validates_and_mutation_is_a_valid_different_genotype(seed):
    rng = np.random.default_rng(seed)
    g = SPACE.sample(rng)
    SPACE.validate(g)
    assert 1 <= len(g.value["nodes"]) <= SPACE.max_nodes
    child = SPACE.mutate(g, rng)
    SPACE.validate(child)
    assert child != g and child.key != g.key
    assert abs(len(child.value["nodes"]) - len(g.value["nodes"])) <= 1
    assert child.value["macro"] == g.value["macro"]


@settings(max_examples=50, deadline=None)
@given(seeds)
def test_mutation_is_deterministic_given_the_generator(seed):
    g = SPACE.sample(np.random.default_rng(seed))
    assert SPACE.mutate(g, np.random.default_rng(seed)) == SPACE.mutate(g, np.random.default_rng(seed))


@settings(max_examples=50, deadline=None)
@given(seeds, st.integers(1, 6), st.integers(1, 3))
def test_spaces_with_other_settings_sample_and_mutate_within_them(seed, max_nodes, n_ops):
    space = DagSpace(max_nodes=max_nodes, ops=DAG_OPS[-n_ops:] if max_nodes > 1 else DAG_OPS[:2], width=8)
    rng = np.random.default_rng(seed)
    g = space.sample(rng)
    space.validate(g)
    child = space.mutate(g, rng)
    space.validate(child)
    assert child != g


@settings(max_examples=100, deadline=None)
@given(seeds)
def test_json_round_trip_keeps_genotype_and_key(seed):
    g = SPACE.sample(np.random.default_rng(seed))
    back = Genotype.from_json(g.to_json())
    assert back == g and back.key == g.key and hash(back) == hash(g)


# -- canonical keys -----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(seeds)
def test_key_and_encodings_are_invariant_under_relabelling(seed):
    rng = np.random.default_rng(seed)
    g = SPACE.sample(rng)
    h = relabel(g, rng)
    SPACE.validate(h)
    assert h.key == g.key
    for encoding in SPACE.encodings:
        x = SPACE.encode([g, h], encoding)
        assert np.array_equal(x[0], x[1])


@settings(max_examples=100, deadline=None)
@given(seeds, seeds)
def test_keys_are_equal_exactly_when_reduced_graphs_are_isomorphic(seed_a, seed_b):
    a = SMALL.sample(np.random.default_rng(seed_a))
    rng = np.random.default_rng(seed_b)
    # half the time a relabelled mutation-free copy, otherwise an unrelated small genotype
    b = relabel(a, rng) if seed_b % 2 else SMALL.sample(rng)
    ra = reduce_dag(read_dag(a)[0])
    rb = reduce_dag(read_dag(b)[0])
    # the reduction itself relabels: compare against the raw (pruned, alias-free) graphs by brute force
    assert (a.key == b.key) == brute_isomorphic(ra, rb)


def test_isomorphic_graphs_written_differently_share_a_key():
    # 0 -> 1 (conv3), 0 -> 2 (maxpool3), 3 = concat(1, 2) conv5  vs. the branches swapped
    a = genotype(
        [
            {"op": "conv3", "merge": "add", "inputs": [0]},
            {"op": "maxpool3", "merge": "add", "inputs": [0]},
            {"op": "conv5", "merge": "concat", "inputs": [1, 2]},
        ]
    )
    b = genotype(
        [
            {"op": "maxpool3", "merge": "add", "inputs": [0]},
            {"op": "conv3", "merge": "add", "inputs": [0]},
            {"op": "conv5", "merge": "concat", "inputs": [2, 1]},
        ]
    )
    assert a != b and a.key == b.key
    assert SPACE.canonical(a) == SPACE.canonical(b)


def test_shared_and_separate_branches_are_different_networks():
    # two paths conv3(conv3(x)) that share their first conv vs. two independent ones: the
    # unfolded expressions agree, the graphs (and parameter counts) do not
    shared = genotype(
        [
            {"op": "conv3", "merge": "add", "inputs": [0]},
            {"op": "conv3", "merge": "add", "inputs": [1]},
            {"op": "conv3", "merge": "add", "inputs": [1]},
            {"op": "identity", "merge": "add", "inputs": [2, 3]},
        ]
    )
    separate = genotype(
        [
            {"op": "conv3", "merge": "add", "inputs": [0]},
            {"op": "conv3", "merge": "add", "inputs": [0]},
            {"op": "conv3", "merge": "add", "inputs": [1]},
            {"op": "conv3", "merge": "add", "inputs": [2]},
            {"op": "identity", "merge": "add", "inputs": [3, 4]},
        ]
    )
    assert shared.key != separate.key


@settings(max_examples=100, deadline=None)
@given(seeds)
def test_key_ignores_dead_nodes_single_input_merges_and_macro(seed):
    rng = np.random.default_rng(seed)
    g = SPACE.sample(rng)
    nodes = nodes_of(g)
    n = len(nodes)
    # a dead node just before the output: nothing reads it
    dead = DagNode(DAG_OPS[int(rng.integers(len(DAG_OPS)))], "concat", (int(rng.integers(n)),))
    with_dead = genotype([*nodes[:-1], dead, nodes[-1]])
    assert with_dead.key == g.key
    # the merge of a single-input node does not matter
    flipped = [
        DagNode(x.op, "concat" if x.merge == "add" else "add", x.inputs) if len(x.inputs) == 1 else x for x in nodes
    ]
    assert genotype(flipped).key == g.key
    # the macro (a task setting) is not part of the key
    assert genotype(nodes, width=4).key == g.key


def test_dead_node_ops_and_identity_aliases_do_not_matter():
    base = [
        {"op": "conv3", "merge": "add", "inputs": [0]},
        {"op": "sepconv5", "merge": "add", "inputs": [0]},  # dead: nothing reads node 2
        {"op": "conv5", "merge": "add", "inputs": [1]},
    ]
    other = [dict(base[0]), {"op": "avgpool3", "merge": "concat", "inputs": [0, 1]}, dict(base[2])]
    assert genotype(base).key == genotype(other).key
    # an identity node with one input is its input
    alias = [
        {"op": "conv3", "merge": "add", "inputs": [0]},
        {"op": "identity", "merge": "add", "inputs": [1]},
        {"op": "conv5", "merge": "add", "inputs": [2]},
    ]
    direct = [{"op": "conv3", "merge": "add", "inputs": [0]}, {"op": "conv5", "merge": "add", "inputs": [1]}]
    assert genotype(alias).key == genotype(direct).key
    # ... but reading x and an alias of x sums x twice: not the same as reading x once
    twice = [{"op": "identity", "merge": "add", "inputs": [0]}, {"op": "conv3", "merge": "add", "inputs": [0, 1]}]
    once = [{"op": "conv3", "merge": "add", "inputs": [0]}]
    assert genotype(twice).key != genotype(once).key
    # an identity output is its input
    assert genotype([*direct, {"op": "identity", "merge": "add", "inputs": [2]}]).key == genotype(direct).key


@settings(max_examples=40, deadline=None)
@given(seeds)
def test_equal_keys_build_networks_of_equal_size(seed):
    rng = np.random.default_rng(seed)
    g = SMALL.sample(rng)
    h = relabel(g, rng)
    sizes = [sum(p.numel() for p in build_model(x, (1, 8, 8), 3).parameters()) for x in (g, h)]
    assert sizes[0] == sizes[1]


# -- encodings ----------------------------------------------------------------------------------


def test_encodings_have_fixed_width_and_known_entries(rng):
    gs = [SPACE.sample(rng) for _ in range(40)]
    onehot = SPACE.encode(gs, "onehot")
    path = SPACE.encode(gs, "path")
    assert onehot.shape == (40, SPACE.onehot_width) == (40, 15 + 5 * 8)
    assert path.shape == (40, SPACE.path_width) == (40, 7 + 49 + 343)
    assert onehot.dtype == np.float64 and path.dtype == np.float64
    chain = genotype(
        [{"op": "conv3", "merge": "add", "inputs": [0]}, {"op": "conv5", "merge": "add", "inputs": [0, 1]}]
    )
    p = SPACE.encode([chain], "path")[0]
    index = SPACE._path_index
    assert p[index[("conv5",)]] == 1 and p[index[("conv3", "conv5")]] == 1 and p.sum() == 2
    o = SPACE.encode([chain], "onehot")[0]
    # slots: 0 stem, 1 the conv3 node, 5 (= max_nodes) the output
    assert o[:15].sum() == 3
    assert o[15 + DAG_OPS.index("conv3")] == 1 and o[15 + 4 * 8 + DAG_OPS.index("conv5")] == 1
    with pytest.raises(UserError, match="encoding must be one of"):
        SPACE.encode([chain], "graphviz")


def test_path_encoding_drops_paths_longer_than_the_limit():
    space = DagSpace(max_nodes=4, path_length=2)
    chain = genotype([{"op": "conv3", "merge": "add", "inputs": [i]} for i in range(3)])
    assert space.encode([chain], "path").sum() == 0
    assert space.encode([chain], "path").shape == (1, 7 + 49)


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


def test_network_trains_a_step_and_respects_width():
    g = DagSpace(width=4).make(
        [{"op": "sepconv3", "merge": "add", "inputs": [0]}, {"op": "conv5", "merge": "concat", "inputs": [0, 1]}]
    )
    net = build_model(g, (3, 8, 8), 5)
    assert net.head.in_features == 4
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_bad_input_shape_is_a_user_error():
    g = SPACE.sample(np.random.default_rng(0))
    with pytest.raises(UserError, match="C x L"):
        build_model(g, (8,), 3)


# -- validation and settings --------------------------------------------------------------------

GOOD = {"op": "conv3", "merge": "add", "inputs": [0]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([GOOD], "object with 'nodes'"),
        ({"layers": [GOOD]}, "keys must be 'nodes'"),
        ({"nodes": []}, "1..5 nodes; got 0"),
        ({"nodes": [GOOD] * 6}, "1..5 nodes; got 6"),
        ({"nodes": [{"op": "conv7", "merge": "add", "inputs": [0]}]}, "op must be one of .*got 'conv7'"),
        ({"nodes": [{"op": "conv3", "merge": "mul", "inputs": [0]}]}, "merge must be one of .*got 'mul'"),
        ({"nodes": [{"op": "conv3", "merge": "add", "inputs": []}]}, "non-empty list"),
        ({"nodes": [{"op": "conv3", "merge": "add", "inputs": [1]}]}, "node 1: inputs must be earlier nodes 0..0"),
        ({"nodes": [GOOD, {"op": "conv3", "merge": "add", "inputs": [0, 0]}]}, "must not repeat"),
        ({"nodes": [{"op": "conv3", "inputs": [0]}]}, "must have keys"),
        ({"nodes": [GOOD], "macro": {"width": 0}}, "width' must be a positive integer"),
        ({"nodes": [GOOD], "macro": {"depth": 3}}, "optional 'width'"),
    ],
)
def test_validation_errors_say_what_was_expected(spec, message):
    g = Genotype.of("dag-v1", spec)
    with pytest.raises(InvalidGenotype, match=message):
        SPACE.validate(g)
    assert not SPACE.contains(g)


def test_wrong_space_and_restricted_ops_are_rejected():
    with pytest.raises(InvalidGenotype, match="expected 'dag-v1'"):
        SPACE.validate(Genotype.of("cell-v1", {"nodes": [GOOD]}))
    narrow = DagSpace(ops=("maxpool3", "identity"))
    with pytest.raises(InvalidGenotype, match=r"op must be one of \['maxpool3', 'identity'\]"):
        narrow.validate(genotype([GOOD]))


@pytest.mark.parametrize(
    "settings_",
    [
        {"max_nodes": 0},
        {"max_nodes": 13},
        {"width": 0},
        {"ops": ["conv9"]},
        {"ops": []},
        {"path_length": 9},
        {"min_nodes": 6},
        {"max_nodes": 1, "ops": ["conv3"]},
    ],
)
def test_bad_settings_are_user_errors(settings_):
    with pytest.raises(UserError):
        DagSpace(**settings_)


def test_registered_and_rebuildable_from_settings():
    space = make_space("dag", max_nodes=3, width=8)
    assert space_class("dag-v1") is DagSpace and space.name == "dag-v1"
    again = make_space("dag", **space.settings())
    assert again.settings() == space.settings()
    g = space.sample(np.random.default_rng(1))
    assert g.value["macro"] == {"width": 8}
