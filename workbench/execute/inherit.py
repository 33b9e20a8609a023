"""Weight inheritance: the weights a trial starts from (its parent's, through morphism steps,
or shape-matched from another task), never raising for bad weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metastore import Metastore
from metastore.schema import NOTE_INHERITED, NOTE_WEIGHTS
from workbench.errors import InvalidGenotype, NotFound
from workbench.evaluate.base import Evaluator, traits_of
from workbench.execute.trial import TrialJob, default_inherit
from workbench.space.edits import steps_from_json
from workbench.space.genotype import Genotype

SCRATCH = "; trained from scratch"


def inherit_weights(
    store: Metastore, job: TrialJob, genotype: Genotype, evaluator: Evaluator | None = None
) -> tuple[Mapping[str, Any] | None, dict[str, str]]:
    """The weights a trial starts from, and notes for its run; never raises for bad weights.

    * No parent: None (train from scratch).
    * A parent and no morphism steps, same task: the parent's weights as they are.
    * Morphism steps (``job.morphisms``): the parent's genotype (from the store) and weights are
      replayed through the steps (:func:`workbench.morph.lineage.inherit_state`), so the child
      starts with its parent's function and is only fine-tuned.
    * A parent trained on another task: only tensors whose shapes fit are kept (the input stem
      and the classifier head are freshly initialised), then the steps are applied.

    Missing or corrupt weights, a parent that is not found, or steps that do not replay give
    ``(None, {"weights": why})``: the trial trains from scratch with the note as a tag
    (``nasw.note.weights``).
    """
    if not job.parent_trial:
        return None, {}
    try:
        steps = steps_from_json(job.morphisms)
        parent = store.trial(job.parent_trial)
        here = store.trial(job.trial_id).task
    except (InvalidGenotype, NotFound) as exc:
        return None, {NOTE_WEIGHTS: f"cannot inherit from {job.parent_trial}: {exc}{SCRATCH}"}
    state = default_inherit(store, job, genotype)[0]
    if state is None:
        return None, {NOTE_WEIGHTS: f"parent {job.parent_trial} weights missing or unreadable{SCRATCH}"}
    other_task = parent.task != here
    if not steps and not other_task:
        return state, {NOTE_INHERITED: f"weights of trial {job.parent_trial}"}
    traits = traits_of(evaluator)
    if not traits.trained:
        return None, {NOTE_WEIGHTS: f"the evaluator has no input shape to replay morphisms on{SCRATCH}"}
    from workbench.morph.base import MorphismError
    from workbench.morph.lineage import inherit_state

    try:
        parent_g = Genotype.from_json(parent.genotype_json)
        child_state, notes = inherit_state(
            parent_g,
            state,
            steps,
            genotype,
            traits.input_shape,
            traits.n_classes,
            other_task=other_task,
            seed=job.seed,
        )
    except (MorphismError, InvalidGenotype, RuntimeError, ValueError, TypeError, KeyError) as exc:
        return None, {
            NOTE_WEIGHTS: f"cannot inherit from {job.parent_trial}: {str(exc).splitlines()[0][:300]}{SCRATCH}"
        }
    how = f"{len(steps)} morphism step(s)" if steps else "shape-matched tensors"
    origin = f" of task {parent.task}" if other_task else ""
    return child_state, {**notes, NOTE_INHERITED: f"trial {job.parent_trial}{origin} through {how}"}
