"""The mlflow sink against a real `mlflow server` (sqlite backend in a temp folder, 127.0.0.1, a free port):
what the worker logged is read back with MlflowClient and compared with the window history it wrote."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from sinks.history import read_history_sync
from streams.embedded import free_port
from tests.integration.harness import (SMALL_WINDOWS, WorkerProcess, drift_traffic, isolated_env, labels_for, model_statuses,
                                       produce, read_alerts, topic, wait_processed, wait_until)

pytestmark = pytest.mark.integration


def labelled(redis_url: str, model: str) -> int:
    return sum(s.get("counts", {}).get("labelled", 0) for s in model_statuses(redis_url, model))


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(folder / "server.log", "wb")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}   # no background job consumers
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--default-artifact-root", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        start_new_session=True)   # its own process group: stopped with every child it started
    url = f"http://127.0.0.1:{port}"

    def healthy():
        assert proc.poll() is None, (folder / "server.log").read_text()[-3000:]
        try:
            return requests.get(f"{url}/health", timeout=1).ok
        except requests.RequestException:
            return False

    try:
        wait_until(healthy, timeout=90, interval=0.3, what="mlflow server")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def test_window_metrics_alerts_and_retrain_requests_reach_mlflow(mlflow_server, broker_url, redis_url, tmp_path,
                                                                unique):
    env = isolated_env(broker_url, redis_url)
    config = tmp_path / "driftline.toml"
    config.write_text(SMALL_WINDOWS + f"""
[[sinks]]
type = "mlflow"
tracking_uri = "{mlflow_server}"
experiment_prefix = "dl-test/"
""")
    model, n = f"mlf-{unique}", 3000
    events = list(drift_traffic(n, shift_at=1500, model=model, shift=1.5))
    worker = WorkerProcess(env, tmp_path, config=config)
    client = MlflowClient(tracking_uri=mlflow_server)
    try:
        worker.wait_ready()
        # the first half with its labels, joined before the rest comes: later windows close with metrics
        for part in (events[:1500], events[1500:]):
            produce(broker_url, topic(env, "predictions"), [part[i:i + 50] for i in range(0, len(part), 50)],
                    key=model.encode())   # one partition: windows in the order sent
            produce(broker_url, topic(env, "labels"), [labels_for(part[i:i + 100]) for i in range(0, len(part), 100)])
            if part[0] is events[0]:
                wait_until(lambda: labelled(redis_url, model) >= 1500, timeout=90, what="the first labels joined")
        wait_processed(redis_url, {model: n})
        prefix = env["DRIFTLINE_APP_ID"]
        windows = wait_until(lambda: (lambda h: h if len(h) >= 4 else None)(
            read_history_sync(redis_url, model, "1", prefix=prefix)["1"]), timeout=60, what="4 windows in the history")

        def run():
            experiment = client.get_experiment_by_name(f"dl-test/{model}")
            if experiment is None:
                return None
            runs = client.search_runs([experiment.experiment_id])
            if len(runs) != 1:
                return None
            logged = client.get_metric_history(runs[0].info.run_id, "window.n")
            return runs[0] if len(logged) >= len(windows) else None

        found = wait_until(run, timeout=60, interval=0.5, what="every window logged to MLflow")
        alerts = [a for a in read_alerts(broker_url, topic(env, "alerts")) if a["model"] == model]
        retrains = [r for r in read_alerts(broker_url, topic(env, "retrain")) if r["model"] == model]
        tags = wait_until(lambda: (lambda t: t if "driftline.retrain" in t else None)(
            client.get_run(found.info.run_id).data.tags), timeout=30, what="the retrain tag")
    finally:
        worker.terminate()

    run_id = found.info.run_id
    assert found.data.tags["driftline.model_version"] == "1" and found.info.run_name == f"{model} v1"

    def history(key):
        return {m.step: m for m in client.get_metric_history(run_id, key)}

    n_logged, accuracy, drifted = history("window.n"), history("rolling.accuracy"), history("drift.drifted_features")
    effect, p_value = history("effect_size.income"), history("p_value.income")
    for window in windows:
        step, stamp = window["index"], round(window["end"] * 1000)
        assert n_logged[step].value == window["n"] and n_logged[step].timestamp == stamp
        assert drifted[step].value == len(window["drifted_features"])
        assert effect[step].value == pytest.approx(window["features"]["income"]["effect_size"], rel=1e-12)
        assert p_value[step].value == pytest.approx(window["features"]["income"]["p_value"], rel=1e-12)
        if window["metrics"].get("accuracy") is not None:
            assert accuracy[step].value == pytest.approx(window["metrics"]["accuracy"], rel=1e-12)
    assert len(accuracy) >= 2, "rolling accuracy of the labelled windows"
    assert any(w["drifted_features"] for w in windows) and max(v.value for v in drifted.values()) >= 1
    # alerts and retrain requests: tags and the run's note
    drift = [a for a in alerts if a["kind"] == "input_drift"]
    assert drift and retrains
    assert tags["driftline.alert.input_drift"].split(":")[0] in {a["alert_id"] for a in drift}
    assert tags["driftline.retrain"].split(":")[0] in {r["event_id"] for r in retrains}
    note = tags["mlflow.note.content"]
    assert all(a["alert_id"] in note for a in alerts) and all(r["event_id"] in note for r in retrains)
