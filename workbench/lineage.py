"""Family trees of trials: ancestors through ``parent_trial`` links and the steps between them."""

from __future__ import annotations

from dataclasses import dataclass

from metastore import Metastore, TrialRecord
from metastore.schema import NOTE_INHERITED, NOTE_WEIGHTS, TAG_MORPHISMS, note_tag
from workbench.errors import InvalidGenotype, NotFound
from workbench.space.edits import MorphismStep, steps_from_json


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
        steps = steps_from_json(rec.tags.get(TAG_MORPHISMS))
    except InvalidGenotype:
        steps = ()
    return Generation(rec, steps, rec.tags.get(note_tag(NOTE_INHERITED)), rec.tags.get(note_tag(NOTE_WEIGHTS)))


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
