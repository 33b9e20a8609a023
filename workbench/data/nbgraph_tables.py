"""NAS-Bench-Graph lookup tables, read safely and cached per process.

The ``nas-bench-graph`` package ships one pickle per dataset (``light/<dataset>.bench``): a
``dict`` from the benchmark's integer architecture hash to
``{"valid_perf", "perf", "latency", "para"}``. The package's own ``light_read`` calls
``pickle.load`` on them; here they are read with :class:`RestrictedUnpickler`, which only lets
through the two globals the tables need (numpy scalars and dtypes) and refuses everything else,
so a tampered file cannot run code.

The table key is ``link_index * 10**4 + sum(op_index[i] * 10**(3 - i))`` (base 10 over
:data:`OPS`, ``link_index`` into :data:`LINK_PATTERNS`), computed from the canonical form of an
architecture (``nas_bench_graph.architecture.Arch.valid_hash``). Proteins uses the same key
scheme but only the ops in :data:`PROTEINS_OPS`.

Nothing is read at import; :func:`load_table` and :func:`table_arrays` load lazily and cache.
"""

from __future__ import annotations

import importlib.util
import pickle
import threading
import types
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from workbench.errors import UserError

#: The nine datasets of NAS-Bench-Graph.
DATASETS: tuple[str, ...] = (
    "cora",
    "citeseer",
    "pubmed",
    "cs",
    "physics",
    "photo",
    "computers",
    "arxiv",
    "proteins",
)

#: Operation vocabulary in the benchmark's hash order (``nas_bench_graph.architecture.gnn_list``).
OPS: tuple[str, ...] = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")

#: The five operations the proteins table covers (``gnn_list_proteins``).
PROTEINS_OPS: tuple[str, ...] = ("gcn", "sage", "arma", "fc", "skip")

#: The nine canonical link patterns (input node of each of the 4 computing nodes), hash order.
LINK_PATTERNS: tuple[tuple[int, int, int, int], ...] = (
    (0, 0, 0, 0),
    (0, 0, 0, 1),
    (0, 0, 1, 1),
    (0, 0, 1, 2),
    (0, 0, 1, 3),
    (0, 1, 1, 1),
    (0, 1, 1, 2),
    (0, 1, 2, 2),
    (0, 1, 2, 3),
)

#: Simulated training cost: ``train_seconds = TRAIN_COST_PER_LATENCY * latency``. The light tables
#: hold no timing besides the forward latency, so training is modelled as a nominal 200 epochs of
#: forward + backward passes at about 3x the forward cost each (200 * 3 = 600).
TRAIN_COST_PER_LATENCY: float = 600.0

_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "dtype"),
    }
)


def _numpy_scalar() -> Any:
    try:  # numpy >= 2: the real home; avoids the deprecated ``numpy.core`` alias
        from numpy._core.multiarray import scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    return scalar


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy scalars and dtypes.

    ``find_class`` allows exactly ``numpy.core.multiarray.scalar``,
    ``numpy._core.multiarray.scalar`` and ``numpy.dtype``; any other global (``os.system``,
    ``builtins.eval``, ...) raises :class:`pickle.UnpicklingError` before it is imported.
    """

    def find_class(self, module: str, name: str) -> Any:
        """Resolve an allowed global or refuse it."""
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name} from a benchmark table "
                "(only numpy scalars and dtypes are allowed)"
            )
        if name == "dtype":
            return np.dtype
        return _numpy_scalar()


def safe_load(file: str | Path | IO[bytes]) -> Any:
    """Unpickle ``file`` (a path or a binary file object) with :class:`RestrictedUnpickler`."""
    if isinstance(file, (str, Path)):
        with open(file, "rb") as fh:
            return RestrictedUnpickler(fh).load()
    return RestrictedUnpickler(file).load()


def check_dataset(dataset: str) -> str:
    """Return ``dataset`` if it is one of :data:`DATASETS`, else raise :class:`UserError`."""
    if dataset not in DATASETS:
        raise UserError(f"unknown NAS-Bench-Graph dataset {dataset!r}; expected one of {list(DATASETS)}")
    return dataset


def ops_for(dataset: str) -> tuple[str, ...]:
    """The operations that appear in ``dataset``'s table."""
    return PROTEINS_OPS if check_dataset(dataset) == "proteins" else OPS


def bench_dir() -> Path:
    """The ``light/`` folder of the installed ``nas_bench_graph`` package (not imported)."""
    spec = importlib.util.find_spec("nas_bench_graph")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the nas-bench-graph package is not installed (pip install nas-bench-graph)")
    return Path(next(iter(spec.submodule_search_locations))) / "light"


def bench_path(dataset: str) -> Path:
    """Path of ``dataset``'s table file."""
    path = bench_dir() / f"{check_dataset(dataset)}.bench"
    if not path.is_file():
        raise UserError(f"NAS-Bench-Graph table for {dataset!r} not found at {path}")
    return path


_LOCK = threading.Lock()
_TABLES: dict[str, Mapping[int, Mapping[str, float]]] = {}
_ARRAYS: dict[str, TableArrays] = {}
_KEYS: dict[str, np.ndarray] = {}
_INDEX: dict[str, dict[int, int]] = {}


def load_table(dataset: str) -> Mapping[int, Mapping[str, float]]:
    """The table of ``dataset``: read-only mapping ``key -> {valid_perf, perf, latency, para}``.

    Values are plain Python floats. Loaded on first use and cached for the process.
    """
    check_dataset(dataset)
    table = _TABLES.get(dataset)
    if table is not None:
        return table
    with _LOCK:
        if dataset not in _TABLES:
            path = bench_path(dataset)
            try:
                raw = safe_load(path)
                if not isinstance(raw, dict):
                    raise UserError(f"NAS-Bench-Graph table {dataset!r} is not a dict")
                clean = {
                    int(k): types.MappingProxyType({str(m): float(x) for m, x in v.items()}) for k, v in raw.items()
                }
            except (
                pickle.UnpicklingError,
                EOFError,
                OSError,
                ValueError,
                TypeError,
                AttributeError,
                IndexError,
                KeyError,
                RecursionError,
            ) as exc:
                # a corrupt, truncated or tampered table (a refused global lands here too)
                raise UserError(f"NAS-Bench-Graph table {dataset!r} at {path} is unreadable: {exc}") from None
            _TABLES[dataset] = types.MappingProxyType(clean)
        return _TABLES[dataset]


def table_keys(dataset: str) -> np.ndarray:
    """Sorted table keys of ``dataset`` (`n`, int64, read-only): the fixed pool order."""
    keys = _KEYS.get(dataset)
    if keys is None:
        keys = np.array(sorted(load_table(dataset)), dtype=np.int64)
        keys.setflags(write=False)
        _KEYS[dataset] = keys
    return keys


def key_index(dataset: str) -> dict[int, int]:
    """``key -> position`` in :func:`table_keys` order (shared; do not mutate)."""
    index = _INDEX.get(dataset)
    if index is None:
        index = {int(k): i for i, k in enumerate(table_keys(dataset))}
        _INDEX[dataset] = index
    return index


class TableArrays(NamedTuple):
    """Whole-table metrics aligned with :func:`table_keys` (and ``NBGraphSpace.pool()``).

    Every array is `n`, float64 and read-only.

    Attributes:
        val_accuracy: ``valid_perf`` (ROC-AUC for proteins).
        test_accuracy: ``perf`` (ROC-AUC for proteins).
        latency: Forward latency in seconds, as recorded.
        params: Parameter count (the table's ``para`` is in millions; multiplied by 1e6).
    """

    val_accuracy: np.ndarray
    test_accuracy: np.ndarray
    latency: np.ndarray
    params: np.ndarray

    @property
    def train_seconds(self) -> np.ndarray:
        """Simulated training cost, ``TRAIN_COST_PER_LATENCY * latency``."""
        return TRAIN_COST_PER_LATENCY * self.latency


def table_arrays(dataset: str) -> TableArrays:
    """Vectorised metrics of every architecture of ``dataset`` (cached after the first call)."""
    arrays = _ARRAYS.get(dataset)
    if arrays is not None:
        return arrays
    table = load_table(dataset)
    keys = table_keys(dataset)
    cols = np.array(
        [[table[int(k)][m] for m in ("valid_perf", "perf", "latency", "para")] for k in keys],
        dtype=np.float64,
    ).reshape(len(keys), 4)
    cols[:, 3] *= 1e6
    cols[:, 3] = np.round(cols[:, 3])
    parts = []
    for j in range(4):
        col = np.ascontiguousarray(cols[:, j])
        col.setflags(write=False)
        parts.append(col)
    arrays = TableArrays(*parts)
    _ARRAYS[dataset] = arrays
    return arrays


def decode_key(key: int) -> tuple[list[int], list[str]]:
    """``(links, ops)`` of a table key (the canonical form the key was hashed from)."""
    key = int(key)
    if not 0 <= key < len(LINK_PATTERNS) * 10**4:
        raise ValueError(f"not a NAS-Bench-Graph key: {key}")
    digits = [(key // 10 ** (3 - i)) % 10 for i in range(4)]
    if any(d >= len(OPS) for d in digits):
        raise ValueError(f"not a NAS-Bench-Graph key: {key}")
    return list(LINK_PATTERNS[key // 10**4]), [OPS[d] for d in digits]


def arch_key(links: list[int], ops: list[str]) -> int:
    """The benchmark's own key of an architecture given in any equivalent form.

    Uses ``nas_bench_graph.architecture.Arch.valid_hash`` (regularise the link order, move
    inert skips, sort interchangeable siblings), so architectures the benchmark treats as
    identical share a key. Inputs must already be well formed (4 links with
    ``links[i] <= i``, ops from :data:`OPS`); raises ``ValueError`` when the benchmark's
    canonicalisation does not land on a canonical link pattern.
    """
    from nas_bench_graph.architecture import Arch

    try:
        return int(Arch(list(links), list(ops)).valid_hash())
    except (KeyError, IndexError, UnboundLocalError, TypeError) as exc:
        raise ValueError(f"architecture {links} {ops} has no benchmark key ({exc})") from None
