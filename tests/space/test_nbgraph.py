"""NAS-Bench-Graph space: members, keys, sample, mutate, encodings, safe table loading."""

from __future__ import annotations

import io
import itertools
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.data import nbgraph_tables as tables
from workbench.errors import InvalidGenotype, UserError
from workbench.space.genotype import Genotype
from workbench.space.nbgraph import NBGraphSpace
from workbench.space.registry import make_space, space_class

LARGE = [d for d in tables.DATASETS if d != "proteins"]


def g_of(links: list[int], ops: list[str]) -> Genotype:
    return Genotype.of("nbgraph-v1", {"links": links, "ops": ops})


@pytest.mark.parametrize("dataset", tables.DATASETS)
def test_counts_and_every_member_is_in_its_table(dataset: str) -> None:
    space = NBGraphSpace(dataset)
    pool = space.pool()
    expected = 2021 if dataset == "proteins" else 26206
    assert len(pool) == len(space) == expected
    table = tables.load_table(dataset)
    keys = space.pool_keys()
    assert len(set(int(k) for k in keys)) == expected
    assert all(int(k) in table for k in keys)
    # every enumerated member is in canonical form: the benchmark's own hash maps it to itself
    for k, g in zip(keys, pool):
        value = g.value
        assert tables.arch_key(value["links"], value["ops"]) == int(k)
    assert list(space.enumerate()) == pool


def test_large_datasets_share_one_key_set() -> None:
    first = set(tables.table_keys(LARGE[0]).tolist())
    for dataset in LARGE[1:]:
        assert set(tables.table_keys(dataset).tolist()) == first


def test_members_are_the_benchmarks_canonical_architectures() -> None:
    """Large tables = every non-all-skip canonical arch over 9 ops; proteins = over its 5 ops."""
    from nas_bench_graph.architecture import Arch

    def canonical_keys(ops: tuple[str, ...]) -> set[int]:
        out = set()
        for combo in itertools.product(ops, repeat=4):
            if all(o == "skip" for o in combo):
                continue
            for links in tables.LINK_PATTERNS:
                arch = Arch(list(links), list(combo))
                if arch.check_isomorph():
                    out.add(Arch(list(links), list(combo)).valid_hash())
        return out

    assert canonical_keys(tables.PROTEINS_OPS) == set(tables.table_keys("proteins").tolist())
    assert set(tables.table_keys("proteins").tolist()) <= set(tables.table_keys("cora").tolist())


def test_equivalent_spellings_share_a_key() -> None:
    space = NBGraphSpace("cora")
    # one DAG listed in two node orders: input -> gcn -> {gin -> fc, cheb}. (The package
    # README pairs the first spelling with [0,1,1,2] + gcn,cheb,gin,fc, which puts fc after
    # cheb instead: a different architecture, and the benchmark hashes it differently.)
    a = g_of([0, 1, 2, 1], ["gcn", "gin", "fc", "cheb"])
    b = g_of([0, 1, 1, 2], ["gcn", "gin", "cheb", "fc"])
    assert a != b
    space.validate(a)
    space.validate(b)
    assert a.key == b.key
    assert space.index_of(a) == space.index_of(b)
    assert space.pool()[space.index_of(a)].key == a.key
    # interchangeable siblings on the input
    c = g_of([0, 0, 0, 0], ["sage", "gcn", "gcn", "gcn"])
    d = g_of([0, 0, 0, 0], ["gcn", "gcn", "sage", "gcn"])
    assert c.key == d.key
    assert a.key != g_of([0, 1, 1, 2], ["gcn", "cheb", "gin", "fc"]).key


@settings(max_examples=200, deadline=None)
@given(
    links=st.tuples(st.just(0), st.integers(0, 1), st.integers(0, 2), st.integers(0, 3)),
    ops=st.lists(st.sampled_from(tables.OPS), min_size=4, max_size=4).filter(lambda o: set(o) != {"skip"}),
)
def test_every_well_formed_spelling_is_a_member(links: tuple[int, ...], ops: list[str]) -> None:
    space = NBGraphSpace("cora")
    g = g_of(list(links), ops)
    space.validate(g)
    canonical = space.pool()[space.index_of(g)]
    assert canonical.key == g.key
    assert space.encode([g]).tolist() == space.encode([canonical]).tolist()


def test_index_of_matches_pool_order() -> None:
    space = NBGraphSpace("photo")
    pool = space.pool()
    for i in (0, 1, 777, len(pool) - 1):
        assert space.index_of(pool[i]) == i


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dataset=st.sampled_from(["cora", "arxiv", "proteins"]))
def test_sample_validates_and_mutate_is_a_different_member(seed: int, dataset: str) -> None:
    space = NBGraphSpace(dataset)
    rng = np.random.default_rng(seed)
    g = space.sample(rng)
    space.validate(g)
    child = space.mutate(g, rng)
    space.validate(child)
    assert child.key != g.key
    assert child.key in {n.key for n in space.neighbours(g)}


def test_sample_and_mutate_are_deterministic_given_rng() -> None:
    space = NBGraphSpace("cora")
    a = [space.mutate(space.sample(r), r) for r in [np.random.default_rng(7)] * 5]
    b = [space.mutate(space.sample(r), r) for r in [np.random.default_rng(7)] * 5]
    assert a == b


def test_every_proteins_member_has_a_neighbour() -> None:
    space = NBGraphSpace("proteins")
    for g in space.pool():
        options = space.neighbours(g)
        assert options and all(o.key != g.key for o in options)
        assert all(set(o.value["ops"]) <= set(tables.PROTEINS_OPS) for o in options)


def test_mutate_of_a_non_canonical_spelling_moves_away_from_its_key() -> None:
    space = NBGraphSpace("cora")
    g = g_of([0, 1, 2, 1], ["gcn", "gin", "fc", "cheb"])
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert space.mutate(g, rng).key != g.key


def test_json_round_trip() -> None:
    space = NBGraphSpace("citeseer")
    g = space.sample(np.random.default_rng(3))
    back = Genotype.from_json(g.to_json())
    assert back == g and back.key == g.key
    space.validate(back)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"links": [0, 0, 1, 2]}, "keys 'links' and 'ops'"),
        ([0, 0, 1, 2], "keys 'links' and 'ops'"),
        ({"links": [0, 0, 1], "ops": ["gcn"] * 4}, "list of 4 integers"),
        ({"links": [0, 0, 3, 2], "ops": ["gcn"] * 4}, "links[2] must be an integer in 0..2"),
        ({"links": [0, True, 1, 2], "ops": ["gcn"] * 4}, "links[1]"),
        ({"links": [0, 0, 1, 2], "ops": ["gcn", "mlp", "gcn", "gcn"]}, "ops[1] must be one of"),
        ({"links": [0, 0, 1, 2], "ops": ["gcn"] * 3}, "list of 4 operation names"),
        ({"links": [0, 0, 1, 2], "ops": ["skip"] * 4}, "at least one op other than 'skip'"),
    ],
)
def test_validate_reports_what_is_wrong(spec: object, message: str) -> None:
    g = Genotype.of("nbgraph-v1", spec)
    with pytest.raises(InvalidGenotype, match=re.escape(message)):
        NBGraphSpace("cora").validate(g)
    assert not NBGraphSpace("cora").contains(g)


def test_validate_rejects_ops_proteins_lacks_and_foreign_spaces() -> None:
    g = g_of([0, 0, 1, 2], ["gat", "gcn", "sage", "fc"])
    NBGraphSpace("cora").validate(g)
    with pytest.raises(InvalidGenotype, match=r"\['gat'\] are not in the proteins table"):
        NBGraphSpace("proteins").validate(g)
    with pytest.raises(InvalidGenotype, match="expected 'nbgraph-v1'"):
        foreign = Genotype.of("chain-v1", {"links": [0, 0, 1, 2], "ops": ["gcn"] * 4})
        NBGraphSpace("cora").validate(foreign)


def test_canonical_is_the_table_key() -> None:
    space = NBGraphSpace("cora")
    for i in (0, 5000, 26205):
        g = space.pool()[i]
        assert NBGraphSpace.canonical(g) == f"{int(space.pool_keys()[i]):05d}"
    with pytest.raises(InvalidGenotype):
        NBGraphSpace.canonical(g_of([0, 0, 1, 2], ["skip"] * 4))


@pytest.mark.parametrize("dataset", ["cora", "proteins"])
def test_encode_shapes_and_pool_encoding_agree(dataset: str) -> None:
    space = NBGraphSpace(dataset)
    pool = space.pool()
    sample = [pool[i] for i in (0, 3, len(pool) // 2, len(pool) - 1)]
    onehot = space.encode(sample, "onehot")
    path = space.encode(sample, "path")
    assert onehot.shape == (4, 45) and onehot.dtype == np.float64
    assert path.shape == (4, 593) and path.dtype == np.float64
    assert np.all(onehot.sum(axis=1) == 5)  # one link pattern + one op per node
    full = space.pool_encoding("onehot")
    assert full.shape == (len(pool), 45) and not full.flags.writeable
    idx = [space.index_of(g) for g in sample]
    np.testing.assert_array_equal(full[idx], onehot)
    np.testing.assert_array_equal(space.pool_encoding("path")[idx], path)
    np.testing.assert_array_equal(space.encode(sample, "path"), path)  # from the cached pool
    assert len(np.unique(full, axis=0)) == len(pool)  # onehot is injective on members
    assert space.encode([], "onehot").shape == (0, 45)
    with pytest.raises(InvalidGenotype, match="unknown encoding"):
        space.encode(sample, "adjacency")


def test_path_encoding_counts_skip_free_paths() -> None:
    space = NBGraphSpace("cora")
    # input -> gcn -> {skip (leaf), sage -> fc (leaf)}: paths (gcn) and (gcn, sage, fc)
    g = g_of([0, 1, 1, 3], ["gcn", "skip", "sage", "fc"])
    row = space.encode([g], "path")[0]
    nonskip = [o for o in tables.OPS if o != "skip"]
    gcn, sage, fc = (nonskip.index(o) for o in ("gcn", "sage", "fc"))
    assert row.sum() == 2
    assert row[1 + gcn] == 1
    assert row[1 + 8 + 64 + (gcn * 8 + sage) * 8 + fc] == 1
    # a chain of four non-skip ops: prefix column plus the 4th-op column
    chain = space.encode([g_of([0, 1, 2, 3], ["gcn", "sage", "fc", "gat"])], "path")[0]
    assert chain.sum() == 2 and chain[585 + nonskip.index("gat")] == 1


def test_registry_builds_the_space() -> None:
    assert space_class("nbgraph-v1") is NBGraphSpace
    space = make_space("nbgraph", dataset="pubmed")
    assert isinstance(space, NBGraphSpace) and space.settings() == {"dataset": "pubmed"}
    assert not space.trainable and space.name == "nbgraph-v1"
    with pytest.raises(UserError, match="unknown NAS-Bench-Graph dataset 'karate'"):
        make_space("nbgraph", dataset="karate")


class _Payload:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # noqa: ANN204 - the attack
        return (open, (self.path, "w"))


def test_restricted_unpickler_refuses_a_code_running_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    blob = pickle.dumps({1: {"valid_perf": _Payload(marker)}})
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        tables.safe_load(io.BytesIO(blob))
    bench = tmp_path / "evil.bench"
    bench.write_bytes(blob)
    with pytest.raises(pickle.UnpicklingError):
        tables.safe_load(bench)
    assert not marker.exists()
    # the payload is real: an unrestricted load would have created the file
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control))).close()
    assert control.exists()


def test_restricted_unpickler_accepts_numpy_scalars(tmp_path: Path) -> None:
    blob = pickle.dumps({3: {"para": np.float64(1.5), "perf": 0.25}}, protocol=4)
    assert tables.safe_load(io.BytesIO(blob)) == {3: {"para": 1.5, "perf": 0.25}}


def test_nothing_loads_at_import() -> None:
    code = (
        "import sys\n"
        "import workbench.space.nbgraph, workbench.evaluate.tabular\n"
        "from workbench.data import nbgraph_tables as t\n"
        "assert not t._TABLES and 'nas_bench_graph' not in sys.modules, 'loaded at import'\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
