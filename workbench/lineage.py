"""Family trees of trials: ancestors through ``parent_trial`` links and the steps between them."""

from __future__ import annotations

from dataclasses import dataclass

from metastore import Metastore, TrialRecord
from workbench.errors import InvalidGenotype, NotFound
from workbench.space.edits import MorphismStep, steps_from_json

MORPHISMS_TAG = "nasw.morphisms"


@dataclass(frozen=True)
class Generation:
    """One trial of a lineage and how it came from its parent.

    Attributes:
        trial: The trial's record.
        steps: Morphism steps from the parent's genotype to this one (empty for a root, or for
            a child that inherited weights unchanged).
        inherited: How its weights started (the ``nasw.note.inherited`` tag), if they did.
        warning: Why it could not inherit (the ``nasw.note.weights`` tag), if it could not.
    """

    trial: TrialRecord
    steps: tuple[MorphismStep, ...] = ()
    inherited: str | None = None
    warning: str | None = None


def resolve_trial(store: Metastore, trial_id: str) -> str:
    """The full id of a trial given its id or a unique prefix (at least 6 characters)."""
    trial_id = trial_id.strip()
    try:
        return store.trial(trial_id).trial_id
    except NotFound:
        pass
    if len(trial_id) < 6:
        raise NotFound(f"no trial with id {trial_id!r}; give the full id or a prefix of at least 6 characters")
    hits = [t.trial_id for s in store.searches() for t in store.trials(s.search_id) if t.trial_id.startswith(trial_id)]
    if not hits:
        raise NotFound(f"no trial with id {trial_id!r} in {store.uri}")
    if len(hits) > 1:
        raise NotFound(f"trial id prefix {trial_id!r} is ambiguous ({len(hits)} trials match)")
    return hits[0]


def generation_of(rec: TrialRecord) -> Generation:
    """The lineage view of one trial record (unreadable step tags count as no steps)."""
    try:
        steps = steps_from_json(rec.tags.get(MORPHISMS_TAG))
    except InvalidGenotype:
        steps = ()
    return Generation(rec, steps, rec.tags.get("nasw.note.inherited"), rec.tags.get("nasw.note.weights"))


def ancestors(store: Metastore, trial_id: str, max_depth: int = 10_000) -> list[Generation]:
    """The trial and its ancestors, root first (stops at a missing parent or a cycle)."""
    out: list[Generation] = []
    seen: set[str] = set()
    current: str | None = trial_id
    while current and current not in seen and len(out) < max_depth:
        seen.add(current)
        try:
            rec = store.trial(current)
        except NotFound:
            break
        out.append(generation_of(rec))
        current = rec.parent_trial
    return out[::-1]


def children(store: Metastore, rec: TrialRecord) -> list[TrialRecord]:
    """Trials of the same search that name ``rec`` as their parent, in start order."""
    return [t for t in store.trials(rec.search_id) if t.parent_trial == rec.trial_id]


def describe(genotype_json: str, limit: int = 90) -> str:
    """A one-line summary of a chain or DAG genotype (other spaces: compact JSON).

    A malformed genotype read back from a store shows as its (cut) text, never an error.
    """
    try:
        return _describe(genotype_json, limit)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return str(genotype_json)[:limit]


def _describe(genotype_json: str, limit: int) -> str:
    import json

    try:
        obj = json.loads(genotype_json)
        spec = obj["spec"]
    except (ValueError, KeyError, TypeError):
        return genotype_json[:limit]
    parts: list[str] = []
    if isinstance(spec, dict) and isinstance(spec.get("layers"), list):
        for layer in spec["layers"]:
            op = str(layer.get("op", "?"))
            if "kernel" in layer:
                parts.append(f"{op}{layer['kernel']}x{layer.get('width')}")
            elif "width" in layer:
                parts.append(f"{op}{layer['width']}")
            else:
                parts.append(op)
        text = " > ".join(parts)
    elif isinstance(spec, dict) and isinstance(spec.get("nodes"), list):
        for k, node in enumerate(spec["nodes"], start=1):
            ins = ",".join(str(i) for i in node.get("inputs", []))
            merge = "+" if node.get("merge") == "add" or len(node.get("inputs", [])) < 2 else "|"
            parts.append(f"{k}:{node.get('op')}({ins.replace(',', merge)})")
        width = (spec.get("macro") or {}).get("width")
        text = " ".join(parts) + (f" w{width}" if width else "")
    else:
        text = json.dumps(spec, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"
