"""Stop requests: what a command does when SIGINT or SIGTERM arrives while it works.

A ``StopRequest`` is the ``threading.Event`` the delivery loop and the send lock already
check. Set by a signal handler (``request``), it also knows which signal it was, and where
the work can be abandoned at once: inside ``abandonable(stop)`` (collecting, building an
edition: every step there is its own transaction, so nothing half-done is kept) the request
raises ``Interrupted`` in the main thread, which unwinds the work; elsewhere (delivering) it
only sets the event, and the loop finishes the message in flight first.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Interrupted(BaseException):  # named like KeyboardInterrupt, which it stands for
    """A stop request ended abandonable work. A BaseException, so that no per-feed or
    per-recipient ``except Exception`` boundary can swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopRequest(threading.Event):
    """Set once a stop was asked for; ``signum`` says by which signal."""

    def __init__(self) -> None:
        super().__init__()
        self.signum: int | None = None
        self.note = "stopping"  # what the work in hand does about a stop, for the user
        self._abandonable = 0
        self._swallowed = False

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by this signal: 128 + its number."""
        return 128 + (self.signum or signal.SIGINT)

    def request(self, signum: int) -> None:
        """Ask the work to stop; inside abandonable work (main thread), stop it now."""
        self.signum = signum
        self.set()
        if self._abandonable and threading.current_thread() is threading.main_thread():
            raise Interrupted(signum)

    def take_swallowed(self) -> bool:
        """Whether this signal only re-delivers a stop that a finaliser swallowed (see
        ``redelivering``), rather than being a second request."""
        swallowed, self._swallowed = self._swallowed, False
        return swallowed


@contextmanager
def redelivering(stop: StopRequest) -> Iterator[None]:
    """Re-deliver an ``Interrupted`` that landed in a ``__del__`` or another finaliser.

    Python cannot raise out of a finaliser: it prints "Exception ignored in ..." with a
    traceback and carries on, so the work would go on as if no stop had come. Instead, the
    stop is signalled to the main thread again, to be raised where it can unwind the work
    (and again, should it land in a finaliser once more).
    """
    previous = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, Interrupted):
            stop._swallowed = True
            # From another thread, a moment later: signalled from here, the handler would run
            # inside this hook, still in the finaliser, and be swallowed again.
            again = signal.Signals(unraisable.exc_value.signum)
            threading.Timer(0.01, _thread.interrupt_main, args=(again,)).start()
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


@contextmanager
def abandonable(stop: threading.Event | None) -> Iterator[None]:
    """Work that a stop request may end at once (by raising ``Interrupted``); one already
    made raises on entry. A plain Event (the daemon's worker thread) only gets checked."""
    if not isinstance(stop, StopRequest) or threading.current_thread() is not (
        threading.main_thread()
    ):
        yield
        return
    if stop.is_set():
        raise Interrupted(stop.signum or signal.SIGINT)
    stop._abandonable += 1
    note, stop.note = stop.note, "stopping now; nothing half-done is kept"
    try:
        yield
    finally:
        stop._abandonable -= 1
        stop.note = note


@contextmanager
def noting(stop: threading.Event | None, note: str) -> Iterator[None]:
    """While in this block, a stop request is acknowledged with ``note`` (what happens next)."""
    if not isinstance(stop, StopRequest):
        yield
        return
    previous, stop.note = stop.note, note
    try:
        yield
    finally:
        stop.note = previous
