"""Weight inheritance in the search loop: morphed children fine-tune, bad weights never crash."""

from __future__ import annotations

from collections.abc import Sequence

import helpers
import pytest
import torch

from metastore import open_store
from workbench.evaluate.factory import evaluator_for, space_for
from workbench.execute.inherit import inherit_weights
from workbench.execute.trial import TrialJob
from workbench.lineage import ancestors, children, resolve_trial
from workbench.search import Search, new_search
from workbench.space.edits import MorphismStep, steps_from_json
from workbench.space.genotype import Genotype
from workbench.space.morphs import apply_steps
from workbench.strategy.base import Proposal, Strategy

torch.set_num_threads(1)


def tiny_task(name: str = "tiny-digits", split_seed: int = 0, epochs: int = 3, widths=(8, 16)) -> object:
    return helpers.tiny_task(
        name,
        "digits, a tiny chain space (tests)",
        kind=None,
        split={"seed": split_seed},
        space={"max_layers": 4, "kernels": [3, 5], "widths": list(widths)},
        training={"epochs": epochs, "finetune_epochs": 1},
    )


ROOT = {
    "space": "chain-v1",
    "spec": {
        "layers": [
            {"op": "conv", "kernel": 3, "width": 8, "act": "relu"},
            {"op": "maxpool"},
        ]
    },
}
STEPS = (
    MorphismStep.make("widen", (0,), width=16),
    MorphismStep.make("deepen", (2,), layer="conv", width=16, kernel=3),
)


class Scripted(Strategy):
    """Proposes the root, then children of the first trial through ``steps`` (or as given)."""

    name = "scripted"

    def __init__(self, space, seed: int = 0, plan: Sequence = (), root_parent: str | None = None) -> None:
        super().__init__(space, seed)
        self.plan = list(plan)
        self.root_parent = root_parent

    def ask(self, n: int = 1, *, pending=()):
        i = len(self.history) + len(pending)
        root = Genotype.from_json(__import__("json").dumps(ROOT))
        if i == 0:
            return [Proposal(root, parent_trial=self.root_parent)]
        parent, steps = self.plan[(i - 1) % len(self.plan)]
        pid = parent if isinstance(parent, str) else self.history[parent].trial_id
        return [Proposal(apply_steps(root, steps), parent_trial=pid, morphisms=tuple(steps))]


def run(store, task, plan, budget, root_parent=None):
    space = space_for(task)
    ev = evaluator_for(task, device="cpu")
    search = Search(store, task, Scripted(space, plan=plan, root_parent=root_parent), ev, space, budget, seed=0)
    search.start()
    search.run()
    return search, store.trials(search.search_id)


def test_morphed_child_inherits_and_fine_tunes_with_lineage_recorded():
    store = open_store("memory://")
    task = tiny_task()
    search, (root, child) = run(store, task, [(0, STEPS)], 2)
    assert root.state == child.state == "finished"
    assert child.parent_trial == root.trial_id
    assert steps_from_json(child.tags["nasw.morphisms"]) == STEPS
    assert "2 morphism step(s)" in child.tags["nasw.note.inherited"]
    assert "nasw.note.weights" not in child.tags
    assert root.metrics["epochs"] == 3 and child.metrics["epochs"] == 1  # finetune_epochs
    # the inherited start computes the parent's function
    ev = search.evaluator
    job = TrialJob(
        search.search_id,
        child.trial_id,
        1,
        child.genotype_json,
        0,
        "val_accuracy",
        root.trial_id,
        child.tags["nasw.morphisms"],
    )
    state, notes = inherit_weights(store, job, Genotype.from_json(child.genotype_json), ev)
    parent_net = ev.build(Genotype.from_json(root.genotype_json), 0)
    parent_net.load_state_dict(store.load_weights(root.trial_id))
    child_net = ev.build(Genotype.from_json(child.genotype_json), 1)
    child_net.load_state_dict(state)
    x = torch.from_numpy(ev.splits.x_val[:64])
    with torch.no_grad():
        assert float((parent_net.eval()(x) - child_net.eval()(x)).abs().max()) < 1e-5
    # lineage helpers
    line = ancestors(store, child.trial_id)
    assert [g.trial.trial_id for g in line] == [root.trial_id, child.trial_id]
    assert line[1].steps == STEPS and line[0].steps == ()
    assert [c.trial_id for c in children(store, root)] == [child.trial_id]
    assert resolve_trial(store, child.trial_id[:10]) == child.trial_id


@pytest.mark.parametrize("damage", ["missing", "corrupt", "wrong"])
def test_missing_or_corrupt_parent_weights_train_from_scratch_with_a_note(damage):
    store = open_store("memory://")
    task = tiny_task()
    space = space_for(task)
    ev = evaluator_for(task, device="cpu")
    search = Search(store, task, Scripted(space, plan=[(0, STEPS)]), ev, space, 1, seed=0)
    search.start()
    search.run()
    (root,) = store.trials(search.search_id)
    if damage == "missing":
        store._state.artifacts[root.trial_id].clear()
    elif damage == "corrupt":
        from metastore.memory import _weights_key

        assert _weights_key() in store._state.artifacts[root.trial_id]
        store._state.artifacts[root.trial_id][_weights_key()] = b"\x80\x04 not a torch file"
    else:
        store.save_weights(root.trial_id, {"features.0.0.weight": torch.zeros(3)})
    search.budget = 2
    search.run()
    child = store.trials(search.search_id)[1]
    assert child.state == "finished", child.reason
    assert "trained from scratch" in child.tags["nasw.note.weights"]
    assert child.metrics["epochs"] == 3  # the full budget, not the fine-tuning one
    assert child.parent_trial == root.trial_id


def test_unknown_parent_and_bad_steps_never_crash():
    store = open_store("memory://")
    task = tiny_task()
    bad_step = (MorphismStep.make("skip", (0, 1)),)
    _, trials = run(store, task, [("no-such-trial", STEPS), (0, STEPS)], 3)
    assert "trained from scratch" in trials[1].tags["nasw.note.weights"]
    # a proposal whose steps do not lead to its genotype
    job = TrialJob(
        "s",
        trials[2].trial_id,
        2,
        trials[2].genotype_json,
        0,
        "val_accuracy",
        trials[0].trial_id,
        '[{"op": "skip", "site": [0, 1], "params": {}}]',
    )
    state, notes = inherit_weights(store, job, Genotype.from_json(trials[2].genotype_json), None)
    assert state is None and "trained from scratch" in notes["weights"]
    assert bad_step


def test_weights_from_another_task_keep_fitting_tensors():
    store = open_store("memory://")
    source_task = tiny_task("tiny-digits-a", split_seed=1)
    _, (src,) = run(store, source_task, [(0, STEPS)], 1)
    target = tiny_task("tiny-digits-b", split_seed=2)
    _, (child, child2) = run(store, target, [(src.trial_id, STEPS)], 2, root_parent=src.trial_id)
    for t in (child, child2):
        assert t.state == "finished" and t.parent_trial == src.trial_id
        assert "another task" in t.tags["nasw.note.transfer"] and "fresh: classifier" in t.tags["nasw.note.transfer"]
        assert "of task tiny-digits-a" in t.tags["nasw.note.inherited"]
        assert t.metrics["epochs"] == 1
    assert "shape-matched" in child.tags["nasw.note.inherited"] and "2 morphism" in child2.tags["nasw.note.inherited"]


def test_hillclimb_search_end_to_end_inherits():
    store = open_store("memory://")
    task = tiny_task(epochs=2)
    search = new_search(store, task, "hillclimb", budget=4, seed=0, strategy_options={"initial": 1})
    assert search.strategy.input_shape == (1, 8, 8)
    assert store.search(search.search_id).spec["strategy_options"]["input_shape"] == [1, 8, 8]
    from workbench.nn.cost import multiply_adds

    g = Genotype.from_json(__import__("json").dumps(ROOT))  # the loop prices children in multiply-adds
    assert search.strategy._cost(g) == multiply_adds(g, (1, 8, 8), 10) > 0
    search.run()
    trials = store.trials(search.search_id)
    assert all(t.state == "finished" for t in trials)
    kids = [t for t in trials if t.parent_trial]
    assert len(kids) >= 2
    for t in kids:
        assert "nasw.morphisms" in t.tags and "nasw.note.inherited" in t.tags, t.tags
        assert t.metrics["epochs"] == 1  # a third of 2 epochs, at least 1
    # start a hill climb on another task from a trial of this one
    other = tiny_task("tiny-digits-other", split_seed=3, epochs=2)
    best = max(trials, key=lambda t: t.metrics["val_accuracy"])
    s2 = new_search(store, other, "hillclimb", budget=1, seed=0, strategy_options={"start_trial": best.trial_id[:12]})
    s2.run()
    (first,) = store.trials(s2.search_id)
    assert first.parent_trial == best.trial_id and first.genotype_json == best.genotype_json
    assert "another task" in first.tags["nasw.note.transfer"]
    assert s2.strategy.initial == 1  # a climb from a named start has no random trials


def test_a_hillclimb_search_spends_half_its_budget_on_random_starts_and_records_it():
    store = open_store("memory://")
    task = tiny_task(epochs=1)
    search = new_search(store, task, "hillclimb", budget=12, seed=0)
    assert search.strategy.initial == 6
    assert store.search(search.search_id).spec["strategy_options"]["initial"] == 6  # resume replays it
    assert new_search(store, task, "hillclimb", budget=6, seed=0).strategy.initial == 5  # at least 5
    assert (
        new_search(store, task, "hillclimb", budget=12, seed=0, strategy_options={"initial": 2}).strategy.initial == 2
    )  # the user's choice wins
