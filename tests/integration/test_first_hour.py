"""The first hour with driftline, on the real broker, Redis and workers (issue 12).

Several workers on one host, nothing left in the folder a worker starts in, dead letters in the
worker log, ``tail`` lines, ``audit`` with the short ids the demo prints and ``--recompute`` for
every window-based alert kind.
"""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import numpy as np
import orjson
import pytest

from tests.integration.harness import (
    ROOT,
    SMALL_WINDOWS,
    Reader,
    WorkerProcess,
    drift_traffic,
    isolated_env,
    model_statuses,
    produce,
    produce_raw,
    topic,
    wait_until,
)
from streams.embedded import free_port

pytestmark = pytest.mark.integration


def cli(env: dict, *args, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_two_workers_on_one_host_take_two_web_ports(broker_url, redis_url, tmp_path):
    """README, "start as many as you like": the second worker takes the next free port and says so."""
    env = isolated_env(broker_url, redis_url)
    port = free_port()
    while not all(_free(p) for p in (port, port + 1)):
        port = free_port()
    first = WorkerProcess(env, tmp_path, tag="first", web_port=port)
    second = None
    try:
        first.wait_ready()
        second = WorkerProcess(env, tmp_path, tag="second", web_port=port)
        second.wait_ready()
        assert f"web server on http://127.0.0.1:{port}, data in" in first.log()
        assert f"web server on http://127.0.0.1:{port + 1} ({port} was in use)" in second.log()
        for p in (port, port + 1):   # both answer: Faust's web server runs on each
            with urllib.request.urlopen(f"http://127.0.0.1:{p}/", timeout=5) as response:
                assert response.status == 200
        assert first.proc.poll() is None and second.proc.poll() is None
    finally:
        if second is not None:
            second.terminate()
        first.terminate()


def _free(port: int) -> bool:
    from streams.preflight import port_free

    return port_free("127.0.0.1", port)


def test_a_worker_leaves_nothing_where_it_starts(broker_url, redis_url, tmp_path):
    """Faust's data folder goes to data_dir (here: XDG_STATE_HOME), never the working directory."""
    cwd, state = tmp_path / "cwd", tmp_path / "state"
    cwd.mkdir()
    # DRIFTLINE_DATA_DIR empty: the default data folder, under XDG_STATE_HOME
    # PYTHONPATH: this tree's driftline, whatever an installed one would be, outside the repository
    env = isolated_env(broker_url, redis_url, DRIFTLINE_DATA_DIR="", XDG_STATE_HOME=state, PYTHONPATH=ROOT)
    before = sorted(p.name for p in ROOT.iterdir())
    worker = WorkerProcess(env, tmp_path, cwd=cwd)
    try:
        worker.wait_ready()
    finally:
        worker.terminate()
    assert list(cwd.iterdir()) == []
    assert (state / "driftline" / env["DRIFTLINE_APP_ID"]).is_dir()
    assert sorted(p.name for p in ROOT.iterdir()) == before


def test_dead_letters_are_in_the_worker_log_and_tail_prints_one_line_each(shared_worker, broker_url):
    env = shared_worker.env
    produce_raw(broker_url, topic(env, "predictions"), [b"{not json", b'{"model": "m"}'])
    wait_until(lambda: shared_worker.log().count("dead letter from") >= 2, timeout=30, what="dead letters logged")
    log = shared_worker.log()
    assert f"dead letter from {topic(env, 'predictions')}[" in log and "invalid JSON" in log
    assert "prediction_id must be a non-empty string" in log

    result = cli(env, "tail", "deadletter", "--from-beginning", "--max", "2", "--timeout", "20")
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and len(lines) == 2, result.stdout + result.stderr
    assert all(line.startswith(f"DEADLETTER {topic(env, 'predictions')}[") for line in lines)
    assert any("invalid JSON" in line for line in lines)
    raw = cli(env, "tail", "deadletter", "--from-beginning", "--max", "1", "--timeout", "20", "--json")
    assert orjson.loads(raw.stdout)["source_topic"] == topic(env, "predictions")


def _traffic(model: str, n: int, shift_at: int):
    """drift_traffic with a segment, and after the shift: income shifted, unseen regions (data quality)."""
    rng = np.random.default_rng(11)
    for i, event in enumerate(drift_traffic(n, shift_at=shift_at, model=model, shift=1.5)):
        event["segment"] = {"channel": str(rng.choice(["web", "app"]))}
        if i >= shift_at and rng.random() < 0.2:
            event["features"]["region"] = "atlantis"
        yield event


def test_audit_takes_short_ids_and_recomputes_every_window_kind(shared_worker, broker_url, redis_url, unique):
    env = shared_worker.env
    model, n, k = f"audit-{unique}", 4000, 2000
    events = list(_traffic(model, n, k))
    # keyed by model: one input partition, so the worker takes the messages in the order sent. Unkeyed,
    # they spread over the partitions once producing takes longer than the producer's sticky 10 ms (a
    # loaded machine), and a message sent after the shift can arrive among the first 1,000 events: the
    # reference then knows "atlantis" and the shifted incomes, and no data_quality alert comes.
    produce(broker_url, topic(env, "predictions"), [events[i:i + 100] for i in range(0, n, 100)],
            key=model.encode())
    wanted = {"input_drift", "data_quality", "multivariate_drift", "segment_drift"}
    reader = Reader(broker_url, topic(env, "alerts"))
    alerts = reader.poll_until(lambda r: wanted <= {a["kind"] for a in r if a["model"] == model}, timeout=240)
    reader.close()
    mine = [a for a in alerts if a["model"] == model]
    kinds = {a["kind"] for a in mine}
    assert wanted <= kinds, kinds
    wait_until(lambda: model_statuses(redis_url, model), timeout=30, what="status written")
    for kind in sorted(wanted | ({"prediction_drift"} & kinds)):
        alert = next(a for a in mine if a["kind"] == kind)
        short = alert["alert_id"][:10]                      # as the demo prints it
        deadline = time.monotonic() + 30                    # the Redis sink is best-effort, asynchronous
        while True:
            result = cli(env, "audit", short, "--recompute")
            if result.returncode == 0 or time.monotonic() > deadline or "no alert" not in result.stderr:
                break
            time.sleep(0.5)
        assert result.returncode == 0, (kind, result.stdout[-3000:], result.stderr[-2000:])
        table = result.stdout.split("recomputed from")[-1]
        assert f"{kind} recomputed from {alert['window']['n']} events" in result.stdout
        assert " NO " not in table and "│ yes" in table, (kind, table)
        printed = orjson.loads(result.stdout[:result.stdout.index("\n}\n") + 2])   # the stored alert, then the table
        assert printed["alert_id"] == alert["alert_id"]
    too_short = cli(env, "audit", mine[0]["alert_id"][:6])
    assert too_short.returncode == 1 and "give at least 8 characters" in too_short.stderr


@pytest.fixture(scope="module")
def shared_worker(broker_url, redis_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("first-hour")
    config = tmp / "driftline.toml"
    config.write_text(SMALL_WINDOWS)
    env = isolated_env(broker_url, redis_url, DRIFTLINE_CONFIG=config)
    worker = WorkerProcess(env, tmp)
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.terminate()


def _batch(model: str, n: int) -> list[dict]:
    return list(drift_traffic(n, shift_at=n + 1, model=model))


@pytest.mark.parametrize("where, n", [("default", 17_000), ("shared", 9_000)])
def test_a_large_micro_batch_is_processed_not_dead_lettered(where, n, shared_worker, broker_url, redis_url,
                                                           tmp_path, unique):
    """The issue's 5 MB micro-batch of 17,000 predictions, with the default max_message_bytes (the
    consumer's fetch limit); and a 2.9 MB one on a worker whose max_message_bytes is 1 MB: split."""
    model = f"big-{where}-{unique}"
    events = _batch(model, n)
    raw = orjson.dumps(events)
    worker = shared_worker
    if where == "default":
        assert 5_000_000 < len(raw) < 8_000_000          # what the test producer may send
        worker = WorkerProcess(isolated_env(broker_url, redis_url), tmp_path, tag="default")
    try:
        worker.wait_ready()
        produce_raw(broker_url, topic(worker.env, "predictions"), [raw])
        wait_until(lambda: sum(s["counts"]["predictions"] for s in model_statuses(redis_url, model)) == n,
                   timeout=120, what=f"{n} predictions of one {len(raw) / 1e6:.1f} MB message processed")
        reader = Reader(broker_url, topic(worker.env, "deadletter"))
        letters = [letter for letter in reader.drain(idle=2.0) if model in letter.get("payload", "")[:2000]]
        reader.close()
        assert letters == []
    finally:
        if worker is not shared_worker:
            worker.terminate()
