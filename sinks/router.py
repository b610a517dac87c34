"""Fan alerts out to sinks without ever letting a sink slow monitoring down.

Each sink gets its own bounded buffer and its own worker task. ``publish`` only
appends to buffers, so it never waits; a worker delivers its buffer in order and
retries a failing delivery with exponential backoff. When a buffer is full the
oldest record is dropped and counted, so memory stays bounded during an outage.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import random
from dataclasses import dataclass, field

from sinks.base import Sink, SinkFilter, WindowClosed, describe_error

log = logging.getLogger("driftline.sinks")


@dataclass(eq=False)
class _Route:
    sink: Sink
    filter: SinkFilter
    maxsize: int
    buffer: collections.deque = field(default_factory=collections.deque)  # (seq, record)
    wake: asyncio.Event = field(default_factory=asyncio.Event)   # buffer non-empty
    idle: asyncio.Event = field(default_factory=asyncio.Event)   # buffer empty
    task: asyncio.Task | None = None
    next_seq: int = 0
    in_flight: int | None = None       # seq of the record being delivered
    in_flight_evicted: bool = False    # pushed out of the buffer during its attempt
    delivered: int = 0
    failed_attempts: int = 0
    dropped: int = 0
    last_error: str | None = None

    def __post_init__(self) -> None:
        self.idle.set()


class SinkRouter:
    """Route records to sinks by filter, through one bounded buffer and worker per sink.

    Delivery policy: **retry until delivered or pushed out.** A failed delivery stays
    at the head of its sink's buffer and is retried forever with exponential backoff
    (``backoff_base * 2**n`` seconds, capped at ``backoff_cap``, with jitter), so
    records reach a sink in publish order and none is lost while the buffer has room.
    A record is given up only when ``maxsize`` newer records arrive behind it (it is
    then dropped as the oldest and counted in ``dropped``) or when ``stop`` ends the
    worker with records still pending. Delivery is at-least-once: a record whose
    attempt failed (or outlived ``attempt_timeout``) after the far side had stored it
    will be sent again.

    ``publish`` never blocks and never raises because of a sink, so a slow, failing
    or hung sink cannot hold up monitoring or the other sinks.

    >>> import asyncio
    >>> from sinks.base import SinkFilter
    >>> class Collect:
    ...     name = "collect"
    ...     def __init__(self): self.seen = []
    ...     async def __call__(self, record): self.seen.append(record["alert_id"])
    ...     async def close(self): pass
    >>> async def demo():
    ...     sink = Collect()
    ...     router = SinkRouter([(sink, SinkFilter(min_severity="warning"))])
    ...     await router.start()
    ...     router.publish({"alert_id": "a", "severity": "info"})
    ...     router.publish({"alert_id": "b", "severity": "critical"})
    ...     await router.stop()
    ...     return sink.seen, router.stats()["collect"]["delivered"]
    >>> asyncio.run(demo())
    (['b'], 1)
    """

    def __init__(
        self,
        routes: list[tuple[Sink, SinkFilter | None]] | None = None,
        maxsize: int = 10_000,
        backoff_base: float = 0.2,
        backoff_cap: float = 30.0,
        attempt_timeout: float | None = 60.0,
    ):
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.attempt_timeout = attempt_timeout
        self._routes: dict[str, _Route] = {}
        self._started = False
        self._stopped = False
        for sink, sink_filter in routes or ():
            self.add(sink, sink_filter)

    # -- configuration -------------------------------------------------------

    def add(self, sink: Sink, sink_filter: SinkFilter | None = None, maxsize: int | None = None) -> None:
        """Add a sink (names must be unique: stats are keyed by name)."""
        if sink.name in self._routes:
            raise ValueError(f"two sinks named {sink.name!r}; give one a different name")
        route = _Route(sink, sink_filter or SinkFilter(), maxsize or self.maxsize)
        self._routes[sink.name] = route
        if self._started and not self._stopped:
            self._spawn(route)

    @property
    def sinks(self) -> list[Sink]:
        return [route.sink for route in self._routes.values()]

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Start one worker task per sink on the running loop (idempotent)."""
        if self._stopped:
            raise RuntimeError("a stopped SinkRouter cannot be restarted; build a new one")
        if self._started:
            return
        self._started = True
        for route in self._routes.values():
            self._spawn(route)

    def _spawn(self, route: _Route) -> None:
        route.task = asyncio.get_running_loop().create_task(
            self._worker(route), name=f"driftline-sink-{route.sink.name}")

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every buffer is empty; ``False`` if ``timeout`` came first."""
        waits = [route.idle.wait() for route in self._routes.values() if not route.idle.is_set()]
        if not waits:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def stop(self, flush_timeout: float = 5) -> None:
        """Flush for up to ``flush_timeout`` s, then cancel workers and close sinks.

        Records still pending afterwards are abandoned (they remain in ``stats()``
        as ``pending``); ``publish`` after ``stop`` counts records as dropped.
        """
        if self._stopped:
            return
        if self._started:
            await self.flush(flush_timeout)
        self._stopped = True
        tasks = [route.task for route in self._routes.values() if route.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for route in self._routes.values():
            try:
                await asyncio.wait_for(route.sink.close(), 5)
            except Exception as exc:  # one sink's close must not stop the others closing
                log.warning("closing sink %s failed: %s", route.sink.name, describe_error(exc))

    async def __aenter__(self) -> "SinkRouter":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # -- the hot path --------------------------------------------------------

    def publish(self, record: dict) -> int:
        """Queue ``record`` for every sink whose filter matches; never blocks.

        Returns how many sinks it was queued for. A full buffer drops its oldest
        record to make room.
        """
        queued = 0
        for route in self._routes.values():
            if route.filter.matches(record):
                queued += self._enqueue(route, record)
        return queued

    def publish_window(self, summary: dict) -> int:
        """Queue a closed window's summary (the window history's entry) for the sinks that take
        windows (``takes_windows = True``, e.g. the MLflow sink); alert filters do not apply.
        Never blocks; returns how many sinks it was queued for."""
        queued = 0
        for route in self._routes.values():
            if not getattr(route.sink, "takes_windows", False):
                continue
            queued += self._enqueue(route, WindowClosed(summary))
        return queued

    def _enqueue(self, route: _Route, item) -> int:
        if self._stopped:
            route.dropped += 1
            return 0
        if len(route.buffer) >= route.maxsize:
            self._drop_oldest(route)
        route.buffer.append((route.next_seq, item))
        route.next_seq += 1
        route.idle.clear()
        route.wake.set()
        return 1

    def _drop_oldest(self, route: _Route) -> None:
        seq, _ = route.buffer.popleft()
        if seq == route.in_flight:
            # Its attempt is still running: count it once we know whether it got through.
            route.in_flight_evicted = True
        else:
            route.dropped += 1
            if route.dropped == 1 or route.dropped % 1000 == 0:
                log.warning("sink %s buffer full (%d): dropping oldest records, %d so far",
                            route.sink.name, route.maxsize, route.dropped)

    def stats(self) -> dict[str, dict]:
        """Per sink: delivered, failed_attempts, dropped, pending, last_error."""
        return {
            name: {
                "delivered": route.delivered,
                "failed_attempts": route.failed_attempts,
                "dropped": route.dropped,
                "pending": len(route.buffer),
                "last_error": route.last_error,
            }
            for name, route in self._routes.items()
        }

    # -- workers -------------------------------------------------------------

    def _backoff(self, failures: int) -> float:
        delay = min(self.backoff_cap, self.backoff_base * 2 ** min(failures - 1, 30))
        return delay / 2 + random.uniform(0, delay / 2)  # "equal jitter": never 0, never above the cap

    async def _worker(self, route: _Route) -> None:
        sink = route.sink
        failures = 0  # consecutive, across records: it measures the sink's health
        while not self._stopped:
            if not route.buffer:
                route.idle.set()
                route.wake.clear()
                await route.wake.wait()
                continue
            seq, record = route.buffer[0]
            route.in_flight, route.in_flight_evicted = seq, False
            try:
                # A safety net: sinks set their own, shorter timeouts. A hung attempt
                # otherwise stalls only this sink's worker, never publish or other sinks.
                # asyncio.timeout, not wait_for: in 3.11 wait_for raises the attempt's own error
                # when the worker is cancelled in the loop step the attempt fails in, and the
                # cancellation is lost.
                async with asyncio.timeout(self.attempt_timeout):
                    await sink(record)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopped:
                    # stop() cancelled an attempt whose client turned the cancellation into an
                    # error: the record stays pending; no retry after stop.
                    route.in_flight = None
                    return
                route.failed_attempts += 1
                route.last_error = describe_error(exc)
                if route.in_flight_evicted:
                    route.dropped += 1
                failures += 1
                if failures == 1:
                    log.warning("sink %s failed, retrying with backoff: %s", sink.name, route.last_error)
                else:
                    log.debug("sink %s failed again (%d): %s", sink.name, failures, route.last_error)
                route.in_flight = None
                await asyncio.sleep(self._backoff(failures))
                continue
            route.in_flight = None
            route.delivered += 1
            if not route.in_flight_evicted:
                route.buffer.popleft()
            if failures:
                log.info("sink %s recovered after %d failed attempts", sink.name, failures)
                failures = 0
