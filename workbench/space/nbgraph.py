"""NAS-Bench-Graph as a search space: 4-node GNN macro architectures looked up, not trained.

An architecture is four computing nodes. ``links[i]`` names node ``i``'s single input (0 = the
raw input, ``j`` = computing node ``j``, so ``links[i] <= i``); ``ops[i]`` is its operation. Every
node without a successor feeds the output. The benchmark tabulates each architecture once, under
the key of its canonical form (``nas_bench_graph.architecture.Arch.valid_hash``): node order,
inert skips and interchangeable siblings are normalised, so different specs that the benchmark
treats as the same network share :attr:`Genotype.key`.

The members of a space are exactly the keys in its dataset's table: 26,206 architectures on
cora, citeseer, pubmed, cs, physics, photo, computers and arxiv (9 ops, all-skip excluded), and
2,021 on proteins (only gcn, sage, arma, fc, skip). :meth:`NBGraphSpace.sample`,
:meth:`~NBGraphSpace.mutate` and :meth:`~NBGraphSpace.enumerate` return members in canonical form;
:meth:`~NBGraphSpace.validate` also accepts any equivalent spelling of a member.

Encodings share one width across datasets (so tasks can be compared and transferred):

* ``"onehot"`` (45 columns): one-hot of the 9 canonical link patterns, then a one-hot over the 9
  ops for each of the 4 nodes.
* ``"path"`` (593 columns): input-to-output paths (one per leaf node) as op sequences, with
  ``skip`` (identity) removed; counts of each sequence of length 0 to 3 over the 8 non-skip ops
  (1 + 8 + 64 + 512 = 585 columns). A length-4 sequence only occurs for a chain of four non-skip
  ops (at most one per architecture); it counts under its length-3 prefix and its 4th op sets one
  of 8 extra columns, which keeps the encoding exact for those paths.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from workbench.data import nbgraph_tables as tables
from workbench.errors import InvalidGenotype
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype

OPS = tables.OPS
PROTEINS_OPS = tables.PROTEINS_OPS
LINK_PATTERNS = tables.LINK_PATTERNS
DATASETS = tables.DATASETS

_NONSKIP = tuple(o for o in OPS if o != "skip")
_PATH_OFFSETS = (0, 1, 1 + 8, 1 + 8 + 64)  # start column of paths of length 0, 1, 2, 3
_PATH_WIDTH = 1 + 8 + 64 + 512 + 8
_ONEHOT_WIDTH = len(LINK_PATTERNS) + 4 * len(OPS)

# per-process caches shared by every instance: dataset -> pool, (dataset, encoding) -> array
_POOLS: dict[str, list[Genotype]] = {}
_POOL_ENCODINGS: dict[tuple[str, str], np.ndarray] = {}


def _parse(g: Genotype) -> tuple[list[int], list[str]]:
    """Structural checks shared by ``canonical`` and ``validate``; returns ``(links, ops)``."""
    value = g.value
    if not isinstance(value, dict) or set(value) != {"links", "ops"}:
        got = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise InvalidGenotype(f"nbgraph spec must be an object with keys 'links' and 'ops'; got {got}")
    links, ops = value["links"], value["ops"]
    if not isinstance(links, list) or len(links) != 4:
        raise InvalidGenotype(f"nbgraph 'links' must be a list of 4 integers; got {links!r}")
    for i, link in enumerate(links):
        if isinstance(link, bool) or not isinstance(link, int) or not 0 <= link <= i:
            raise InvalidGenotype(
                f"nbgraph links[{i}] must be an integer in 0..{i} (0 = input, j = node j); got {link!r} in {links}"
            )
    if not isinstance(ops, list) or len(ops) != 4:
        raise InvalidGenotype(f"nbgraph 'ops' must be a list of 4 operation names; got {ops!r}")
    for i, op in enumerate(ops):
        if op not in OPS:
            raise InvalidGenotype(f"nbgraph ops[{i}] must be one of {list(OPS)}; got {op!r}")
    if all(op == "skip" for op in ops):
        raise InvalidGenotype("nbgraph architecture must have at least one op other than 'skip'")
    return links, ops


def _key(g: Genotype) -> int:
    links, ops = _parse(g)
    try:
        return tables.arch_key(links, ops)
    except ValueError as exc:
        raise InvalidGenotype(str(exc)) from None


def _paths(links: Sequence[int], ops: Sequence[str]) -> list[list[str]]:
    """Input-to-output op sequences (skip removed), one per leaf node."""
    parents = set(links)
    out = []
    for leaf in range(4):
        if leaf + 1 in parents:  # has a successor: not a leaf
            continue
        seq: list[str] = []
        node = leaf
        while node >= 0:
            if ops[node] != "skip":
                seq.append(ops[node])
            node = links[node] - 1
        out.append(seq[::-1])
    return out


def _path_row(links: Sequence[int], ops: Sequence[str]) -> np.ndarray:
    row = np.zeros(_PATH_WIDTH)
    for seq in _paths(links, ops):
        idx = [_NONSKIP.index(o) for o in seq]
        if len(idx) == 4:
            row[_PATH_WIDTH - 8 + idx[3]] += 1.0
            idx = idx[:3]
        code = 0
        for d in idx:
            code = code * 8 + d
        row[_PATH_OFFSETS[len(idx)] + code] += 1.0
    return row


def _onehot_rows(keys: np.ndarray) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.int64)
    out = np.zeros((len(keys), _ONEHOT_WIDTH))
    rows = np.arange(len(keys))
    out[rows, keys // 10**4] = 1.0
    for i in range(4):
        digit = (keys // 10 ** (3 - i)) % 10
        out[rows, len(LINK_PATTERNS) + i * len(OPS) + digit] = 1.0
    return out


class NBGraphSpace(SearchSpace):
    """The NAS-Bench-Graph space of one dataset (members = the dataset's table).

    Genotype spec: ``{"links": [0, 0, 1, 2], "ops": ["gcn", "sage", "skip", "fc"]}``.

    Args:
        dataset: One of ``cora, citeseer, pubmed, cs, physics, photo, computers, arxiv,
            proteins``.

    Raises:
        UserError: For an unknown dataset.
    """

    name = "nbgraph-v1"
    trainable = False
    encodings = ("onehot", "path")

    def __init__(self, dataset: str = "cora") -> None:
        self.dataset = tables.check_dataset(dataset)
        self.ops: tuple[str, ...] = tables.ops_for(dataset)

    def settings(self) -> dict[str, Any]:
        return {"dataset": self.dataset}

    def __repr__(self) -> str:
        return f"NBGraphSpace(dataset={self.dataset!r})"

    # -- keys and the pool --------------------------------------------------------------

    @staticmethod
    def genotype_of_key(key: int) -> Genotype:
        """The canonical-form genotype of a table key."""
        links, ops = tables.decode_key(key)
        return Genotype.of(NBGraphSpace.name, {"links": links, "ops": ops})

    def key_of(self, g: Genotype) -> int:
        """The table key of a member; raises :class:`InvalidGenotype` for anything else."""
        self.check_space(g)
        links, ops = _parse(g)
        foreign = [op for op in ops if op not in self.ops]
        if foreign:
            raise InvalidGenotype(
                f"ops {foreign} are not in the {self.dataset} table; this dataset covers only {list(self.ops)}"
            )
        try:
            key = tables.arch_key(links, ops)
        except ValueError as exc:
            raise InvalidGenotype(str(exc)) from None
        if key not in tables.key_index(self.dataset):
            raise InvalidGenotype(
                f"architecture links={links} ops={ops} (benchmark key {key:05d}) is not in the {self.dataset} table"
            )
        return key

    def index_of(self, g: Genotype) -> int:
        """Position of ``g`` (any equivalent spelling) in :meth:`pool`."""
        return tables.key_index(self.dataset)[self.key_of(g)]

    def pool_keys(self) -> np.ndarray:
        """Table keys in pool order (`n`, int64, read-only)."""
        return tables.table_keys(self.dataset)

    def pool(self) -> list[Genotype]:
        """Every member in a fixed order (sorted table key), aligned with ``table_arrays``.

        The list is cached and shared; copy it before changing it.
        """
        pool = _POOLS.get(self.dataset)
        if pool is None:
            pool = [self.genotype_of_key(int(k)) for k in self.pool_keys()]
            _POOLS[self.dataset] = pool
        return pool

    def __len__(self) -> int:
        return len(self.pool_keys())

    def pool_encoding(self, encoding: str = "onehot") -> np.ndarray:
        """Encoding of the whole :meth:`pool` (`n x d`, float64, cached, read-only)."""
        self._check_encoding(encoding)
        enc = _POOL_ENCODINGS.get((self.dataset, encoding))
        if enc is None:
            keys = self.pool_keys()
            if encoding == "onehot":
                enc = _onehot_rows(keys)
            else:
                enc = np.stack([_path_row(*tables.decode_key(int(k))) for k in keys])
            enc.setflags(write=False)
            _POOL_ENCODINGS[self.dataset, encoding] = enc
        return enc

    # -- SearchSpace ----------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Genotype:
        """A member drawn uniformly from the table."""
        keys = self.pool_keys()
        return self.genotype_of_key(int(keys[rng.integers(len(keys))]))

    def neighbours(self, g: Genotype) -> list[Genotype]:
        """Members one edit from ``g``, excluding ``g`` itself (sorted by key).

        An edit changes one node's op (to another op of this dataset) or one node's input
        (moving to a neighbouring link pattern); results are canonicalised and de-duplicated.
        """
        key = self.key_of(g)
        links, ops = tables.decode_key(key)
        members = tables.key_index(self.dataset)
        found: set[int] = set()
        candidates: list[tuple[list[int], list[str]]] = []
        for i in range(4):
            for op in self.ops:
                if op != ops[i]:
                    candidates.append((links, ops[:i] + [op] + ops[i + 1 :]))
        for i in range(1, 4):
            for link in range(i + 1):
                if link != links[i]:
                    candidates.append((links[:i] + [link] + links[i + 1 :], ops))
        for new_links, new_ops in candidates:
            if all(op == "skip" for op in new_ops):
                continue
            try:
                new_key = tables.arch_key(new_links, new_ops)
            except ValueError:
                continue
            if new_key != key and new_key in members:
                found.add(new_key)
        return [self.genotype_of_key(k) for k in sorted(found)]

    def mutate(self, g: Genotype, rng: np.random.Generator) -> Genotype:
        """A member one edit away (uniform over the distinct :meth:`neighbours`)."""
        options = self.neighbours(g)
        if not options:  # pragma: no cover - every member has neighbours
            raise InvalidGenotype(f"{g} has no neighbour in the {self.dataset} table")
        return options[int(rng.integers(len(options)))]

    def validate(self, g: Genotype) -> None:
        """Accept members of this dataset's table, in any spelling the benchmark equates."""
        self.key_of(g)

    @classmethod
    def canonical(cls, g: Genotype) -> str:
        """The benchmark's table key (5 digits), equal for architectures it treats as one."""
        return f"{_key(g):05d}"

    @classmethod
    def describe(cls, g: Genotype) -> str:
        """Each computing node as ``k:op(input)`` (0 = the raw input): ``1:gcn(0) 2:gat(1) 3:fc(1) 4:skip(2)``."""
        spec = g.value
        return " ".join(f"{k}:{op}({link})" for k, (link, op) in enumerate(zip(spec["links"], spec["ops"]), start=1))

    def encode(self, gs: Sequence[Genotype], encoding: str = "onehot") -> np.ndarray:
        """Encode members as `n x d` float64 (45 columns for onehot, 593 for path)."""
        self._check_encoding(encoding)
        keys = np.array([self.key_of(g) for g in gs], dtype=np.int64)
        if encoding == "onehot":
            return _onehot_rows(keys)
        cached = _POOL_ENCODINGS.get((self.dataset, encoding))
        if cached is not None:
            index = tables.key_index(self.dataset)
            return cached[[index[int(k)] for k in keys]]
        if not len(keys):
            return np.zeros((0, _PATH_WIDTH))
        return np.stack([_path_row(*tables.decode_key(int(k))) for k in keys])

    def enumerate(self) -> Iterator[Genotype]:
        """Every member of the table, in pool order."""
        return iter(list(self.pool()))

    def _check_encoding(self, encoding: str) -> None:
        if encoding not in self.encodings:
            raise InvalidGenotype(
                f"unknown encoding {encoding!r} for {self.name}; expected one of {list(self.encodings)}"
            )
