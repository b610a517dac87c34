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


def sent_future():
    """What a producer's ``send`` returns once the record is on its way: a finished future."""
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future
