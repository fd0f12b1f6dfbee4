"""SIGTERM (``kill PID``, a scheduler ending a job) handled like Ctrl-C, so long work can clean up."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`KeyboardInterrupt` (main thread only; elsewhere a no-op).

    The trainer then saves a checkpoint and the dataset writer removes its partial folder, as on Ctrl-C.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        # None: the previous handler was not set from Python; the default is the closest to it
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


class StopRequest:
    """Set by Ctrl-C or SIGTERM inside :func:`deferred_interrupts`; the loop reads it at a safe point."""

    def __init__(self) -> None:
        self.requested = False
        self.forced = False  # a second signal: the work stopped at once, wherever it was


@contextmanager
def deferred_interrupts() -> Iterator[StopRequest]:
    """Within the block, the first Ctrl-C or SIGTERM only sets ``requested`` on the yielded :class:`StopRequest`,
    so the caller can finish its step and save a consistent state; a second one raises :class:`KeyboardInterrupt`
    at once (``forced``). Main thread only; elsewhere nothing is caught."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:
            stop.forced = True
            raise KeyboardInterrupt
        stop.requested = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)
