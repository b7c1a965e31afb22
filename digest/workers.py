"""Worker processes for CPU-bound stages (parsing a large collect run): a process pool whose
workers end with the process that started them, however it ends, SIGKILL included.

Each worker holds the reading end of a pipe whose only writing end stays in the starting
process; a thread in the worker exits it once that end closes, which the kernel does when
the starter dies. Linux's parent-death signal would not do: a worker's parent is the
forkserver, which lives as long as any worker holds its own "alive" pipe, and the resource
tracker lives as long as both. So, with the workers gone, those two end as well.

Light on purpose: the forkserver preloads it, and each worker imports it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing.connection import Connection


@contextmanager
def process_pool(workers: int, *, preload: Sequence[str] = ()) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` processes, each started from a forkserver that has imported
    ``preload``; on leaving, queued work is cancelled and the workers are waited for."""
    # forkserver, not fork: the daemon has threads (and maybe torch) by now.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, *preload])
    lifeline, held = context.Pipe(duplex=False)
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_end_with_starter,
        initargs=(lifeline,),
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        lifeline.close()
        held.close()


def _end_with_starter(lifeline: Connection) -> None:
    """In each worker: watch the lifeline from a thread of its own."""
    watch = threading.Thread(target=_exit_when_cut, args=(lifeline,), daemon=True)
    watch.start()


def _exit_when_cut(lifeline: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()  # nothing is ever sent: this returns at end of file only
    # At once, not by raising: the main thread may be mid-parse or holding the queue's lock,
    # and what it was doing has no one left to take it.
    os._exit(1)
