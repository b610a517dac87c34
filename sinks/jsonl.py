"""Alerts appended to a JSON-lines file, one record per line."""
from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from sinks.base import to_json


class JsonlSink:
    """Append each record as one JSON line and flush it.

    File I/O runs in a worker thread (``asyncio.to_thread``) so a slow disk never
    stalls the event loop; a lock keeps lines whole if the sink is called
    concurrently. The file is opened on first use and reopened after ``close``.
    """

    def __init__(self, path: str | os.PathLike, name: str = "jsonl"):
        self.path = Path(path)
        self.name = name
        self._file = None
        self._lock = threading.Lock()

    def _append(self, line: bytes) -> None:
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "ab")
            self._file.write(line)
            self._file.flush()

    def _close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    async def __call__(self, record: dict) -> None:
        await asyncio.to_thread(self._append, to_json(record) + b"\n")

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def __repr__(self) -> str:
        return f"JsonlSink(path={str(self.path)!r}, name={self.name!r})"
