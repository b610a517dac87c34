"""The window history in a real Redis: capped, a window stored once, read back by version and period."""
from __future__ import annotations

import subprocess
import sys

import pytest

from sinks import StatusStore, write_status_sync
from sinks.history import UnknownModel, read_history_sync
from tests.integration.harness import ROOT


def window(index: int, version="1", model="fraud") -> dict:
    return {"model": model, "model_version": version, "index": index, "start": 100.0 * index,
            "end": 100.0 * index + 99, "n": 500, "features": {"amount": {"p_value": 0.5 / (index + 1)}},
            "alerts": []}


@pytest.mark.asyncio
async def test_capped_per_version_and_a_window_tested_again_is_stored_once(redis_url, redis_client):
    store = StatusStore(redis_url)
    try:
        for version in ("1", "2"):
            write_status_sync(redis_url, "fraud", version, {"counts": {}})
        for i in range(5):
            await store.append_window(window(i), maxlen=3)
        await store.append_window(window(3), maxlen=3)     # replayed after a restart
        await store.append_window(window(0, version="2"), maxlen=3)
    finally:
        await store.close()
    found = read_history_sync(redis_url, "fraud")
    assert [w["index"] for w in found["1"]] == [2, 3, 4] and [w["index"] for w in found["2"]] == [0]
    assert found["1"][0]["features"]["amount"]["p_value"] == 0.5 / 3
    assert [w["index"] for w in read_history_sync(redis_url, "fraud", "1", last=2)["1"]] == [3, 4]
    assert [w["index"] for w in read_history_sync(redis_url, "fraud", "1", since=300, until=399)["1"]] == [3]
    with pytest.raises(UnknownModel, match="no version '9'; known: 1, 2"):
        read_history_sync(redis_url, "fraud", "9")
    with pytest.raises(UnknownModel, match="not known"):
        read_history_sync(redis_url, "nope")


def cli(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", "--redis-url", redis_url, *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_cli_reports_unknown_models_and_versions_without_a_traceback(redis_url, redis_client):
    write_status_sync(redis_url, "fraud", "1", {"counts": {}})
    for args, message in ((("history", "nope"), "model 'nope' is not known"),
                          (("history", "fraud", "--version", "7"), "model 'fraud' has no version '7'; known: 1")):
        done = cli(redis_url, *args)
        assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, done
    done = cli(redis_url, "history", "fraud")
    assert done.returncode == 0 and "fraud v1: no window tested yet" in done.stdout
    unreachable = cli("redis://127.0.0.1:1/0", "history", "fraud")
    assert unreachable.returncode == 1 and "redis at redis://127.0.0.1:1/" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


@pytest.mark.asyncio
async def test_windows_written_concurrently_are_all_kept_in_order(redis_url, redis_client):
    """The worker writes each window from a background task: none may overtake another."""
    import asyncio

    write_status_sync(redis_url, "fraud", "1", {"counts": {}})
    store = StatusStore(redis_url)
    try:
        await asyncio.gather(*(store.append_window(window(i), maxlen=100) for i in range(30)))
    finally:
        await store.close()
    assert [w["index"] for w in read_history_sync(redis_url, "fraud", "1")["1"]] == list(range(30))
