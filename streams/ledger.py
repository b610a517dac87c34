"""What driftline has handled, per partition: the only source of the offsets the worker commits.

Faust acks a message in more places than the code that handles it: a message its stream
skips while flow control is suspended (around every rebalance, and at shutdown) or one
fetched under the previous consumer generation is acked without reaching an agent, and
the next commit moves past it. After a SIGTERM or a rebalance the next owner of the
partition then starts behind a message nobody handled (seen: one 50-event message lost
in ``tests/reliability/test_shutdown.py``). So the worker's consumer
(:mod:`streams.transport`) ignores Faust's acks and commits what this ledger says:

* ``start(tp, position)`` on the first message of an assignment, with the partition's
  committed position (where the previous owner stopped);
* ``handled(tp, offset)`` once a message's effects are safe: its state is in a checkpoint
  and its outputs sent. (Only the monitor stage reads through Faust; the ingest loop,
  :mod:`streams.ingest`, is a plain aiokafka consumer that commits what it sent itself.) A stage handles a partition's messages in offset order, and :class:`GapFiller`
  puts back any that the consumer skipped, so handling offset ``n`` means every offset
  from the start up to ``n`` is handled;
* ``committable(tp)``: the offset to commit (the next one to read), or ``None``.

>>> ledger = CommitLedger()
>>> ledger.handled(("t", 0), 7)            # not started: a message of another assignment
>>> ledger.committable(("t", 0)) is None
True
>>> ledger.start(("t", 0), 5)
>>> ledger.committable(("t", 0)) is None    # nothing handled yet: keep the committed position
True
>>> ledger.handled(("t", 0), 5); ledger.handled(("t", 0), 6)
>>> ledger.committable(("t", 0))
7
>>> ledger.handled(("t", 0), 3)            # a re-delivery: never moves the position back
>>> ledger.committable(("t", 0))
7
>>> ledger.forget([("t", 0)])
>>> ledger.committable(("t", 0)) is None
True
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable


class CommitLedger:
    def __init__(self) -> None:
        self._start: dict[Hashable, int] = {}
        self._next: dict[Hashable, int] = {}

    def started(self, tp: Hashable) -> bool:
        return tp in self._start

    def start(self, tp: Hashable, position: int) -> None:
        """The partition was assigned; ``position`` is its committed offset (the next to read)."""
        self._start[tp] = position
        self._next.pop(tp, None)

    def handled(self, tp: Hashable, offset: int) -> None:
        if tp in self._start and offset + 1 > self._next.get(tp, self._start[tp]):
            self._next[tp] = offset + 1

    def committable(self, tp: Hashable) -> int | None:
        return self._next.get(tp)

    def forget(self, tps: Iterable[Hashable]) -> None:
        """Partitions revoked: their next owner (maybe this worker again) starts them anew."""
        for tp in tps:
            self._start.pop(tp, None)
            self._next.pop(tp, None)
