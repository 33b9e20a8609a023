"""Stopping a search from outside: ``kill PID`` (SIGTERM) and a closed terminal (SIGHUP) are
handled like Ctrl-C.

While :func:`stop_on_signals` is active (the search loop, in the main thread), SIGTERM and SIGHUP
raise :class:`Terminated`, a ``KeyboardInterrupt``: the running trial is failed with the reason
(``interrupted: the search was stopped by SIGTERM``), the search ends ``killed`` and
``nasw resume`` continues it. A signal whose handler is not the default one is left alone: an
ignored SIGHUP (``nohup``) stays ignored, someone else's handler stays theirs. Once the block
has ended (the search then records what was interrupted), the previous handlers are back: a
second signal then stops the process at once, as a second Ctrl-C would. Outside the main thread
this does nothing (Python delivers signals to the main thread only).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: The signals handled like Ctrl-C (those this platform has).
STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal (handled like Ctrl-C).

    Attributes:
        signum: The signal's number.
        name: Its name (``SIGTERM``).
        reason: What a trial it interrupted records (``interrupted: the search was stopped by
            SIGTERM``).
    """

    def __init__(self, signum: int) -> None:
        try:
            self.name = signal.Signals(signum).name
        except ValueError:
            self.name = f"signal {signum}"
        self.signum = signum
        self.reason = f"interrupted: the search was stopped by {self.name}"
        super().__init__(self.reason)


def interruption_reason(exc: BaseException) -> str:
    """What a trial stopped by ``exc`` (a ``KeyboardInterrupt``) records as its reason."""
    return getattr(exc, "reason", None) or "interrupted by the user"


@contextmanager
def stop_on_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Turn ``signals`` into :class:`Terminated` while the block runs (see the module docstring)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if fired:  # already stopping
            return
        fired.append(signum)
        raise Terminated(signum)

    previous: dict[int, Any] = {}
    for sig in signals:
        if signal.getsignal(sig) is signal.SIG_DFL:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
