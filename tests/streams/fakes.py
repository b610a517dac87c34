"""Stand-ins shared by the stream layer's unit tests (each test exercises one real class)."""
from __future__ import annotations

import asyncio


class Dedup:
    """The Redis delivery dedup: record ids marked delivered, kept in a set."""

    def __init__(self):
        self.delivered = set()

    async def delivered_before(self, record_id):
        return record_id in self.delivered

    async def mark_delivered(self, record_id):
        self.delivered.add(record_id)


class Table(dict):
    """The state table: every write goes to the journal."""
    write_partition = None

    def __init__(self, journal):
        super().__init__()
        self.journal = journal

    def __setitem__(self, key, value):
        self.journal.append(("state", key, self.write_partition))
        super().__setitem__(key, value)


def sent_future():
    """What a producer's ``send`` returns once the record is on its way: a finished future."""
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future
