"""Dead letters in the worker log, rate-limited, so bad input is seen without flooding the log.

A producer sending a broken payload sends thousands of them: the first few each
interval are logged with their reason and position, the rest are counted and
summed up in one line with the first dead letter after the interval.

>>> import logging
>>> lines = []
>>> class Capture(logging.Handler):
...     def emit(self, record): lines.append(record.getMessage())
>>> logger = logging.getLogger("doctest-deadletters"); logger.addHandler(Capture()); logger.propagate = False
>>> clock = iter([0.0, 0.1, 0.2, 61.0]).__next__
>>> dl = DeadLetterLog(logger, per_interval=2, interval=60.0, clock=clock)
>>> for offset in range(3):
...     dl.record("invalid JSON", "driftline.predictions", 0, offset, None)
>>> dl.record("empty message", "driftline.predictions", 0, 9, None)
>>> lines
['dead letter from driftline.predictions[0]@0: invalid JSON', 'dead letter from driftline.predictions[0]@1: invalid JSON', '1 more dead letters in the last 60 s (not logged; see the dead-letter topic)', 'dead letter from driftline.predictions[0]@9: empty message']
"""
from __future__ import annotations

import logging
import time


class DeadLetterLog:
    """Log at most ``per_interval`` dead letters per ``interval`` seconds, then a count of the rest."""

    def __init__(self, logger: logging.Logger, per_interval: int = 10, interval: float = 60.0,
                 clock=time.monotonic):
        self.logger = logger
        self.per_interval = per_interval
        self.interval = interval
        self.clock = clock
        self._started = None
        self._logged = 0
        self._suppressed = 0

    def record(self, reason: str, topic: str, partition: int, offset: int, index: int | None) -> None:
        now = self.clock()
        if self._started is None or now - self._started >= self.interval:
            if self._suppressed:
                self.logger.warning("%d more dead letters in the last %.0f s (not logged; see the dead-letter "
                                    "topic)", self._suppressed, self.interval)
            self._started, self._logged, self._suppressed = now, 0, 0
        if self._logged < self.per_interval:
            self._logged += 1
            where = f"{topic}[{partition}]@{offset}" + (f" item {index}" if index is not None else "")
            self.logger.warning("dead letter from %s: %s", where, reason[:300])
        else:
            self._suppressed += 1
