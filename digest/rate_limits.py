"""Rate limits: ``[delivery].max_per_minute`` and ``max_per_hour``.

Counted from the delivery ledger itself (the messages sent, or claimed and in flight, in the
last minute or hour, of any edition, run and sender), so no second counter can drift from
what was sent. Within the minute limit a sender waits for its turn; the hour limit ends the
run, and the rest wait for the time the window frees up. Several senders share the limits:
each message's slot is taken in the same commit that claims its row (``Pacer.limited_at``
inside the claim's ``store.atomic()``), so no two of them take the last one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from digest.settings_models import DeliverySettings
from digest.store import Store

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)

# Sleeps this many seconds, or less if the stop event is set meanwhile.
Sleep = Callable[[float, "threading.Event | None"], None]


def real_sleep(seconds: float, stop: threading.Event | None) -> None:
    if stop is not None:
        stop.wait(seconds)
    else:
        time.sleep(seconds)


def free_at(sent: Sequence[datetime], limit: int | None, window: timedelta) -> datetime | None:
    """When a window that saw these sends (oldest first) allows one more; None: now."""
    if limit is None or len(sent) < limit:
        return None
    return sent[len(sent) - limit] + window


class RateLimited(Exception):
    """A limit's window is full until ``until``: the message cannot be claimed now."""

    def __init__(self, until: datetime, *, is_hourly: bool) -> None:
        super().__init__(f"rate limit reached until {until.isoformat()}")
        self.until, self.is_hourly = until, is_hourly


class Pacer:
    """Keeps one run's sending within the limits, asking the ledger before each message."""

    def __init__(
        self,
        store: Store,
        options: DeliverySettings,
        clock: Callable[[], datetime],
        sleep: Sleep,
        stop: threading.Event | None = None,
    ) -> None:
        self._store, self._clock, self._sleep, self._stop = store, clock, sleep, stop
        self._per_minute, self._per_hour = options.max_per_minute, options.max_per_hour

    def next_turn(self) -> datetime | None:
        """Wait until the minute window allows the next message; None when it may go, or
        the time the hour window frees up if the hour's limit is reached (send no more)."""
        while True:
            now = self._clock()
            if (hour_free := self._free_at(self._per_hour, HOUR, now)) is not None:
                return hour_free
            minute_free = self._free_at(self._per_minute, MINUTE, now)
            if minute_free is None or (self._stop is not None and self._stop.is_set()):
                return None
            self._sleep((minute_free - now).total_seconds(), self._stop)

    def limited_at(self, now: datetime) -> RateLimited | None:
        """Which limit is full at ``now`` and until when; None if one more message may go.
        Read inside the claim's transaction, this is the slot the claim takes."""
        if (hour_free := self._free_at(self._per_hour, HOUR, now)) is not None:
            return RateLimited(hour_free, is_hourly=True)
        if (minute_free := self._free_at(self._per_minute, MINUTE, now)) is not None:
            return RateLimited(minute_free, is_hourly=False)
        return None

    def _free_at(self, limit: int | None, window: timedelta, now: datetime) -> datetime | None:
        if limit is None:
            return None  # unlimited: the ledger is not even asked
        return free_at(self._store.sent_since(now - window), limit, window)
