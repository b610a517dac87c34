"""Redis keys per app id (item 7), ``status`` without labels (item 5), ``audit`` of other kinds (item 4).

Against a real redis-server (tests/conftest.py); the CLI runs in-process through click's runner.
"""
from __future__ import annotations

import asyncio

import orjson
import pytest
from click.testing import CliRunner

from sinks import RedisSink, StatusStore, read_status_sync, write_status_sync
from streams import audit, config
from streams.cli import main


def _status(predictions: int, labelled: int) -> dict:
    rolling = {"accuracy": 0.0 if not labelled else 0.91}   # the monitor reports 0.0 before any label
    return {"counts": {"predictions": predictions, "labelled": labelled, "windows": 1, "alerts": 0},
            "rolling_metrics": rolling, "join": {"expired_unlabelled": 7, "evicted_unlabelled": 0,
                                                  "expired_labels": 3, "unknown_version_labels": 0},
            "pending_labels": 42, "worker": {"deadletter": 0}}


def _cli(redis_url, app_id, *args):
    return CliRunner().invoke(main, ["--redis-url", redis_url, *args],
                              env={"DRIFTLINE_APP_ID": app_id, "DRIFTLINE_CONFIG": None})


def test_two_app_ids_sharing_one_redis_do_not_see_each_others_models(redis_client, redis_url):
    write_status_sync(redis_url, "fraud", "1", _status(10, 0), prefix="team-a")
    write_status_sync(redis_url, "churn", "1", _status(10, 0), prefix="team-b")
    assert [s["model"] for s in read_status_sync(redis_url, prefix="team-a")] == ["fraud"]
    assert [s["model"] for s in read_status_sync(redis_url, prefix="team-b")] == ["churn"]
    a = orjson.loads(_cli(redis_url, "team-a", "status", "--json").output)
    assert [s["model"] for s in a] == ["fraud"]
    assert "no models seen yet (app id team-c" in _cli(redis_url, "team-c", "status").output


def test_the_redis_sink_and_the_status_store_write_under_the_app_id(redis_client, redis_url):
    settings = config.load(env={"DRIFTLINE_APP_ID": "team-a", "HOME": "/nonexistent"})
    (sink_entry,) = settings.sinks
    assert sink_entry == {"type": "redis", "stream": "team-a:alerts", "prefix": "team-a"}
    sink = RedisSink(redis_url, stream=sink_entry["stream"], prefix=sink_entry["prefix"])
    store = StatusStore(redis_url, prefix=settings.redis_prefix)

    async def write():
        await sink({"alert_id": "abc123456789", "model": "fraud", "model_version": "1", "kind": "input_drift"})
        await store.write_status("fraud", "1", _status(5, 0))
        await sink.close()
        await store.close()

    asyncio.run(write())
    assert sorted(k.decode() for k in redis_client.keys("*")) == [
        "team-a:alert:abc123456789", "team-a:alerts", "team-a:models", "team-a:status:fraud:1"]
    assert audit.load_alert(redis_url, "abc12345", prefix="team-a")["alert_id"] == "abc123456789"
    assert audit.load_alert(redis_url, "abc12345", prefix="driftline") is None


def test_status_says_no_labels_yet_instead_of_a_zero_metric(redis_client, redis_url):
    write_status_sync(redis_url, "fraud", "1", _status(200, 0))
    write_status_sync(redis_url, "churn", "1", _status(200, 150))
    result = _cli(redis_url, "driftline", "status")
    assert result.exit_code == 0, result.output
    fraud = next(line for line in result.output.splitlines() if "fraud" in line and "│" in line)
    churn = next(line for line in result.output.splitlines() if "churn" in line and "│" in line)
    assert "no labels yet" in fraud and "accuracy=0.000" not in fraud
    assert "150 (75.0%)" in churn and "accuracy=0.910" in churn
    assert ("label join fraud: 42 predictions waiting for a label, 7 expired unlabelled, "
            "3 labels with an unknown prediction id") in result.output


def test_audit_prefix_must_be_unique_and_long_enough(redis_client, redis_url):
    for alert_id in ("deadbeef0001", "deadbeef0002"):
        redis_client.hset(f"driftline:alert:{alert_id}", mapping={"json": orjson.dumps({"alert_id": alert_id})})
    with pytest.raises(audit.AmbiguousId, match="deadbeef matches 2 alerts"):
        audit.load_alert(redis_url, "deadbeef")
    assert audit.load_alert(redis_url, "deadbeef0002")["alert_id"] == "deadbeef0002"
    assert audit.load_alert(redis_url, "deadbee") is None          # 7 characters: no prefix search
    result = _cli(redis_url, "driftline", "audit", "deadbeef")
    assert result.exit_code == 1 and "deadbeef matches 2 alerts" in result.output


@pytest.mark.parametrize("kind", sorted(audit.NOT_RECOMPUTABLE))
def test_recompute_says_why_a_kind_cannot_be_recomputed(redis_client, redis_url, kind):
    alert = {"alert_id": f"{kind}-000000", "kind": kind, "model": "m", "model_version": "1",
             "window": {"n": 10}, "evidence": {}}
    redis_client.hset(f"driftline:alert:{alert['alert_id']}", mapping={"json": orjson.dumps(alert)})
    result = _cli(redis_url, "driftline", "audit", alert["alert_id"][:10], "--recompute")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"driftline: {kind} alerts cannot be recomputed: {audit.NOT_RECOMPUTABLE[kind]}")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("kind", sorted(audit.WITHOUT_EVIDENCE))
def test_recompute_says_an_old_alert_lacks_the_stored_evidence(redis_client, redis_url, kind):
    """Estimated performance and fairness alerts raised before their evidence stored the calibration
    or the counts: the same one-line refusal, before anything is read from Kafka."""
    alert = {"alert_id": f"{kind}-old-0000", "kind": kind, "model": "m", "model_version": "1",
             "window": {"n": 10}, "evidence": {"f": {"detector": "d", "statistic": 0.2, "p_value": None}}}
    redis_client.hset(f"driftline:alert:{alert['alert_id']}", mapping={"json": orjson.dumps(alert)})
    result = _cli(redis_url, "driftline", "audit", alert["alert_id"][:12], "--recompute")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"driftline: {kind} alerts cannot be recomputed: {audit.WITHOUT_EVIDENCE[kind]}")
    assert "Traceback" not in result.output


def test_status_watch_redraws_as_the_status_changes_and_ends_on_ctrl_c(redis_client, redis_url, tmp_path):
    """`driftline status --watch` on a terminal (a pty): it shows the model, shows the new count
    once the status changes, and Ctrl-C ends it with exit code 0."""
    import os
    import pty
    import signal
    import subprocess
    import sys
    import time

    write_status_sync(redis_url, "watched", "1", _status(10, 0), prefix="team-w")
    master, slave = pty.openpty()
    env = {**os.environ, "DRIFTLINE_APP_ID": "team-w", "COLUMNS": "200"}
    env.pop("DRIFTLINE_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "--redis-url", redis_url, "status", "--watch", "0.2"],
                            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=tmp_path,
                            # a shell's background job inherits SIGINT ignored; a user's terminal does not
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(slave)
    seen = b""

    def read_until(text: bytes, timeout: float = 20.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen:
            assert time.monotonic() < deadline, seen[-2000:]
            try:
                seen += os.read(master, 65536)
            except OSError:
                break
    try:
        read_until(b"watched")
        write_status_sync(redis_url, "watched", "1", _status(987654, 0), prefix="team-w")
        read_until(b"987654")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
