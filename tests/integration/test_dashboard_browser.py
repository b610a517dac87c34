"""The dashboard and a report in headless Chromium (Debian's, driven by playwright): the plots render,
one heatmap row per feature, no console error, no request leaving 127.0.0.1."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from detectors.monitor import ModelMonitor
from sinks import StatusStore, write_status_sync
from streams import config, records
from streams.audit import WINDOW_KINDS
from streams.embedded import free_port, stop_process, wait_for_port
from tests.integration.harness import ROOT, drift_traffic, labels_for

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync"]


def need_chromium() -> None:
    if not shutil.which(CHROMIUM):
        message = f"{CHROMIUM} missing (Debian packages chromium, chromium-driver; .ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def drifted_model(redis_url):
    """A model version's window history in Redis, from a real monitor run over drifting traffic."""
    model = f"dash-{uuid.uuid4().hex[:8]}"
    settings = config.Settings().for_model(model).merged(
        {"reference_size": 1000, "window_size": 500, "window_seconds": 36000, "performance_window": 300})
    monitor = ModelMonitor(model, settings)
    events = [records.validate_prediction(e, 0.0) for e in drift_traffic(6000, shift_at=3000, model=model, shift=1.0)]
    labels = labels_for(events, every=2)
    for n, label in enumerate(labels):     # after the shift, one label in four disagrees: accuracy falls
        if 2 * n >= 3000 and n % 4 == 0:
            label["label"] = 1 - label["label"]
    for i in range(0, len(events), 250):
        monitor.add_predictions(events[i:i + 250])
        monitor.add_labels([records.validate_label(label, 0.0) for label in labels[i // 2:(i + 250) // 2]])
    windows = monitor.window_summaries()
    assert any(w["alerts"] for w in windows), "the shift must raise alerts"
    write_status_sync(redis_url, model, "1", {"counts": monitor.versions["1"].counts})

    async def store():
        status = StatusStore(redis_url)
        try:
            for w in windows:
                await status.append_window(w, maxlen=1000)
        finally:
            await status.close()

    asyncio.run(store())
    features = sorted({f for w in windows for f, r in w["features"].items() if r.get("p_value") is not None})
    return model, windows, features


@pytest.fixture(scope="module")
def dashboard_url(redis_url):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "--redis-url", redis_url, "dashboard",
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, timeout=30, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture
def browser(tmp_path):
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()


class Watched:
    """A page with its console errors, page errors and every request it made."""

    def __init__(self, context):
        self.page = context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda r: self.requests.append(r.url))


def rendered(page, div_id: str) -> dict:
    page.wait_for_selector(f"#{div_id} .main-svg", timeout=30_000)
    return page.evaluate(f"""() => {{
        const div = document.getElementById({div_id!r});
        return {{traces: div.data.length, y: div.data[0].y, type: div.data[0].type,
                 svgs: div.querySelectorAll('svg.main-svg').length}};
    }}""")


def test_dashboard_page_renders_the_plots_offline(browser, dashboard_url, drifted_model, tmp_path):
    model, windows, features = drifted_model
    watched = Watched(browser)
    response = watched.page.goto(f"{dashboard_url}/dashboard/{model}", wait_until="load")
    assert response.status == 200
    heat = rendered(watched.page, "heatmap-1")
    assert heat["type"] == "heatmap" and heat["y"] == features and heat["svgs"] >= 1
    assert set(features) >= {"income", "age", "debt", "tenure", "region", "plan"}
    timeline = rendered(watched.page, "timeline-1")
    assert timeline["traces"] >= 3          # rolling metrics, CBPE estimate, alert markers
    histogram = rendered(watched.page, "histogram-1")
    assert histogram["traces"] == 2
    assert watched.page.locator("h3", has_text="Reference vs current: income").count() == 1
    raised = [a for w in windows for a in w["alerts"]]
    commands = watched.page.locator("table.alerts td:last-child code").all_inner_texts()
    assert sorted(commands) == sorted(
        f"driftline audit {a['alert_id']}" + (" --recompute" if a["kind"] in WINDOW_KINDS else "") for a in raised)
    screenshot = tmp_path / "dashboard.png"
    watched.page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 20_000
    if os.environ.get("DRIFTLINE_SCREENSHOT"):      # to refresh docs/dashboard.png
        shutil.copy(screenshot, os.environ["DRIFTLINE_SCREENSHOT"])
    assert watched.errors == []
    assert watched.requests and all(u.startswith("http://127.0.0.1:") for u in watched.requests), watched.requests

    # another feature, chosen by its link
    watched.page.click("nav >> text=region")
    watched.page.wait_for_selector("h3:has-text('Reference vs current: region')")
    assert rendered(watched.page, "histogram-1")["traces"] == 2


def test_unknown_model_or_version_is_a_404_page(browser, dashboard_url, drifted_model):
    model, _, _ = drifted_model
    watched = Watched(browser)
    response = watched.page.goto(f"{dashboard_url}/dashboard/no-such-model")
    assert response.status == 404 and "is not known to driftline" in watched.page.inner_text("body")
    response = watched.page.goto(f"{dashboard_url}/dashboard/{model}?version=9")
    assert response.status == 404 and "has no version '9'" in watched.page.inner_text("body")
    response = watched.page.goto(f"{dashboard_url}/dashboard")
    assert response.status == 200 and watched.page.locator(f"a:text-is('{model}')").count() == 1


def report(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", "--redis-url", redis_url, "report", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_report_is_one_file_that_renders_without_a_network(browser, redis_url, drifted_model, tmp_path):
    model, windows, features = drifted_model
    out = tmp_path / "report.html"
    done = report(redis_url, model, "--version", "1", "--out", str(out))
    assert done.returncode == 0 and f"{len(windows)} windows of {model}" in done.stdout, done
    watched = Watched(browser)
    watched.page.goto(out.as_uri(), wait_until="load")
    assert rendered(watched.page, "heatmap-1")["y"] == features
    assert watched.errors == [] and all(u.startswith("file://") for u in watched.requests), watched.requests

    # a period: only the windows ending in it
    middle = windows[len(windows) // 2]["end"]
    done = report(redis_url, model, "--since", str(middle), "--out", str(out))
    assert done.returncode == 0 and f"{len([w for w in windows if w['end'] >= middle])} windows" in done.stdout

    empty = tmp_path / "empty.html"
    done = report(redis_url, model, "--since", "2100-01-01T00:00:00+00:00", "--out", str(empty))
    assert done.returncode == 0 and "no window of" in done.stdout
    assert f"No window of {model} closed in this period" in empty.read_text()

    done = report(redis_url, "no-such-model", "--out", str(tmp_path / "x.html"))
    assert done.returncode == 1 and "is not known to driftline" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.html").exists()
