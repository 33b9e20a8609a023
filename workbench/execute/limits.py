"""Wall-clock limits of one trial, and what they do and do not cover.

A trial's limit is the task's ``[training] max_seconds``. Three layers enforce it:

1. The trainer (:meth:`workbench.evaluate.trainer.TrainedEvaluator.train`) checks the deadline
   after every batch and every epoch and raises :class:`~workbench.errors.TrialFailed`
   (``timed out: ...``). This catches slow trials, however long an epoch is.
2. :func:`time_limit`, armed by :func:`workbench.execute.trial.execute_trial` around the whole
   evaluation with a grace period (:func:`hard_limit_for`), raises ``TrialFailed`` from a
   ``SIGALRM`` handler wherever the trial is stuck in Python code: a forward pass or a user's
   data-loading code that loops for ever inside one batch, a blocking ``sleep``, socket or pipe
   read (signals interrupt those). The trial ends failed with the reason; the search goes on.
3. Heartbeats: a trial whose process dies or stays stuck stops writing ``nasw.heartbeat``;
   ``nasw resume`` fails it once the beat is older than ten minutes (or at once with ``--force``).

Not covered by 1 and 2: code stuck inside a single C/CUDA call that never returns to Python
(a deadlocked collective, a hung kernel, an uninterruptible NFS read), and trials that run
outside the main thread of their process (there the watchdog is not armed: only the trainer's
checks apply). Such a trial hangs its worker until it is killed; layer 3 then fails it on resume.
On platforms without ``signal.setitimer`` (Windows) only layers 1 and 3 apply.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from workbench.errors import TrialFailed
from workbench.evaluate.base import training_config

#: Extra time the watchdog allows past ``max_seconds``: the trainer's own check (with its more
#: precise message) normally fires first.
GRACE_FRACTION = 0.5
GRACE_MIN_SECONDS = 10.0
#: Limits at or beyond this (about 30 years) are no limit.
MAX_SECONDS = 1e9


def hard_limit_for(evaluator: Any, genotype: Any) -> float | None:
    """The watchdog limit (seconds) of evaluating ``genotype``, or None when there is none.

    It is ``max_seconds`` of the evaluator's trainer settings for this genotype (joint
    genotypes may carry their own settings) plus a grace period of half of it, at least
    :data:`GRACE_MIN_SECONDS`.
    """
    cfg = training_config(evaluator, genotype)
    seconds = getattr(cfg, "max_seconds", None)
    if seconds is None:
        return None
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return None
    if not 0 < seconds < MAX_SECONDS:
        return None
    return seconds + max(GRACE_MIN_SECONDS, GRACE_FRACTION * seconds)


def watchdog_available() -> bool:
    """True when :func:`time_limit` can arm a timer here (POSIX, main thread)."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def time_limit(seconds: float | None, what: str = "the trial") -> Iterator[None]:
    """Raise :class:`TrialFailed` in this thread if the block runs longer than ``seconds``.

    A no-op when ``seconds`` is None, outside the main thread, without ``signal.setitimer``, or
    when another real-time timer is already armed (it is left alone, never delayed).

    Args:
        seconds: The limit; None for none.
        what: What is limited, for the failure reason.

    Raises:
        TrialFailed: ``timed out: ...`` when the limit passes while Python code runs in the block.
    """
    if seconds is None or not 0 < seconds < MAX_SECONDS or not watchdog_available():
        yield
        return
    current = signal.getitimer(signal.ITIMER_REAL)
    if current[0] > 0:  # someone else's timer (a test runner's, an outer limit): do not disturb it
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise TrialFailed(
            f"timed out: {what} was still running after the hard limit of {seconds:g} s "
            f"([training] max_seconds plus grace; stuck inside an epoch or in data loading)"
        )

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
