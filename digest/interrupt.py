"""Stop requests: what a command does when SIGINT or SIGTERM arrives while it works.

A ``StopRequest`` is the ``threading.Event`` the delivery loop and the send lock already
check. Set by a signal handler (``request``), it also knows which signal it was, and where
the work can be abandoned at once: inside ``abandonable(stop)`` (collecting, building an
edition: every step there is its own transaction, so nothing half-done is kept) the request
raises ``Interrupted`` in the main thread, which unwinds the work; elsewhere (delivering) it
only sets the event, and the loop finishes the message in flight first.

Once a stop was asked for, a further SIGINT or SIGTERM ends the process at once with 128 +
its number (``exit_on_further_signals``), until the very end of the interpreter's exit.
"""

from __future__ import annotations

import _thread
import atexit
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


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


def exit_on_further_signals() -> None:
    """From now on, SIGINT or SIGTERM exits at once, 128 + its number (SQLite's journal keeps
    the store whole), however far the process has got in exiting already."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, exit_now)


def exit_now(signum: int, frame: FrameType | None) -> None:
    """A signal handler: exit at once with 128 + the signal's number, saying so on stderr."""
    # Not through logging or click: the code this signal interrupted may hold their locks.
    os.write(2, f"{signal.Signals(signum).name} again: exiting now\n".encode())
    os._exit(128 + signum)


def _ignore_further_signals_while_finalising() -> None:
    """Once the atexit hooks have run, Python gives each signal with a handler of its own
    back its default action, which for SIGTERM is to kill: a further one while the modules
    are torn down would end the process by the signal, not with its exit code. It is ignored
    instead, as the process is ending anyway."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) is exit_now:
            signal.signal(sig, signal.SIG_IGN)


# Registered on import, before multiprocessing's and the like: so it runs after theirs,
# and a signal during those still exits at once.
atexit.register(_ignore_further_signals_while_finalising)
