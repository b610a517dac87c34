"""The operations endpoints of a live worker: /metrics scraped during a run, /healthz, /readyz."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.embedded import free_port, start_redis
from tests.ops_services import get_json, start_alertmanager
from tests.integration.harness import (
    ROOT,
    SMALL_WINDOWS,
    WorkerProcess,
    drift_traffic,
    isolated_env,
    labels_for,
    produce,
    produce_raw,
    read_alerts,
    topic,
    wait_until,
)

pytestmark = pytest.mark.integration

PROMTOOL = "/usr/bin/promtool"


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def scrape(port: int) -> dict:
    """{(name, frozenset(labels)): value} from the worker's /metrics."""
    code, body = get(port, "/metrics")
    if code != 200:
        return {}
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def about(found: dict, model: str) -> dict:
    """The samples of ``model`` and the dead-letter counts, for a failure message."""
    return {name + str(dict(labels)): v for (name, labels), v in found.items()
            if dict(labels).get("model") == model or "deadletter" in name}


def sample(found: dict, name: str, **labels):
    return found.get((name, frozenset(labels.items())))


def port_of(worker: WorkerProcess) -> int:
    return int(worker.env["DRIFTLINE_WEB_PORT"])


def ops_config(tmp_path, extra: str = "") -> str:
    path = tmp_path / "driftline.toml"
    path.write_text(SMALL_WINDOWS + "resolve_windows = 2\nrealert_windows = 100\n" + extra)
    return path


def test_metrics_and_alertmanager_during_a_run_follow_the_drift_and_its_resolution(broker_url, redis_url, tmp_path,
                                                                                    unique):
    """One worker, scraped and delivering to a real Alertmanager, through a drift that resolves."""
    model = f"ops-{unique}"
    am = start_alertmanager(tmp_path / "am")
    env = isolated_env(broker_url, redis_url)
    sinks = f'[[sinks]]\ntype = "redis"\n[[sinks]]\ntype = "alertmanager"\nurl = "{am.url}"\n'
    worker = WorkerProcess(env, tmp_path, config=ops_config(tmp_path, sinks))
    port = port_of(worker)

    def am_alerts():
        return [a for a in get_json(f"{am.url}/api/v2/alerts?active=true") if a["labels"].get("model") == model]

    try:
        # /readyz from the first moment the web server answers: 503 until partitions are assigned
        seen: list[int] = []

        def ready():
            code, body = get(port, "/readyz")
            if code:
                seen.append(code)
            return code == 200 and orjson.loads(body)

        body = wait_until(ready, 90, 0.05, "readyz 200")
        assert seen[0] == 503 and body["status"] == "ready" and body["checks"]["assigned_partitions"] > 0
        code, health = get(port, "/healthz")
        assert code == 200 and orjson.loads(health)["status"] == "ok"
        assert orjson.loads(health)["gc_thresholds"] == [50_000, 50, 100]   # driftline worker applied gc_policy

        drifting = list(drift_traffic(3000, shift_at=1000, model=model, shift=1.5))
        mv = {"model": model, "model_version": "1"}
        # the reference first: partitions are read at their own pace, and shifted events
        # overtaking unshifted ones would end up in the reference
        produce(broker_url, topic(env, "predictions"), drifting[:1000])
        wait_until(lambda: sample(scrape(port), "driftline_events_total", **mv, kind="prediction") == 1000, 60, 0.3,
                   "the reference in /metrics")
        produce(broker_url, topic(env, "predictions"), drifting[1000:], key=model.encode())   # in order
        labels = labels_for(drifting[:1000])
        produce(broker_url, topic(env, "labels"), labels)
        produce_raw(broker_url, topic(env, "predictions"), [b"{not json", b"[1, 2", b"\xff"])
        produce(broker_url, topic(env, "predictions"), [{"model": model, "prediction_id": "x", "timestamp": "later"}])

        last: list = [{}]

        def drifted():
            found = last[0] = scrape(port)
            return (sample(found, "driftline_events_total", **mv, kind="prediction") == 3000
                    and sample(found, "driftline_events_total", **mv, kind="label") == 1000
                    and sample(found, "driftline_active_condition", **mv, kind="input_drift") == 1
                    and sample(found, "driftline_deadletter_total", reason="invalid_event") == 1
                    and found)

        try:
            found = wait_until(drifted, 90, 0.5, "the drift in /metrics")
        except TimeoutError:
            raise AssertionError(f"{about(last[0], model)}\n{worker.log()[-3000:]}") from None
        assert sample(found, "driftline_deadletter_total", reason="invalid_json") == 3
        assert sample(found, "driftline_windows_closed_total", **mv) == 4
        assert sample(found, "driftline_label_join_ratio", **mv) == pytest.approx(1000 / 3000)
        assert sample(found, "driftline_label_delay_seconds_count", model=model) == 1000
        assert sample(found, "driftline_last_event_timestamp_seconds", model=model) == drifting[-1]["timestamp"]
        assert sample(found, "driftline_rolling_metric", **mv, metric="accuracy") == 1.0   # labels = predictions
        assert sample(found, "driftline_window_test_duration_seconds_count", **mv) == 4

        firing = wait_until(lambda: [a for a in am_alerts() if a["labels"]["kind"] == "input_drift"], 30, 0.3,
                            "the drift alert in Alertmanager")
        labels = firing[0]["labels"]
        assert labels["alertname"] == "DriftlineInputDrift" and labels["model_version"] == "1"
        assert labels["condition"] == "income" and labels["severity"] in ("warning", "critical")
        assert firing[0]["annotations"]["audit"].startswith("driftline audit ")

        code, text = get(port, "/metrics")
        if shutil.which(PROMTOOL):
            checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, timeout=30)
            assert checked.returncode == 0 and not checked.stdout and not checked.stderr, checked
        elif os.environ.get("CI"):
            pytest.fail(f"{PROMTOOL} missing: .ci/run installs the Debian package prometheus")

        clean = list(drift_traffic(1500, shift_at=1500, model=model, seed=4,
                                   start=drifting[-1]["timestamp"] + 1))
        produce(broker_url, topic(env, "predictions"), clean)

        def resolved():
            found = scrape(port)
            return (sample(found, "driftline_active_condition", **mv, kind="input_drift") == 0
                    and sample(found, "driftline_events_total", **mv, kind="prediction") == 4500
                    and found)

        found = wait_until(resolved, 90, 0.5, "the condition resolved in /metrics")
        sent = read_alerts(broker_url, topic(env, "alerts"))
        sent = [a for a in sent if a["model"] == model]
        by_kind: dict = {}
        for alert in sent:
            key = (alert["kind"], alert["severity"])
            by_kind[key] = by_kind.get(key, 0) + 1
        assert ("resolved", "info") in by_kind and any(k == "input_drift" for k, _ in by_kind)

        def counted():
            found = scrape(port)
            return all(sample(found, "driftline_alerts_total", kind=k, severity=s) == n
                       for (k, s), n in by_kind.items()) and found

        found = wait_until(counted, 30, 0.5, "alerts_total equal to the alerts topic")
        wait_until(lambda: not [a for a in am_alerts() if a["labels"]["kind"] == "input_drift"], 30, 0.3,
                   "the drift alert ended in Alertmanager by resolved")
        retrain = [r for r in read_alerts(broker_url, topic(env, "retrain"), idle=1.0) if r["model"] == model]
        assert sample(found, "driftline_outputs_sent_total", kind="retrain") == len(retrain)
        # the router hands the sink retrain requests too; it sends them nowhere (they are not alerts)
        assert sample(found, "driftline_sink_deliveries_total", sink="alertmanager",
                      outcome="delivered") == len(sent) + len(retrain)
        assert sample(found, "driftline_outputs_sent_total", kind="alert") == len(sent)
        assert sample(found, "driftline_alert_latency_seconds_count") == len(sent)
        assert sample(found, "driftline_model_alerts_total", **mv) == len(sent)
        # the window history, read with the CLI as an operator would; it outlives the worker
        def history():
            done = subprocess.run([sys.executable, "-m", "streams.cli", "--redis-url", redis_url, "history", model,
                                   "--version", "1", "--json"], capture_output=True, timeout=60, cwd=ROOT,
                                  env=worker.env)   # the worker's app id: its Redis keys' prefix
            assert done.returncode == 0, done.stderr
            return orjson.loads(done.stdout)["1"]

        wait_until(lambda: len(history()) == 7, 30, 0.5, "7 windows in the history")   # 4 drifted, 3 clean
        code, page = get(port, f"/dashboard/{model}?version=1&feature=income")
        assert code == 200 and b'id="heatmap-1"' in page and b"Reference vs current: income" in page
        assert get(port, "/dashboard/no-such-model")[0] == 404
        assert get(port, f"/dashboard/{model}?version=2")[0] == 404
        worker.terminate()
        windows = history()
        assert [w["index"] for w in windows] == list(range(7))
        drift_alert = next(a for a in sent if a["kind"] == "input_drift")
        assert drift_alert["alert_id"] in {a["alert_id"] for w in windows for a in w["alerts"]}
        first_drifted = windows[drift_alert["window"]["index"]]
        assert first_drifted["features"]["income"]["p_value"] == drift_alert["evidence"]["income"]["p_value"]
        assert first_drifted["features"]["income"]["drifted"] and "income" in first_drifted["drifted_features"]
    finally:
        worker.terminate()
        am.stop()


def test_readyz_reports_redis_down_as_degraded(broker_url, tmp_path):
    redis = start_redis(free_port())
    env = isolated_env(broker_url, redis.url)
    worker = WorkerProcess(env, tmp_path, config=ops_config(tmp_path))
    port = port_of(worker)
    try:
        wait_until(lambda: get(port, "/readyz")[0] == 200, 90, 0.2, "ready")
        assert orjson.loads(get(port, "/readyz")[1])["status"] == "ready"
        redis.stop()
        code, body = get(port, "/readyz")
        body = orjson.loads(body)
        assert code == 200 and body["status"] == "degraded" and body["checks"]["redis"] != "ok"
        assert get(port, "/healthz")[0] == 200
        start = time.monotonic()
        assert get(port, "/metrics")[0] == 200 and time.monotonic() - start < 2.0   # no Redis call on a scrape
    finally:
        worker.terminate()
        redis.stop()
