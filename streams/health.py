"""Liveness and readiness of a worker, served as /healthz and /readyz beside /metrics.

Live: the worker's event loop ran within `stall_s` (a loop blocked by a stuck call or a
deadlock is what a restart fixes). Ready: live, the worker has joined its consumer group
(an assignment arrived, possibly empty: a group with more workers than partitions), and its
feature store answered the last ping. Both answer JSON with the details, 200 or 503.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: seconds without an event-loop beat before a worker counts as stalled
STALL_S = 30.0
#: seconds a starting worker may take to run its loop (imports, Faust start, first join)
STARTUP_S = 120.0
#: seconds between store pings (each waits at most PING_TIMEOUT_S)
PING_EVERY_S = 5.0
PING_TIMEOUT_S = 3.0


class WorkerHealth:
    """What /healthz and /readyz report. Updated from the worker's event loop, read from the
    HTTP server's threads (under a lock)."""

    def __init__(
        self,
        roles: Sequence[str],
        uses_store: bool,
        stall_s: float = STALL_S,
        startup_s: float = STARTUP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.roles = list(roles)
        self.uses_store = uses_store
        self.stall_s = stall_s
        self.startup_s = startup_s
        self.clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._beat: float | None = None
        self._assigned: set[tuple[str, int]] | None = None  # None: not in the group yet
        self._store_error: str | None = "not pinged yet" if uses_store else None

    # --- updates (event loop) ----------------------------------------------------------------
    def beat(self) -> None:
        """The event loop ran (called every second from it)."""
        with self._lock:
            self._beat = self.clock()

    def assigned(self, partitions: set[tuple[str, int]]) -> None:
        """A rebalance gave the worker `partitions` (its whole assignment)."""
        with self._lock:
            self._assigned = set(partitions)

    def revoked(self, partitions: set[tuple[str, int]]) -> None:
        """A rebalance took `partitions` away."""
        with self._lock:
            if self._assigned is not None:
                self._assigned -= partitions

    def store_result(self, error: str | None) -> None:
        """The last store ping: None when it answered, else the error."""
        with self._lock:
            self._store_error = error

    # --- reports (HTTP threads) --------------------------------------------------------------
    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """(live, details)."""
        with self._lock:
            now = self.clock()
            if self._beat is None:
                waited = now - self._started
                live = waited <= self.startup_s
                return live, {"live": live, "roles": self.roles, "starting_for_s": round(waited, 1)}
            age = now - self._beat
            live = age <= self.stall_s
            return live, {"live": live, "roles": self.roles, "loop_beat_age_s": round(age, 3)}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, details)."""
        live, out = self.liveness()
        with self._lock:
            joined = self._assigned is not None
            out["joined_group"] = joined
            out["partitions"] = len(self._assigned or ())
            if self.uses_store:
                out["store"] = self._store_error or "ok"
            ready = live and self._beat is not None and joined and self._store_error is None
        out["ready"] = ready
        return ready, out


def watch(
    app: Any, health: WorkerHealth, ping: Callable[[], Coroutine[Any, Any, Any]] | None
) -> None:
    """Feed `health` from a Faust app: a loop beat every second, the group's assignments and
    revocations, and (with `ping`) a store ping every PING_EVERY_S."""

    @app.task
    async def health_beat() -> None:
        while True:
            health.beat()
            await asyncio.sleep(1.0)

    async def on_assigned(sender: Any, /, *args: Any, signal: Any = None, **_: Any) -> None:
        health.assigned({(tp.topic, tp.partition) for tp in args[0]})

    async def on_revoked(sender: Any, /, *args: Any, signal: Any = None, **_: Any) -> None:
        health.revoked({(tp.topic, tp.partition) for tp in args[0]})

    app.on_partitions_assigned.connect(on_assigned)
    app.on_partitions_revoked.connect(on_revoked)
    if ping is None:
        return

    @app.task
    async def health_store_ping() -> None:
        while True:
            health.store_result(await ping_once(ping))
            await asyncio.sleep(PING_EVERY_S)


async def ping_once(ping: Callable[[], Coroutine[Any, Any, Any]]) -> str | None:
    """None when the store answered within PING_TIMEOUT_S, else the error in one line."""
    try:
        await asyncio.wait_for(ping(), timeout=PING_TIMEOUT_S)
        return None
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any failure means "not answering"
        return f"{type(exc).__name__}: {exc}"[:200] if str(exc) else type(exc).__name__
