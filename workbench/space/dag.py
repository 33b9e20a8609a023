"""The multi-branch DAG space ``dag-v1``: a few same-resolution operations wired by skip connections.

Genotype layout (spec of a ``dag-v1`` genotype)::

    {
      "nodes": [                                  # node k of the DAG is nodes[k - 1]
        {"op": "conv3", "merge": "add", "inputs": [0]},
        {"op": "maxpool3", "merge": "concat", "inputs": [0, 1]},
        ...
      ],
      "macro": {"width": 16}                      # optional; filled in by the space
    }

Node 0 is the stem output (a 3-wide convolution to ``width`` channels); node ``k`` merges the
outputs of its ``inputs`` (any earlier nodes, a set: order is irrelevant, no repeats) and
applies its ``op``; the output of the network body is the *last* node. ``merge`` is ``"add"``
(element-wise sum) or ``"concat"`` (channel concatenation, then a 1x1 convolution + BatchNorm
back to ``width`` channels); it only matters for nodes with two or more inputs.

``macro`` holds the skeleton that comes from the space settings rather than from the search
(today just ``width``, which a fidelity scheduler may lower). It is part of the spec so the
network can be rebuilt from the genotype alone, but it is *not* part of the canonical key or of
the encodings: the key names the searched architecture.

Canonical form (:meth:`DagSpace.canonical`):

1. nodes that do not feed the output are dropped (dead);
2. ``identity`` nodes with a single input are aliases of that input: consumers read the input
   directly (inputs become a multiset: ``add(A, x)`` with ``A = identity(x)`` is ``x + x``);
   an alias output makes its input the output;
3. ``merge`` of single-input nodes is normalised to ``"add"``;
4. nodes are relabelled by the lexicographically smallest topological order of their
   ``(op, merge, inputs)`` entries (exact: ties between identical entries are branched on,
   except between nodes that also have the same consumers, which are interchangeable),
   so isomorphic graphs get the same string.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from workbench.errors import InvalidGenotype, UserError
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype

#: Every operation a ``dag-v1`` node may apply (all keep resolution and width).
DAG_OPS: tuple[str, ...] = (
    "conv3",
    "conv5",
    "sepconv3",
    "sepconv5",
    "maxpool3",
    "avgpool3",
    "identity",
)
#: How a node combines several inputs.
MERGES: tuple[str, ...] = ("add", "concat")
#: Largest ``max_nodes`` a space accepts (keeps canonicalisation and encodings small).
MAX_NODES_LIMIT = 12
DEFAULT_WIDTH = 16
#: Largest macro width a genotype or a space may name (a sanity bound on data read back from a
#: shared store; :func:`workbench.nn.build.check_size` bounds the parameter count as well).
MAX_WIDTH = 65536


@dataclass(frozen=True)
class DagNode:
    """One computation node: ``op`` applied to the ``merge`` of the ``inputs`` node outputs.

    Attributes:
        op: One of :data:`DAG_OPS`.
        merge: ``"add"`` or ``"concat"``.
        inputs: Indices of earlier nodes (0 = stem), sorted. In a genotype they are distinct;
            in a canonical (reduced) graph they may repeat (a multiset).
    """

    op: str
    merge: str
    inputs: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        """The JSON layout of this node."""
        return {"op": self.op, "merge": self.merge, "inputs": list(self.inputs)}


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def read_dag(
    g: Genotype,
    *,
    ops: Sequence[str] = DAG_OPS,
    max_nodes: int | None = None,
) -> tuple[tuple[DagNode, ...], dict[str, int]]:
    """Parse and check a ``dag-v1`` genotype.

    Args:
        g: The genotype.
        ops: Operations allowed (a space may restrict :data:`DAG_OPS`).
        max_nodes: Largest number of nodes allowed; None = any.

    Returns:
        The nodes (node ``k`` is element ``k - 1``, inputs sorted) and the macro settings
        (``{"width": ...}``, defaults filled in).

    Raises:
        InvalidGenotype: Saying what was expected and what was received.
    """
    if not isinstance(g, Genotype):
        raise InvalidGenotype(f"expected a Genotype, got {type(g).__name__}")
    if g.space != DagSpace.name:
        raise InvalidGenotype(f"genotype belongs to space {g.space!r}, expected {DagSpace.name!r}")
    spec = g.value
    if not isinstance(spec, dict):
        raise InvalidGenotype(f"dag spec must be an object with 'nodes'; got {type(spec).__name__}")
    unknown = sorted(set(spec) - {"nodes", "macro"})
    if unknown or "nodes" not in spec:
        raise InvalidGenotype(f"dag spec keys must be 'nodes' and optionally 'macro'; got {sorted(spec)}")
    macro = read_dag_macro(spec.get("macro"))
    raw = spec["nodes"]
    if not isinstance(raw, list):
        raise InvalidGenotype(f"dag 'nodes' must be a list; got {type(raw).__name__}")
    hi = MAX_NODES_LIMIT if max_nodes is None else max_nodes
    if not 1 <= len(raw) <= hi:
        raise InvalidGenotype(f"dag must have 1..{hi} nodes; got {len(raw)}")
    nodes: list[DagNode] = []
    for k, item in enumerate(raw, start=1):
        where = f"node {k}"
        if not isinstance(item, dict) or set(item) != {"op", "merge", "inputs"}:
            got = sorted(item) if isinstance(item, dict) else type(item).__name__
            raise InvalidGenotype(f"{where} must have keys ['inputs', 'merge', 'op']; got {got}")
        op, merge, inputs = item["op"], item["merge"], item["inputs"]
        if op not in ops:
            raise InvalidGenotype(f"{where}: op must be one of {list(ops)}; got {op!r}")
        if merge not in MERGES:
            raise InvalidGenotype(f"{where}: merge must be one of {list(MERGES)}; got {merge!r}")
        if not isinstance(inputs, list) or not inputs:
            raise InvalidGenotype(f"{where}: inputs must be a non-empty list of earlier node indices; got {inputs!r}")
        for i in inputs:
            if not _is_int(i) or not 0 <= i < k:
                raise InvalidGenotype(f"{where}: inputs must be earlier nodes 0..{k - 1} (0 = stem); got {i!r}")
        if len(set(inputs)) != len(inputs):
            raise InvalidGenotype(f"{where}: inputs must not repeat; got {inputs}")
        nodes.append(DagNode(op, merge, tuple(sorted(int(i) for i in inputs))))
    return tuple(nodes), macro


def read_dag_macro(macro: Any) -> dict[str, int]:
    """Check the optional ``macro`` object of a dag spec; returns it with defaults filled in."""
    if macro is None:
        return {"width": DEFAULT_WIDTH}
    if not isinstance(macro, dict) or not set(macro) <= {"width"}:
        got = sorted(macro) if isinstance(macro, dict) else type(macro).__name__
        raise InvalidGenotype(f"dag 'macro' must be an object with optional 'width'; got {got}")
    width = macro.get("width", DEFAULT_WIDTH)
    if not _is_int(width) or width < 1:
        raise InvalidGenotype(f"dag macro 'width' must be a positive integer; got {width!r}")
    if width > MAX_WIDTH:
        raise InvalidGenotype(f"dag macro 'width' must be at most {MAX_WIDTH}; got {width!r}")
    return {"width": int(width)}


def live_nodes(nodes: Sequence[DagNode]) -> set[int]:
    """Indices (1-based) of the nodes that feed the output (the last node), output included."""
    out = len(nodes)
    live = {out}
    for k in range(out, 0, -1):
        if k in live:
            live.update(i for i in nodes[k - 1].inputs if i > 0)
    return live


def reduce_dag(nodes: Sequence[DagNode]) -> tuple[DagNode, ...]:
    """The canonical (reduced, relabelled) graph of ``nodes``; see the module docstring.

    The result is a node tuple in the genotype layout except that inputs may repeat.
    Isomorphic genotypes, and genotypes that differ only by dead nodes, single-input identity
    aliases or the merge of single-input nodes, give equal tuples.
    """
    n = len(nodes)

    def root(k: int) -> int:
        while k > 0 and nodes[k - 1].op == "identity" and len(nodes[k - 1].inputs) == 1:
            k = nodes[k - 1].inputs[0]
        return k

    out = root(n)
    if out == 0:  # the body is the identity: the canonical graph is one identity node
        return (DagNode("identity", "add", (0,)),)
    # resolved inputs (multisets) of the nodes that feed the output
    resolved: dict[int, tuple[int, ...]] = {}
    stack = [out]
    while stack:
        k = stack.pop()
        if k in resolved:
            continue
        ins = tuple(sorted(root(i) for i in nodes[k - 1].inputs))
        resolved[k] = ins
        stack.extend(i for i in set(ins) if i > 0 and i not in resolved)
    label = {k: (nodes[k - 1].op, nodes[k - 1].merge if len(ins) > 1 else "add") for k, ins in resolved.items()}
    inner = sorted(k for k in resolved if k != out)
    consumers: dict[int, tuple[int, ...]] = {k: () for k in resolved}
    for k, ins in resolved.items():
        for i in ins:
            if i > 0:
                consumers[i] += (k,)
    best: list[tuple[str, str, tuple[int, ...]]] | None = None

    def entry(k: int, pos: dict[int, int]) -> tuple[str, str, tuple[int, ...]]:
        return (*label[k], tuple(sorted(pos[i] for i in resolved[k])))

    def search(pos: dict[int, int], seq: list[tuple[str, str, tuple[int, ...]]]) -> None:
        nonlocal best
        if best is not None and seq > best[: len(seq)]:
            return
        if len(seq) == len(inner):
            full = [*seq, entry(out, pos)]
            if best is None or full < best:
                best = full
            return
        ready = [k for k in inner if k not in pos and all(i in pos for i in resolved[k])]
        entries = {k: entry(k, pos) for k in ready}
        low = min(entries.values())
        tried: set[tuple[int, ...]] = set()
        for k in ready:
            # tied nodes have equal labels and inputs; those that also have equal consumers
            # are interchangeable (swapping them is an automorphism): branch on one of them
            if entries[k] == low and consumers[k] not in tried:
                tried.add(consumers[k])
                pos[k] = len(seq) + 1
                seq.append(low)
                search(pos, seq)
                seq.pop()
                del pos[k]

    search({0: 0}, [])
    assert best is not None
    return tuple(DagNode(op, merge, ins) for op, merge, ins in best)


def _paths(nodes: Sequence[DagNode], max_len: int) -> dict[tuple[str, ...], int]:
    """Counts of op sequences along stem -> output paths of length <= ``max_len``."""
    # paths[k] = {op sequence from the stem to node k (inclusive): count}
    paths: list[dict[tuple[str, ...], int]] = [{(): 1}]
    for node in nodes:
        here: dict[tuple[str, ...], int] = {}
        for i in node.inputs:  # a multiset: repeated inputs count twice
            for seq, c in paths[i].items():
                if len(seq) < max_len:
                    s = (*seq, node.op)
                    here[s] = here.get(s, 0) + c
        paths.append(here)
    return paths[-1]


class DagSpace(SearchSpace):
    """Multi-branch DAGs of up to ``max_nodes`` same-resolution operations (``dag-v1``).

    Args:
        max_nodes: Largest number of computation nodes (the stem not counted), 1..12.
        min_nodes: Smallest number of nodes a sample or mutation produces.
        width: Channels of every node (the macro skeleton; written into each genotype's
            ``macro``, not part of its key).
        ops: The operations allowed, a subset of :data:`DAG_OPS`.
        path_length: Longest op sequence counted by the ``"path"`` encoding (longer
            stem -> output paths are not counted), 1..``max_nodes``; default
            ``min(3, max_nodes)``.

    Raises:
        UserError: On a bad setting.
    """

    name: ClassVar[str] = "dag-v1"
    kind: ClassVar[str] = "dag"
    encodings: ClassVar[tuple[str, ...]] = ("onehot", "path")

    def __init__(
        self,
        max_nodes: int = 5,
        width: int = DEFAULT_WIDTH,
        ops: Sequence[str] = DAG_OPS,
        min_nodes: int = 1,
        path_length: int | None = None,
    ) -> None:
        if not _is_int(max_nodes) or not 1 <= max_nodes <= MAX_NODES_LIMIT:
            raise UserError(f"dag max_nodes must be an integer in 1..{MAX_NODES_LIMIT}; got {max_nodes!r}")
        if not _is_int(min_nodes) or not 1 <= min_nodes <= max_nodes:
            raise UserError(f"dag min_nodes must be an integer in 1..{max_nodes}; got {min_nodes!r}")
        if not _is_int(width) or width < 1:
            raise UserError(f"dag width must be a positive integer; got {width!r}")
        if width > MAX_WIDTH:
            raise UserError(f"dag width must be at most {MAX_WIDTH}; got {width!r}")
        if isinstance(ops, str) or not isinstance(ops, Sequence):
            raise UserError(f"dag ops must be a list of op names from {list(DAG_OPS)}; got {ops!r}")
        bad = [o for o in ops if o not in DAG_OPS]
        if bad or not ops or len(set(ops)) != len(ops):
            raise UserError(f"dag ops must be distinct names from {list(DAG_OPS)}; got {list(ops)}")
        if path_length is None:
            path_length = min(3, max_nodes) if _is_int(max_nodes) else 3
        if not _is_int(path_length) or not 1 <= path_length <= max_nodes:
            raise UserError(f"dag path_length must be an integer in 1..{max_nodes}; got {path_length!r}")
        if len(ops) == 1 and max_nodes == 1:
            raise UserError("dag space with one op and max_nodes=1 has a single member; widen it")
        self.max_nodes = int(max_nodes)
        self.min_nodes = int(min_nodes)
        self.width = int(width)
        self.ops: tuple[str, ...] = tuple(ops)
        self.path_length = int(path_length)
        self._path_index = {
            seq: i
            for i, seq in enumerate(
                s for length in range(1, self.path_length + 1) for s in itertools.product(self.ops, repeat=length)
            )
        }

    # -- settings and genotypes ------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return {
            "max_nodes": self.max_nodes,
            "width": self.width,
            "ops": list(self.ops),
            "min_nodes": self.min_nodes,
            "path_length": self.path_length,
        }

    def make(self, nodes: Sequence[DagNode | Mapping[str, Any]]) -> Genotype:
        """A validated genotype of this space from nodes (``DagNode`` or dicts), macro filled in."""
        items = [n.as_dict() if isinstance(n, DagNode) else dict(n) for n in nodes]
        g = Genotype.of(self.name, {"nodes": items, "macro": {"width": self.width}})
        self.validate(g)
        return g

    def _genotype(self, nodes: Sequence[DagNode], macro: Mapping[str, int]) -> Genotype:
        return Genotype.of(self.name, {"nodes": [n.as_dict() for n in nodes], "macro": dict(macro)})

    def validate(self, g: Genotype) -> None:
        self.check_space(g)
        read_dag(g, ops=self.ops, max_nodes=self.max_nodes)

    @classmethod
    def canonical(cls, g: Genotype) -> str:
        nodes, _ = read_dag(g)
        reduced = reduce_dag(nodes)
        return json.dumps([[n.op, n.merge, list(n.inputs)] for n in reduced], separators=(",", ":"))

    @classmethod
    def describe(cls, g: Genotype) -> str:
        """Each node as ``k:op(inputs)``, inputs joined by ``+`` (add) or ``|`` (concat), then the
        width: ``1:conv3(0) 2:maxpool3(0|1) w16``."""
        spec = g.value
        parts = []
        for k, node in enumerate(spec["nodes"], start=1):
            inputs = [str(i) for i in node.get("inputs", [])]
            merge = "+" if node.get("merge") == "add" or len(inputs) < 2 else "|"
            parts.append(f"{k}:{node.get('op')}({merge.join(inputs)})")
        width = (spec.get("macro") or {}).get("width")
        return " ".join(parts) + (f" w{width}" if width else "")

    # -- sampling and mutation ---------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Genotype:
        n = int(rng.integers(self.min_nodes, self.max_nodes + 1))
        nodes = []
        for k in range(1, n + 1):
            # the predecessor usually feeds a node (so most nodes are live), others sometimes
            chosen = [i for i in range(k) if rng.random() < (0.9 if i == k - 1 else 0.35)]
            if not chosen:
                chosen = [k - 1]
            merge = MERGES[int(rng.integers(len(MERGES)))] if len(chosen) > 1 else "add"
            nodes.append(DagNode(self.ops[int(rng.integers(len(self.ops)))], merge, tuple(chosen)))
        return self._genotype(nodes, {"width": self.width})

    def mutate(self, g: Genotype, rng: np.random.Generator) -> Genotype:
        """One edit: change an op, flip a merge, add or remove an input, insert or remove a node.

        Edits that change the canonical key are preferred (tried at random first, then
        exhaustively over op / merge / input edits and appending an output, where changing
        the output's op always changes the key); the result always differs from ``g``.
        """
        self.validate(g)
        nodes, macro = read_dag(g)
        key = g.key
        fallback: Genotype | None = None
        for _ in range(48):
            edited = self._random_edit(list(nodes), rng)
            if edited is None:
                continue
            child = self._genotype(edited, macro)
            if child.key != key:
                return child
            if fallback is None and child != g:
                fallback = child
        edits = list(self._small_edits(nodes))
        for j in rng.permutation(len(edits)):
            child = self._genotype(edits[int(j)], macro)
            if child.key != key:
                return child
            if fallback is None and child != g:
                fallback = child
        if fallback is None:  # pragma: no cover - excluded by the settings check
            raise UserError(f"no mutation of {g} exists in this space")
        return fallback  # only in degenerate spaces (e.g. ops = ['identity']): same key

    def _small_edits(self, nodes: Sequence[DagNode]) -> Iterator[list[DagNode]]:
        """Every op change, merge flip, input addition / removal, and appending a new output."""
        for k, node in enumerate(nodes):
            for op in self.ops:
                if op != node.op:
                    yield self._replace(nodes, k, DagNode(op, node.merge, node.inputs))
            if len(node.inputs) > 1:
                flip = "concat" if node.merge == "add" else "add"
                yield self._replace(nodes, k, DagNode(node.op, flip, node.inputs))
                for i in node.inputs:
                    ins = tuple(x for x in node.inputs if x != i)
                    yield self._replace(nodes, k, DagNode(node.op, node.merge, ins))
            for i in range(k + 1):
                if i not in node.inputs:
                    ins = tuple(sorted((*node.inputs, i)))
                    yield self._replace(nodes, k, DagNode(node.op, node.merge, ins))
        if len(nodes) < self.max_nodes:  # a new output reading the old one
            for op in self.ops:
                if op != "identity":
                    yield [*nodes, DagNode(op, "add", (len(nodes),))]
                    break

    @staticmethod
    def _replace(nodes: Sequence[DagNode], k: int, node: DagNode) -> list[DagNode]:
        out = list(nodes)
        out[k] = node
        return out

    def _random_edit(self, nodes: list[DagNode], rng: np.random.Generator) -> list[DagNode] | None:
        n = len(nodes)
        kinds = ["op", "input"]
        if any(len(x.inputs) > 1 for x in nodes):
            kinds += ["merge", "drop_input"]
        if n < self.max_nodes:
            kinds.append("insert")
        if n > max(self.min_nodes, 1):
            kinds.append("remove")
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "op":
            k = int(rng.integers(n))
            choices = [o for o in self.ops if o != nodes[k].op]
            if not choices:
                return None
            op = choices[int(rng.integers(len(choices)))]
            return self._replace(nodes, k, DagNode(op, nodes[k].merge, nodes[k].inputs))
        if kind == "merge":
            multi = [k for k, x in enumerate(nodes) if len(x.inputs) > 1]
            k = multi[int(rng.integers(len(multi)))]
            flip = "concat" if nodes[k].merge == "add" else "add"
            return self._replace(nodes, k, DagNode(nodes[k].op, flip, nodes[k].inputs))
        if kind == "input":
            k = int(rng.integers(n))  # node k + 1 may read nodes 0..k
            free = [i for i in range(k + 1) if i not in nodes[k].inputs]
            if not free:
                return None
            i = free[int(rng.integers(len(free)))]
            ins = tuple(sorted((*nodes[k].inputs, i)))
            return self._replace(nodes, k, DagNode(nodes[k].op, nodes[k].merge, ins))
        if kind == "drop_input":
            multi = [k for k, x in enumerate(nodes) if len(x.inputs) > 1]
            k = multi[int(rng.integers(len(multi)))]
            drop = nodes[k].inputs[int(rng.integers(len(nodes[k].inputs)))]
            ins = tuple(i for i in nodes[k].inputs if i != drop)
            merge = nodes[k].merge if len(ins) > 1 else "add"
            return self._replace(nodes, k, DagNode(nodes[k].op, merge, ins))
        if kind == "insert":
            # the new node gets index p (1..n, before the output), reads one earlier node and
            # feeds one later node, so it is live
            p = int(rng.integers(1, n + 1))

            def shift(i: int) -> int:
                return i + 1 if i >= p else i

            moved = [DagNode(x.op, x.merge, tuple(shift(i) for i in x.inputs)) for x in nodes]
            new = DagNode(self.ops[int(rng.integers(len(self.ops)))], "add", (int(rng.integers(p)),))
            moved.insert(p - 1, new)
            c = int(rng.integers(p + 1, n + 2))  # a consumer among the later nodes
            ins = tuple(sorted((*moved[c - 1].inputs, p)))
            moved[c - 1] = DagNode(moved[c - 1].op, moved[c - 1].merge, ins)
            return moved
        # remove an intermediate node k (1..n-1); its consumers read its inputs instead
        k = int(rng.integers(1, n))
        gone = nodes[k - 1]
        out: list[DagNode] = []
        for j, x in enumerate(nodes, start=1):
            if j == k:
                continue
            ins = set(x.inputs)
            if k in ins:
                ins.discard(k)
                ins.update(gone.inputs)
            merge = x.merge if len(ins) > 1 else "add"
            out.append(DagNode(x.op, merge, tuple(sorted(i - 1 if i > k else i for i in ins))))
        return out

    # -- encodings ---------------------------------------------------------------------------

    @property
    def onehot_width(self) -> int:
        """Width of the ``"onehot"`` encoding."""
        m = self.max_nodes
        return (m + 1) * m // 2 + m * (len(self.ops) + 1)

    @property
    def path_width(self) -> int:
        """Width of the ``"path"`` encoding."""
        return len(self._path_index)

    def encode(self, gs: Sequence[Genotype], encoding: str = "onehot") -> np.ndarray:
        """Encode the canonical graphs of ``gs``; isomorphic genotypes give equal rows.

        ``"onehot"``: slots 0 (stem) .. ``max_nodes``; the canonical output always sits in the
        last slot and the other canonical nodes in slots 1, 2, ...; first the upper-triangular
        adjacency (``i < j``, row-major; an entry counts the times slot ``j`` reads slot ``i``),
        then per slot 1..``max_nodes`` a one-hot op over :attr:`ops` and a ``concat`` bit
        (empty slots are zero). Width ``(M+1)M/2 + M(len(ops)+1)``.

        ``"path"``: counts of each op sequence (length 1..``path_length``) along stem -> output
        paths; width ``sum_l len(ops)**l``.
        """
        if encoding not in self.encodings:
            raise UserError(f"encoding must be one of {list(self.encodings)}; got {encoding!r}")
        width = self.onehot_width if encoding == "onehot" else self.path_width
        out = np.zeros((len(gs), width), dtype=np.float64)
        m = self.max_nodes
        pairs = [(i, j) for i in range(m + 1) for j in range(i + 1, m + 1)]
        tri = {pair: t for t, pair in enumerate(pairs)}
        op_index = {o: t for t, o in enumerate(self.ops)}
        n_ops = len(self.ops)
        base = len(tri)
        for row, g in enumerate(gs):
            self.validate(g)
            nodes = reduce_dag(read_dag(g)[0])
            if encoding == "path":
                for seq, c in _paths(nodes, self.path_length).items():
                    out[row, self._path_index[seq]] = c
                continue
            n = len(nodes)
            slot = {k: k for k in range(n)}  # stem and intermediate nodes keep their index
            slot[n] = m  # the output goes to the last slot
            for k, node in enumerate(nodes, start=1):
                s = slot[k]
                for i in node.inputs:
                    out[row, tri[(slot[i], s)]] += 1.0
                col = base + (s - 1) * (n_ops + 1)
                out[row, col + op_index[node.op]] = 1.0
                out[row, col + n_ops] = 1.0 if node.merge == "concat" else 0.0
        return out
