"""Fixtures of the fault-injection suite: tiny tasks, searches that watch their finished trials."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import helpers
import pytest

TINY_TASK: dict[str, Any] = helpers.tiny_doc("tiny-faults", "digits, 1 epoch, tiny chain nets (fault tests)")
TINY_TOML = helpers.task_toml(TINY_TASK)


def tiny_task(**training: Any):
    """The tiny trained task, with ``[training]`` settings overridden."""
    return helpers.tiny_task(TINY_TASK["name"], TINY_TASK["description"], training=training)


@dataclass
class Watch:
    """Progress callbacks that remember every trial as it was when it finished, and the number
    of the trial being run (the in-process executor runs one at a time)."""

    store: Any = None
    current: int = -1
    finished: dict[str, Any] = field(default_factory=dict)
    search_id: str | None = None

    def search_started(self, search_id: str, budget: int, done: int) -> None:
        self.search_id = search_id

    def trial_started(self, number: int, genotype) -> None:
        self.current = number

    def epoch(self, number: int, epoch: int, metrics) -> None:
        pass

    def trial_finished(self, number: int, obs, best) -> None:
        for rec in self.store.trials(self.search_id):
            if rec.state in ("finished", "failed") and rec.trial_id not in self.finished:
                self.finished[rec.trial_id] = rec

    def assert_intact(self) -> None:
        """Every trial recorded as ended is still there, unchanged (state, metrics, tags, ...)."""
        assert self.finished, "no trial ended"
        for trial_id, before in self.finished.items():
            assert self.store.trial(trial_id) == before


@pytest.fixture
def memory_uri() -> str:
    """A fresh named in-process memory store (shared by every open in this process)."""
    return f"memory://reliability-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def run_search() -> Callable[..., tuple[Any, Any, Watch]]:
    """``run_search(store, task, budget, strategy="random", seed=0)``: run a search in process;
    return ``(search, result, watch)``."""

    def go(store, task, budget: int, strategy: str = "random", seed: int = 0, **options: Any):
        from workbench.search import new_search

        watch = Watch(store=store)
        search = new_search(store, task, strategy, budget, seed, strategy_options=options, progress=watch)
        result = search.run()
        return search, result, watch

    return go


@pytest.fixture
def trial_hook(monkeypatch) -> Callable[..., None]:
    """``trial_hook(watch_getter, numbers, wrap)``: wrap the network built for the given trial
    numbers (``wrap(model, attempt) -> model``; attempt counts builds of that trial)."""
    from workbench.evaluate import trainer

    def install(get_watch: Callable[[], Watch], numbers: set[int], wrap: Callable[[Any, int], Any]) -> None:
        original = trainer.TrainedEvaluator.build
        attempts: dict[int, int] = {}

        def build(self, genotype, seed, *args, **kwargs):
            model = original(self, genotype, seed, *args, **kwargs)
            number = get_watch().current
            if number in numbers:
                attempts[number] = attempts.get(number, 0) + 1
                model = wrap(model, attempts[number])
            return model

        monkeypatch.setattr(trainer.TrainedEvaluator, "build", build)

    return install
