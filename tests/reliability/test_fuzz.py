"""Property-based fuzzing: malformed task files, genotype JSON and CLI arguments never crash.

Each property runs a few hundred generated inputs (``FUZZ_EXAMPLES``, override with
``NASW_FUZZ_EXAMPLES``). A failure means an error type other than the project's own reached
the caller (task files: :class:`TaskError` / :class:`UserError`; genotypes:
:class:`InvalidGenotype`), or the ``nasw`` command printed a traceback or an internal error.
"""

from __future__ import annotations

import json
import math
import os
import string
from pathlib import Path

import numpy as np
import pytest
from helpers import nasw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.errors import InvalidGenotype, UserError
from workbench.space.genotype import Genotype
from workbench.space.registry import make_space, space_kinds
from workbench.task import _TOP_KEYS, parse_task, parse_task_dict

FUZZ_EXAMPLES = int(os.environ.get("NASW_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    database=None,
)
REPO = Path(__file__).resolve().parents[2]

# -- TOML text from random documents ------------------------------------------------------------
KEY_NAMES = sorted(_TOP_KEYS) + [
    "loader",
    "kind",
    "name",
    "path",
    "dataset",
    "objective",
    "report",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "max_seconds",
    "grad_clip",
    "seed",
    "test",
    "valid",
    "max_layers",
    "widths",
    "kernels",
    "width",
    "base",
    "__import__",
    "exec",
]
keys = st.one_of(st.sampled_from(KEY_NAMES), st.text(min_size=1, max_size=12))
CODE_LIKE = [
    "__import__('os').system('touch pwned')",
    "${HOME}",
    "$(rm -rf /)",
    "`id`",
    "{{7*7}}",
    "eval(1)",
    "!!python/object/apply:os.system ['id']",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "\x00",
]
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(CODE_LIKE + ["digits", "chain", "nbgraph", "cora", "tabular", "trained", "val_accuracy"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


def toml_key(key: str) -> str:
    return json.dumps(key)  # a TOML basic string is a valid quoted key


def toml_value(value) -> str:
    """A TOML inline value (tables inline, so any nesting is one line)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_text(doc: dict) -> str:
    """Top-level scalars first, then one ``[table]`` per dict value."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"[{toml_key(k)}]")
            lines += [f"{toml_key(kk)} = {toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def valid_like_docs() -> st.SearchStrategy[dict]:
    """Documents close to a real task: the right tables with random contents."""
    tables = st.fixed_dictionaries(
        {
            "dataset": st.dictionaries(keys, values, max_size=4).map(lambda d: {**d, "loader": "digits"}),
            "space": st.one_of(
                st.just({"kind": "chain"}),
                st.dictionaries(keys, values, max_size=4).map(lambda d: {"kind": "chain", **d}),
                st.dictionaries(keys, values, max_size=3).map(lambda d: {"kind": "nbgraph", **d}),
                st.dictionaries(keys, values, max_size=3),
            ),
        },
        optional={
            "name": st.one_of(st.text(max_size=10), values),
            "kind": st.one_of(st.sampled_from(["trained", "tabular"]), values),
            "metric": st.dictionaries(st.sampled_from(["objective", "report"]), values, max_size=2),
            "training": st.dictionaries(keys, values, max_size=4),
            "split": st.dictionaries(st.sampled_from(["seed", "test", "valid", "other"]), values, max_size=3),
            "meta_features": st.dictionaries(keys, values, max_size=3),
            "fidelity": st.dictionaries(keys, values, max_size=2),
            "description": values,
        },
    )
    return tables


def _parse_file(tmp_path: Path, data: bytes):
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)
    return parse_task(path)


def _task_consequences(task) -> None:
    """A task that parses builds its space, or says clearly why not (a UserError)."""
    from workbench.evaluate.factory import space_for

    try:
        space_for(task)
    except UserError:
        pass


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_as_a_task_file(tmp_path, data):
    try:
        _parse_file(tmp_path, data)
    except UserError:
        pass


@FUZZ
@given(doc=st.dictionaries(keys, values, max_size=6))
def test_random_documents_as_task_files(tmp_path, doc):
    try:
        task = _parse_file(tmp_path, toml_text(doc).encode("utf-8", "surrogatepass"))
    except UserError:
        return
    _task_consequences(task)


@FUZZ
@given(doc=valid_like_docs())
def test_task_like_documents(tmp_path, doc):
    try:
        task = _parse_file(tmp_path, toml_text(doc).encode("utf-8", "surrogatepass"))
    except UserError:
        return
    assert task.dataset["loader"] == "digits"  # data, read as data
    _task_consequences(task)


SHIPPED = sorted((REPO / "tasks").glob("*.toml"))


@FUZZ
@given(
    which=st.integers(min_value=0, max_value=len(SHIPPED) - 1),
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=8), st.binary(max_size=6)
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_shipped_task_files_with_random_byte_edits(tmp_path, which, edits):
    data = bytearray(SHIPPED[which].read_bytes())
    for pos, cut, insert in edits:
        pos %= len(data) + 1
        data[pos : pos + cut] = insert
    try:
        task = _parse_file(tmp_path, bytes(data))
    except UserError:
        return
    _task_consequences(task)


@FUZZ
@given(doc=st.one_of(values, st.dictionaries(keys, values, max_size=6), valid_like_docs()))
def test_task_dicts_read_back_from_a_store(doc):
    """A search's recorded spec is re-validated on resume with parse_task_dict."""
    try:
        parse_task_dict(doc, where="recorded spec")
    except UserError:
        pass


def test_code_looking_strings_in_a_task_file_are_only_data(tmp_path):
    marker = tmp_path / "pwned"
    text = f"""
name = "data-not-code"
description = "__import__('os').system('touch {marker}')"
[dataset]
loader = "digits"
note = "$(touch {marker})"
cmd = "`touch {marker}`"
[space]
kind = "chain"
widths = [8]
[meta_features]
"""
    task = _parse_file(tmp_path, text.encode())
    assert task.description.startswith("__import__") and task.dataset["note"].startswith("$(")
    assert not marker.exists()


# -- genotype JSON ------------------------------------------------------------------------------
SETTINGS = {
    "chain": {"max_layers": 4, "kernels": [3, 5], "widths": [8, 16], "dense_widths": [16, 32]},
    "dag": {"max_nodes": 4, "width": 8},
    "cell": {"width": 8},
    "nbgraph": {"dataset": "cora"},
    "joint": {"base": {"kind": "chain", "max_layers": 3, "kernels": [3], "widths": [8, 16], "dense_widths": [16]}},
}


def _spaces():
    out = {}
    for kind in space_kinds():
        out[kind] = make_space(kind, **SETTINGS.get(kind, {}))
    return out


SPACES = _spaces()
SPACE_NAMES = sorted({s.name for s in SPACES.values()})
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
        st.sampled_from(
            [
                "conv",
                "dense",
                "maxpool",
                "relu",
                "add",
                "concat",
                "gcn",
                "none",
                "skip",
                "layers",
                "nodes",
                "ops",
                "links",
                "width",
            ]
        ),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.one_of(
                st.text(max_size=8),
                st.sampled_from(
                    [
                        "layers",
                        "op",
                        "kernel",
                        "width",
                        "act",
                        "nodes",
                        "inputs",
                        "merge",
                        "ops",
                        "links",
                        "arch",
                        "hp",
                        "space",
                        "spec",
                        "macro",
                        "lr",
                        "epochs",
                    ]
                ),
            ),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=20,
)


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=60),
        st.binary(max_size=60),
        json_values.map(json.dumps),
        st.tuples(st.sampled_from(SPACE_NAMES + ["chain-v2", ""]), json_values).map(
            lambda t: json.dumps({"space": t[0], "spec": t[1]})
        ),
    )
)
def test_random_genotype_json_raises_only_invalid_genotype(text):
    try:
        g = Genotype.from_json(text)
    except InvalidGenotype:
        return
    for space in SPACES.values():
        try:
            space.validate(g)
        except InvalidGenotype:
            continue


@FUZZ
@given(kind=st.sampled_from(sorted(SPACES)), spec=json_values)
def test_random_specs_for_every_space(kind, spec):
    space = SPACES[kind]
    try:
        g = Genotype.of(space.name, spec)
        space.validate(g)
    except InvalidGenotype:
        return
    assert g.key  # a genotype that validates has a canonical key


def _mutations(value, rng: np.random.Generator, leaf):
    """``value`` with one random node replaced by ``leaf``, deleted, or given an extra key."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        k = sorted(value)[int(rng.integers(len(value)))]
        choice = rng.random()
        out = dict(value)
        if choice < 0.15:
            del out[k]
        elif choice < 0.3:
            out[f"extra{int(rng.integers(3))}"] = leaf
        elif choice < 0.55:
            out[k] = leaf
        else:
            out[k] = _mutations(value[k], rng, leaf)
        return out
    if isinstance(value, list) and value and rng.random() < 0.8:
        i = int(rng.integers(len(value)))
        out = list(value)
        choice = rng.random()
        if choice < 0.15:
            del out[i]
        elif choice < 0.3:
            out.append(leaf)
        elif choice < 0.55:
            out[i] = leaf
        else:
            out[i] = _mutations(value[i], rng, leaf)
        return out
    return leaf


@FUZZ
@given(
    kind=st.sampled_from(sorted(SPACES)),
    seed=st.integers(0, 2**32 - 1),
    leaf=json_values,
    big=st.sampled_from([10**9, -1, 0, 2**63, 1.5, "8", True, None]),
)
def test_mutated_valid_genotypes_validate_or_raise_invalid_genotype(kind, seed, leaf, big):
    """Valid genotypes with one node changed: only InvalidGenotype; what validates is buildable."""
    space = SPACES[kind]
    rng = np.random.default_rng(seed)
    base = space.sample(rng)
    spec = _mutations(base.value, rng, big if rng.random() < 0.4 else leaf)
    try:
        g = Genotype.of(space.name, spec)
        space.validate(g)
    except InvalidGenotype:
        return
    assert g.key
    if space.trainable:
        from workbench.nn.build import build_model

        try:
            build_model(g, (1, 8, 8), 10)
        except InvalidGenotype:
            pass


# -- the command line ---------------------------------------------------------------------------
COMMANDS = {
    "search": [
        "--task",
        "--strategy",
        "--budget",
        "--seed",
        "--store",
        "--device",
        "--option",
        "--objectives",
        "--workers",
        "--executor",
        "--address",
        "--quiet",
        "--json",
        "--help",
    ],
    "show": ["--store", "--format", "--help"],
    "ls": ["--task", "--store", "--format", "--help"],
    "resume": ["--budget", "--store", "--device", "--workers", "--executor", "--force", "--quiet", "--json"],
    "tasks": ["--help"],
    "export": ["--store", "--format", "--out", "--help"],
    "compare": ["--store", "--out", "--format", "--help"],
    "lineage": ["--store", "--format", "--help"],
}
FLAGS = {"--quiet", "--json", "--force", "--help"}


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory):
    """A folder with a tiny tabular task, and a shared in-process memory store with one search."""
    home = tmp_path_factory.mktemp("cli-fuzz")
    (home / "tab.toml").write_text(
        (REPO / "tasks" / "nbgraph-cora.toml").read_text().replace('name = "nbgraph-cora"', 'name = "fuzz-cora"')
    )
    (home / "bad.toml").write_text("name = [\n")
    store = "memory://cli-fuzz"
    code, out, err = nasw(
        [
            "search",
            "--task",
            str(home / "tab.toml"),
            "--budget",
            "2",
            "--strategy",
            "random",
            "--store",
            store,
            "--json",
        ],
        cwd=home,
    )
    assert code == 0, err
    search_id = json.loads(out)["search_id"]
    trial_id = json.loads(nasw(["show", search_id, "--store", store, "--format", "json"], cwd=home)[1])["trials"][0][
        "trial_id"
    ]
    return {"home": home, "store": store, "search_id": search_id, "trial_id": trial_id}


text_arg = st.text(alphabet=string.printable + "é—\u2028", max_size=12)


@st.composite
def cli_args(draw, ctx):
    command = draw(st.sampled_from(sorted(COMMANDS) + ["frobnicate", "--version", "--help", ""]))
    if command not in COMMANDS:
        return [command] if command else []
    ids = [ctx["search_id"], ctx["search_id"][:6], ctx["trial_id"], ctx["trial_id"][:8], "ffffffff", "", "-x", "a b"]
    args = [command]
    if command in ("show", "resume", "export", "lineage"):
        args.append(draw(st.one_of(st.sampled_from(ids), text_arg)))
    if command == "compare":
        args += draw(st.lists(st.one_of(st.sampled_from(ids), text_arg), min_size=0, max_size=2))
    names = COMMANDS[command]
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.one_of(st.sampled_from(names), st.sampled_from(["--bogus", "-z", "--"]), text_arg))
        args.append(name)
        if name in FLAGS or not name.startswith("--") or name == "--":
            continue
        if name == "--help" and command == "search":
            continue
        value = draw(_value_for(name, ctx))
        if value is not None:
            args.append(value)
    if command == "search":
        # never a long search: one trial of a table lookup, whatever else was drawn
        args += ["--budget", "1", "--store", ctx["store"], "--quiet"]
        if "--task" not in args:
            args += [
                "--task",
                draw(
                    st.sampled_from(
                        [str(ctx["home"] / "tab.toml"), str(ctx["home"] / "bad.toml"), "no-such-task", "nbgraph-cora"]
                    )
                ),
            ]
        else:
            i = args.index("--task")
            if i + 1 < len(args):
                args[i + 1] = draw(
                    st.sampled_from(
                        [
                            str(ctx["home"] / "tab.toml"),
                            str(ctx["home"] / "bad.toml"),
                            "no-such-task",
                            "",
                            "tasks",
                            args[i + 1] + ".toml",
                        ]
                    )
                )
    if command == "resume":
        args += ["--budget", draw(st.sampled_from(["1", "2", "3"])), "--store", ctx["store"], "--quiet"]
    return args


def _value_for(name: str, ctx):
    stores = st.sampled_from(
        [ctx["store"], "memory://", "ftp://nowhere", "sqlite:", "sqlite:///", " ", "http://", "memory://cli-fuzz"]
    )
    return {
        "--store": stores,
        "--budget": st.one_of(st.sampled_from(["0", "-1", "x", "1e9", "1"]), text_arg),
        "--seed": st.one_of(st.integers(-(2**70), 2**70).map(str), text_arg),
        "--workers": st.one_of(st.sampled_from(["0", "2", "-3", "x"]), text_arg),
        "--executor": st.one_of(st.sampled_from(["inprocess", "pool", "ray", "threads"]), text_arg),
        "--format": st.one_of(st.sampled_from(["table", "json", "csv", "xml"]), text_arg),
        "--strategy": st.one_of(st.sampled_from(["random", "evolution", "bo", "rl", "hillclimb", "magic"]), text_arg),
        "--option": st.one_of(
            st.tuples(
                st.sampled_from(["population", "sample_size", "bogus", "morph", "objectives", "", "="]),
                st.sampled_from(["1", "0", "-5", "x", "[]", "{}", "null", "1e400", '"a"', "true"]),
            ).map("=".join),
            text_arg,
        ),
        "--objectives": st.one_of(
            st.sampled_from(["val_accuracy,-latency", "val_accuracy", "-params,,", ",", "x,y"]), text_arg
        ),
        "--device": st.sampled_from(["cpu", "cuda", "cuda:7", "tpu", "", "mps"]),
        "--out": st.sampled_from(["out.csv", "out.json", "plot.png", "no/such/dir/x.png", "", "."]),
        "--task": st.one_of(st.sampled_from(["nbgraph-cora", "no-such", ""]), text_arg),
        "--address": text_arg,
    }.get(name, text_arg)


def test_cli_random_arguments_never_show_a_traceback(cli_home):
    seen_codes: set[int] = set()

    @FUZZ
    @given(args=cli_args(cli_home))
    def check(args):
        code, out, err = nasw(args, cwd=cli_home["home"])
        text = out + err
        assert "Traceback" not in text, (args, text[-2000:])
        assert "internal error" not in err, (args, err)
        assert code in (0, 1, 2), (args, code, err)
        if code:
            lines = [line for line in err.splitlines() if line.strip()]
            assert lines and lines[-1].startswith("error: "), (args, err)
            assert len(lines) == 1, (args, err)
        seen_codes.add(code)

    check()
    assert {0, 2} <= seen_codes


# -- artifact files read back from a store ------------------------------------------------------
SECRET = "TOP-SECRET-7c4a8d09ca"


@pytest.fixture(scope="module")
def artifact_home(tmp_path_factory):
    """A SQLite store with a search whose spec and a trial whose genotype are too long for their
    tags (so both are read back from ``spec.json`` and ``genotype.json``), with saved weights, and
    a secret file outside the store."""
    import torch

    from metastore import open_store

    home = tmp_path_factory.mktemp("artifacts")
    uri = f"sqlite:///{home / 'runs' / 'mlflow.db'}"
    store = open_store(uri)
    spec = {"budget": 1, "padding": "x" * 9000}
    sid = store.start_search("fuzz", strategy="random", space="chain-v1", seed=0, objective="val_accuracy", spec=spec)
    layer = {"op": "conv", "kernel": 3, "width": 8, "act": "relu"}
    genotype = json.dumps({"space": "chain-v1", "spec": {"layers": [layer] * 150}})
    tid = store.start_trial(sid, genotype, "k")
    store.save_weights(tid, {"w": torch.ones(2)})
    store.finish_trial(tid, state="finished", metrics={"val_accuracy": 0.5})
    (home / "secret.txt").write_text(SECRET)
    (home / "outside").mkdir()
    (home / "outside" / "genotype.json").write_text(genotype)
    from metastore.mlflow_setup import local_folder

    folders = {
        run: Path(local_folder(store._get_run(run, kind).info.artifact_uri))
        for run, kind in ((sid, "search"), (tid, "trial"))
    }
    return {
        "uri": uri,
        "store": store,
        "sid": sid,
        "tid": tid,
        "genotype": genotype,
        "spec": spec,
        "home": home,
        "folders": folders,
    }


def _plant(path: Path, how: str, home: Path) -> None:
    """Put a hostile ``how`` where the artifact ``path`` was."""
    if how == "link to a secret":
        path.symlink_to(home / "secret.txt")
    elif how == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    elif how == "link to a valid copy":
        copy = home / f"copy-{path.name}"
        copy.write_bytes(path.with_name(path.name + ".orig").read_bytes())
        path.symlink_to(copy)
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "folder":
        path.mkdir()
    elif how == "huge":
        from metastore.artifacts import TEXT_LIMIT, WEIGHTS_LIMIT

        with open(path, "wb") as fh:  # sparse: no disk used
            fh.truncate((WEIGHTS_LIMIT if path.suffix == ".pt" else TEXT_LIMIT) + 1)
    elif how == "deep nesting":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif how == "wrong shape":
        path.write_text('{"spec": 1}' if path.name == "genotype.json" else "[1, 2]")
    elif how == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    else:
        raise AssertionError(how)


HOSTILE = [
    "link to a secret",
    "link to /dev/zero",
    "link to a valid copy",
    "fifo",
    "folder",
    "huge",
    "deep nesting",
    "wrong shape",
    "binary",
]


@pytest.mark.parametrize("how", HOSTILE)
@pytest.mark.parametrize("artifact", ["genotype.json", "spec.json", "weights/model.pt"])
def test_hostile_artifact_files_read_as_absent(artifact_home, capsys, how, artifact):
    """Links, devices, FIFOs, folders, huge and malformed files in a store's artifact folder are
    never followed, opened for long or parsed beyond their bound: they read as absent."""
    h = artifact_home
    if artifact == "weights/model.pt" and how in ("deep nesting", "wrong shape"):
        how = "binary"
    folder = h["folders"][h["sid"] if artifact == "spec.json" else h["tid"]]
    path = folder / artifact
    original = path.with_name(path.name + ".orig")
    path.rename(original)
    try:
        _plant(path, how, h["home"])
        store = h["store"]
        if artifact == "genotype.json":
            assert store.trial(h["tid"]).genotype_json == ""
            code, out, err = nasw(["show", h["sid"], "--store", h["uri"], "--format", "json"], capsys)
            assert code == 0 and SECRET not in out + err and json.loads(out)["trials"][0]["genotype"] == ""
        elif artifact == "spec.json":
            assert store.search(h["sid"]).spec == {}
        else:
            assert store.load_weights(h["tid"]) is None
    finally:
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()
        original.rename(path)
    assert store.trial(h["tid"]).genotype_json == h["genotype"]  # the real artifacts read back again
    assert store.search(h["sid"]).spec == h["spec"]
    assert store.load_weights(h["tid"]) is not None


def test_an_artifact_folder_linked_outside_the_store_is_refused(artifact_home):
    h = artifact_home
    folder = h["folders"][h["tid"]]
    aside = folder.with_name(folder.name + ".orig")
    folder.rename(aside)
    try:
        folder.symlink_to(h["home"] / "outside")  # a valid genotype.json, but outside the artifact folder
        assert h["store"].trial(h["tid"]).genotype_json == ""
    finally:
        folder.unlink()
        aside.rename(folder)


@FUZZ
@given(data=st.one_of(st.binary(max_size=400), json_values.map(lambda v: json.dumps(v).encode())))
def test_random_bytes_as_a_genotype_artifact(artifact_home, data):
    """Whatever bytes ``genotype.json`` holds, a trial reads back with "" or a genotype object."""
    h = artifact_home
    path = h["folders"][h["tid"]] / "genotype.json"
    path.write_bytes(data)
    try:
        text = h["store"].trial(h["tid"]).genotype_json
    finally:
        path.write_text(h["genotype"])
    if text:
        value = json.loads(text)
        assert isinstance(value, dict) and isinstance(value["space"], str) and "spec" in value
