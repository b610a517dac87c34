"""deploy/: the Prometheus rules (promtool), and a real Prometheus scraping a live worker,
from which every Grafana panel's query returns data (Grafana itself is not installable here)."""
from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.parse
import uuid

import pytest

from tests.integration.harness import (
    SMALL_WINDOWS,
    ROOT,
    WorkerProcess,
    drift_traffic,
    isolated_env,
    labels_for,
    produce,
    topic,
    wait_until,
)
from tests.ops_services import PROMTOOL, get_json, need, start_prometheus

RULES = ROOT / "deploy" / "prometheus" / "driftline-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "driftline.json"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([need(PROMTOOL), *args], capture_output=True, text=True, timeout=60, cwd=RULES.parent)


def test_rules_and_config_pass_promtool():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "driftline-rules-test.yml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]
    found += [(a["name"], a["expr"]) for a in dashboard["annotations"]["list"]]
    return found


def test_dashboard_panels_use_the_provisioned_datasource():
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = (ROOT / "deploy/grafana/provisioning/datasources/driftline.yml").read_text()
    assert "uid: driftline-prometheus" in datasource
    assert dashboard["uid"] == "driftline" and len(dashboard["panels"]) >= 10
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "driftline-prometheus", panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def query(prometheus, expr: str) -> list:
    body = get_json(f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert body["status"] == "success", body
    return body["data"]["result"]


def finite_points(prometheus, expr: str, start: float) -> int:
    params = {"query": expr, "start": start, "end": time.time(), "step": 1}
    body = get_json(f"{prometheus.url}/api/v1/query_range?" + urllib.parse.urlencode(params))
    assert body["status"] == "success", body
    return sum(1 for series in body["data"]["result"] for _, v in series["values"] if math.isfinite(float(v)))


@pytest.mark.integration
def test_prometheus_scrapes_a_worker_and_every_grafana_panel_returns_data(broker_url, redis_url, tmp_path):
    need("/usr/bin/prometheus")
    model = f"prom-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "driftline.toml"
    config.write_text("metrics_feature_gauges = true\n" + SMALL_WINDOWS + "resolve_windows = 2\ncbpe_reference_labels = 500\n")
    env = isolated_env(broker_url, redis_url)
    worker = WorkerProcess(env, tmp_path, config=config)
    port = int(worker.env["DRIFTLINE_WEB_PORT"])
    prometheus = start_prometheus(tmp_path / "prometheus", f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: driftline
    static_configs:
      - targets: ["127.0.0.1:{port}"]
""")
    started = time.time()
    try:
        worker.wait_ready()
        events = list(drift_traffic(3000, shift_at=1500, model=model, shift=1.5))
        # labels for the first 1,500 before the drifted half: CBPE is fitted, then estimates windows
        produce(broker_url, topic(env, "predictions"), events[:1500])
        produce(broker_url, topic(env, "labels"), labels_for(events[:1500], every=2))
        selector = f'{{model="{model}", model_version="1", kind="label"}}'
        wait_until(lambda: [r for r in query(prometheus, "driftline_events_total" + selector)
                            if float(r["value"][1]) == 750], 60, 0.5, "labels scraped")
        produce(broker_url, topic(env, "predictions"), events[1500:])
        selector = f'{{model="{model}", model_version="1", kind="prediction"}}'
        series = wait_until(lambda: [r for r in query(prometheus, "driftline_events_total" + selector)
                                     if float(r["value"][1]) == 3000], 60, 0.5, "3000 predictions in Prometheus")
        assert series[0]["metric"]["job"] == "driftline" and series[0]["metric"]["instance"] == f"127.0.0.1:{port}"
        firing = wait_until(lambda: [a for a in get_json(f"{prometheus.url}/api/v1/alerts")["data"]["alerts"]
                                     if a["labels"]["alertname"] == "DriftlineConditionActive"
                                     and a["labels"].get("model") == model
                                     and a["labels"]["kind"] == "input_drift"], 30, 0.5, "the rule firing")
        assert firing[0]["state"] == "firing" and firing[0]["labels"]["model_version"] == "1"
        # more labels, after Prometheus has seen the first ones: a rate needs a change between scrapes
        produce(broker_url, topic(env, "labels"), labels_for(events[1500:], every=2))
        queries = [(title, expr.replace("$model", model).replace("$__rate_interval", "20s"))
                   for title, expr in panel_queries()]

        def empty():
            return [(title, expr) for title, expr in queries if not finite_points(prometheus, expr, started)]

        try:
            wait_until(lambda: not empty(), 40, 1.0, "data in every panel")
        except TimeoutError:
            raise AssertionError(f"panels without data: {empty()}") from None
    finally:
        prometheus.stop()
        worker.terminate()
