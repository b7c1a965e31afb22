"""Sending: this command's senders, ``digest send --workers N``: N workers through the
edition's queue (``digest.send_queue``) at once, each with its own store connection and its
own mail backend (SMTP connection); the stop request reaches all of them.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from digest.runtime import MailerFactory, Runtime
from digest.send_queue import Halt, QueueTurn, new_sender_id, work_queue


def send_with_workers(
    runtime: Runtime,
    mailers: MailerFactory,
    turn: QueueTurn,
    *,
    workers: int = 1,
    stop: threading.Event | None = None,
) -> Halt | None:
    """Work through the edition's queue with ``workers`` senders; why they stopped early
    (the first that did), if any did."""
    if workers <= 1:
        return work_queue(runtime, mailers, turn, sender=new_sender_id(), stop=stop)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sender") as pool:
        futures = [
            pool.submit(_work_in_thread, runtime, mailers, turn, worker, stop)
            for worker in range(workers)
        ]
        halts = [future.result() for future in futures]
    return next((halt for halt in halts if halt is not None), None)


def _work_in_thread(
    runtime: Runtime,
    mailers: MailerFactory,
    turn: QueueTurn,
    worker: int,
    stop: threading.Event | None,
) -> Halt | None:
    with runtime.reopen() as own:  # a SQLite connection must not cross threads
        return work_queue(own, mailers, turn, sender=new_sender_id(worker), stop=stop)
