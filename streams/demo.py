"""``driftline demo``: broker, Redis, a worker and drifting traffic, on this machine, in one command."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streams import config
from streams.embedded import free_port, redis_reachable, start_broker, start_redis
from streams.simulator import KPI, LATENCY_SLO_MS, SHIFT_FEATURE, Scenario, publish

STYLE = {"critical": "bold red", "warning": "yellow", "info": "green"}


class AlertCollector(threading.Thread):
    """Reads driftline.alerts and driftline.retrain while the demo runs."""

    def __init__(self, bootstrap: str, topics, on_record):
        super().__init__(daemon=True)
        self.bootstrap, self.topics, self.on_record = bootstrap, topics, on_record
        self.records: list[dict] = []
        self._halt = threading.Event()

    def run(self) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(self.topics.alerts, self.topics.retrain, bootstrap_servers=self.bootstrap,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 consumer_timeout_ms=500)
        try:
            while not self._halt.is_set():
                for message in consumer:
                    record = orjson.loads(message.value)
                    self.records.append(record)
                    self.on_record(record)
                    if self._halt.is_set():
                        break
        finally:
            consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


APP_ID = "driftline-demo"


def demo_config(scenario: Scenario) -> str:
    """The demo model's settings: a p99 latency SLO, the revenue KPI, the champion."""
    return (f"[models.{scenario.model}]\n"
            f"latency_slo_ms = {{ p99 = {LATENCY_SLO_MS} }}\n"
            f"kpis = {{ {KPI} = \"higher\" }}\n"
            f"champion = \"{scenario.version}\"\n")


def _processed(redis_url: str, model: str) -> tuple[int, int]:
    from sinks import read_status_sync

    try:
        statuses = read_status_sync(redis_url, prefix=APP_ID)
    except ConnectionError:
        return 0, 0
    mine = [s for s in statuses if s.get("model") == model]
    return (sum(s.get("counts", {}).get("predictions", 0) for s in mine),
            sum(s.get("counts", {}).get("labelled", 0) for s in mine))


def _event_index(record: dict, scenario: Scenario) -> int | None:
    window = record.get("window") or {}
    end = window.get("end")
    if end is None:
        return None
    if record.get("kind") == "performance":
        end -= 1.0  # labels are stamped one second after their prediction
    return scenario.index_of(end)


def _describe(record: dict, scenario: Scenario) -> str:
    index = _event_index(record, scenario)
    where = f"event ~{index}" if index is not None else ""
    if record.get("kind") == "retrain":
        return f"[magenta]RETRAIN[/] {record['model']}/{record['model_version']}: {record['reason']}"
    style = STYLE.get(record.get("severity"), "white")
    return (f"[{style}]{record['severity'].upper():8}[/] [bold]{record['kind']}[/] "
            f"{record.get('message', '')} [dim]({where}, id {record['alert_id'][:10]})[/]")


def run_demo(console: Console, events: int, shift_at: int, concept_at: int, batch: int,
             timeout: float) -> int:
    settings = config.current()
    scenario = Scenario(events=events, shift_at=shift_at, concept_at=concept_at)
    workdir = Path(tempfile.mkdtemp(prefix="driftline-demo-"))
    started = time.monotonic()
    services, worker = [], None
    try:
        console.rule("[bold]driftline demo")
        broker = start_broker(log_path=workdir / "broker.log")
        services.append(broker)
        redis_url = settings.redis_url
        if settings.source == "defaults" and not os.environ.get("DRIFTLINE_REDIS_URL") or not redis_reachable(redis_url):
            redis = start_redis()
            services.append(redis)
            redis_url = redis.url
        console.print(f"broker  {broker.url}  (Tansu, memory-only, pid {broker.proc.pid})")
        console.print(f"redis   {redis_url.split('@')[-1]}  ({'started, pid ' + str(services[-1].proc.pid) if len(services) > 1 else 'existing'})")
        web_port = free_port()
        env = {**os.environ, "DRIFTLINE_BROKER": broker.url, "DRIFTLINE_REDIS_URL": redis_url,
               "DRIFTLINE_WEB_PORT": str(web_port), "DRIFTLINE_APP_ID": APP_ID,
               "DRIFTLINE_DATA_DIR": str(workdir / "data")}   # nothing left in the working directory
        if not env.get("DRIFTLINE_CONFIG"):   # a configuration of the user's own is used as it is
            (workdir / "demo.toml").write_text(demo_config(scenario))
            env["DRIFTLINE_CONFIG"] = str(workdir / "demo.toml")
        log_path = workdir / "worker.log"
        with open(log_path, "wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "-l", "warning"],
                                      env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        console.print(f"worker  pid {worker.pid}, log {log_path}")
        console.print(f"dashboard http://127.0.0.1:{web_port}/dashboard/{scenario.model}  "
                      f"(metrics: http://127.0.0.1:{web_port}/metrics)")
        console.print(f"traffic {events} predictions from a river model trained on the bundled Phishing data; "
                      f"covariate shift in [bold]{SHIFT_FEATURE}[/] at event {shift_at}, "
                      f"concept drift (labels flip) at event {concept_at}, "
                      f"serving {scenario.latency_factor:g}x slower at event {scenario.latency_at} "
                      f"(p99 SLO {LATENCY_SLO_MS:g} ms), {KPI} down to {scenario.kpi_drop:.0%} at event "
                      f"{scenario.kpi_drop_at}; {scenario.challenger_share:.0%} of traffic served by challenger "
                      f"{scenario.challenger}")
        console.print("reference = first 2,000 predictions; drift windows of 1,000\n")

        bootstrap = broker.url.split("://", 1)[1]
        collector = AlertCollector(bootstrap, settings.topics,
                                   lambda r: console.print(_describe(r, scenario)))
        collector.start()
        with Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=False) as progress:
            pub = progress.add_task("published", total=events)
            proc = progress.add_task("processed", total=events)
            publisher = threading.Thread(
                target=publish, daemon=True,
                kwargs=dict(scenario=scenario, bootstrap=bootstrap, topics=settings.topics, batch=batch,
                            rate=events / 25.0, progress=lambda n: progress.update(pub, completed=n)))
            publisher.start()
            done_at = None
            while time.monotonic() - started < timeout:
                if worker.poll() is not None:
                    console.print(f"[red]worker exited with {worker.returncode}; see {log_path}")
                    break
                processed, labelled = _processed(redis_url, scenario.model)
                progress.update(proc, completed=processed)
                if processed >= events and not publisher.is_alive():
                    done_at = done_at or time.monotonic()
                    if time.monotonic() - done_at > 4.0:  # let the last labels and alerts arrive
                        break
                time.sleep(0.25)
        collector.stop()
        (workdir / "alerts.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in collector.records))
        console.print(f"alerts and retrain requests saved to {workdir / 'alerts.jsonl'}")
        _write_report(console, redis_url, scenario.model, workdir / "report.html")
        return _summary(console, scenario, collector.records, *_processed(redis_url, scenario.model),
                        time.monotonic() - started)
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
        for service in reversed(services):
            service.stop()


def _write_report(console: Console, redis_url: str, model: str, path: Path) -> None:
    """The demo model's report (`driftline report`), next to its alerts."""
    from sinks.history import read_history_sync
    from streams.report import model_page

    try:
        path.write_text(model_page(model, read_history_sync(redis_url, model, prefix=APP_ID)), encoding="utf-8")
        console.print(f"report of the demo model (open it in a browser, works offline): {path}")
    except Exception as exc:     # the demo's result stands without its report
        console.print(f"[red]report not written: {type(exc).__name__}: {exc}")


def _summary(console: Console, scenario: Scenario, records: list, processed: int, labelled: int,
             elapsed: float) -> int:
    alerts = [r for r in records if r.get("kind") != "retrain"]
    retrains = [r for r in records if r.get("kind") == "retrain"]
    console.rule("[bold]summary")
    console.print(f"events processed: {processed} predictions, {labelled} labels in {elapsed:.0f} s; "
                  f"{len(alerts)} alerts, {len(retrains)} retrain requests")
    table = Table("kind", "feature(s)", "alerts", "first at event", "injected at", "delay (events)")
    groups: dict = {}
    for r in alerts:
        key = (r["kind"], ", ".join(str(f) for f in r.get("features") or [] if f) or "-")
        groups.setdefault(key, []).append(r)
    injected = {kind: scenario.shift_at for kind in ("input_drift", "prediction_drift", "multivariate_drift",
                                                     "data_quality", "segment_drift")}
    injected.update(performance=scenario.concept_at, estimated_performance=scenario.concept_at,
                    latency=scenario.latency_at, kpi=scenario.kpi_drop_at)
    for (kind, features), items in sorted(groups.items()):
        first = min((_event_index(r, scenario) for r in items), default=None, key=lambda i: i or 0)
        point = injected.get(kind)
        delay = first - point if first is not None and point is not None else None
        table.add_row(kind, features, str(len(items)), str(first), str(point or "-"),
                      "-" if delay is None else str(delay))
    console.print(table)
    shift_alerts = [r for r in alerts if r["kind"] == "input_drift"]
    caught = [r for r in shift_alerts if SHIFT_FEATURE in (r.get("features") or [])
              and (_event_index(r, scenario) or 0) >= scenario.shift_at]
    false = [r for r in shift_alerts if (_event_index(r, scenario) or 0) < scenario.shift_at]
    performance = [r for r in alerts if r["kind"] == "performance"
                   and (_event_index(r, scenario) or 0) >= scenario.concept_at]
    slo = [r for r in alerts if r["kind"] == "latency" and (_event_index(r, scenario) or 0) >= scenario.latency_at
           and any(key.startswith("latency_ms:") for key in r.get("conditions") or [])]
    kpi_drop = [r for r in alerts if r["kind"] == "kpi" and (_event_index(r, scenario) or 0) >= scenario.kpi_drop_at
                and r.get("feature", "").startswith(KPI)]
    verdict = Counter()
    verdict["covariate shift caught"] = bool(caught)
    verdict["concept drift caught"] = bool(performance)
    verdict["latency SLO breach caught"] = bool(slo)
    verdict[f"{KPI} drop caught"] = bool(kpi_drop)
    verdict["input-drift alerts before the shift"] = len(false)
    for name, value in verdict.items():
        console.print(f"{name}: [bold]{value}[/]")
    for line in challenger_lines(alerts, scenario):
        console.print(line)
    return 0 if caught and not false and slo and kpi_drop else 1


def challenger_lines(alerts: list, scenario: Scenario) -> list[str]:
    """The challenger's KPI and latency difference, from the last champion/challenger comparison."""
    comparisons = [r for r in alerts if r["kind"] == "comparison"]
    if not comparisons:
        return [f"challenger {scenario.challenger}: no comparison yet (too few labelled events)"]
    evidence = comparisons[-1]["evidence"]
    lines = [f"challenger {evidence['challenger']} vs {evidence['champion']}: "
             f"[bold]{evidence['recommendation']}[/] (decided on {evidence.get('compare_on', 'error')})"]
    for name, kpi in (evidence.get("kpis") or {}).items():
        if kpi.get("difference") is not None:
            p = kpi.get("p_value")
            lines.append(f"  {name}: {kpi['challenger']:.3f} vs {kpi['champion']:.3f}, difference "
                         f"{kpi['difference']:+.3f}" + (f" (Welch p={p:.2g})" if p is not None else ""))
    difference = (evidence.get("latency") or {}).get("difference_ms") or {}
    if difference.get("p99") is not None:
        lines.append(f"  latency p50 {difference['p50']:+.1f} ms, p99 {difference['p99']:+.1f} ms")
    return lines
