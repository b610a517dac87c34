"""``driftline audit --recompute`` for the two kinds that depend on labels, on the real broker and Redis.

A worker monitors two credit models with calibrated scores and segments correlated with the
features (tests/audit_traffic.py), labels following their predictions: one whose inputs move
towards the decision boundary (CBPE's estimate drops: ``estimated_performance``), one biased
against a region (``fairness``). The CLI reads each alert's window back from Kafka and
rebuilds it from what the alert stored: every row matches.
"""
from __future__ import annotations

import subprocess
import sys
import time

import orjson
import pytest

from tests.audit_traffic import labelled_traffic
from tests.integration.harness import ROOT, SMALL_WINDOWS, Reader, WorkerProcess, isolated_env, produce, topic

pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore:read_text is deprecated", "ignore:open_text is deprecated")]


def _audit(env: dict, alert_id: str) -> subprocess.CompletedProcess:
    deadline = time.monotonic() + 30                    # the Redis sink is best-effort, asynchronous
    while True:
        result = subprocess.run([sys.executable, "-m", "streams.cli", "audit", alert_id[:10], "--recompute"],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        if result.returncode == 0 or time.monotonic() > deadline or "no alert" not in result.stderr:
            return result
        time.sleep(0.5)


def test_estimated_performance_and_fairness_alerts_raised_by_a_worker_are_recomputed(
        broker_url, redis_url, tmp_path, unique):
    config = tmp_path / "driftline.toml"
    config.write_text(SMALL_WINDOWS + "cbpe_reference_labels = 1000\n")
    env = isolated_env(broker_url, redis_url, DRIFTLINE_CONFIG=config)
    models = {"estimated_performance": (f"est-{unique}", "confidence"), "fairness": (f"fair-{unique}", "segment")}
    worker = WorkerProcess(env, tmp_path)
    try:
        worker.wait_ready()
        n = 6000
        traffic = {kind: labelled_traffic(n, 3000, change, model=model) for kind, (model, change) in models.items()}
        for i in range(0, n, 100):      # each batch of predictions, then its labels (a short label delay)
            for events, labels in traffic.values():
                produce(broker_url, topic(env, "predictions"), [events[i:i + 100]])
                produce(broker_url, topic(env, "labels"), [labels[i:i + 100]])
        reader = Reader(broker_url, topic(env, "alerts"))

        def raised(alerts):
            return all(any(a["kind"] == kind and a["model"] == model for a in alerts)
                       for kind, (model, _) in models.items())

        alerts = reader.poll_until(raised, timeout=240)
        reader.close()
        for kind, (model, _) in models.items():
            alert = next(a for a in alerts if a["kind"] == kind and a["model"] == model)
            result = _audit(worker.env, alert["alert_id"])
            assert result.returncode == 0, (kind, result.stdout[-3000:], result.stderr[-2000:])
            table = result.stdout.split("recomputed from")[-1]
            assert f"{kind} recomputed from {alert['window']['n']} events" in result.stdout
            assert " NO " not in table and "│ yes" in table, (kind, table)
            printed = orjson.loads(result.stdout[:result.stdout.index("\n}\n") + 2])
            assert printed["alert_id"] == alert["alert_id"]
            if kind == "fairness":
                notes = {f"{f}: counts recounted from the window's predictions" if e["metric"] == "positive_rate"
                         else f"{f}: counts as stored (labels joined while the window was open)"
                         for f, e in alert["evidence"].items()}
                assert notes <= set(table.splitlines()), table
            else:
                assert alert["evidence"]["__score__"]["calibration_map"]["x"]
        assert worker.proc.poll() is None
    finally:
        worker.terminate()
