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
