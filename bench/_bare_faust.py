"""A bare Faust agent: decode each message with orjson and count the events. Nothing else.

Same broker settings as ``streams.app`` (raw serializers, fetch size, session
timeouts), consuming ``$BENCH_TOPICS`` (comma-separated). Counters go to
``$BENCH_PROBE`` like ``bench._worker``.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import tempfile

import faust
import orjson

topics = os.environ["BENCH_TOPICS"].split(",")
probe_path = os.environ["BENCH_PROBE"]

app = faust.App(
    os.environ.get("DRIFTLINE_APP_ID", "bench-bare") + "-bare",
    broker=os.environ["DRIFTLINE_BROKER"],
    store="memory://",
    key_serializer="raw",
    value_serializer="raw",
    autodiscover=False,
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.0,
    broker_request_timeout=30.0,
    consumer_max_fetch_size=8 * 1024 * 1024,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    datadir=tempfile.mkdtemp(prefix="bench-bare-"),   # not <id>-data in the repository
)
source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
counts = {"events": 0, "messages": 0}


@app.agent(source)
async def count(stream):
    async for value in stream:
        body = orjson.loads(value)
        counts["events"] += len(body) if isinstance(body, list) else 1
        counts["messages"] += 1


@app.task
async def bench_probe() -> None:
    state = {"pid": os.getpid(), "first": None, "last_change": None, "counts": {}}
    seen = 0
    last_write = 0.0
    while True:
        now = time.time()
        if counts["events"] != seen:
            if state["first"] is None:
                state["first"] = now
            state["last_change"] = now
            seen = counts["events"]
        if now - last_write >= 0.1:
            state["counts"] = dict(counts)
            tmp = probe_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(state, f)
            os.replace(tmp, probe_path)
            last_write = now
        await asyncio.sleep(0.005)


if __name__ == "__main__":
    # no web server: Faust's CLI would otherwise bind 0.0.0.0:6066 whatever web_enabled says
    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()
