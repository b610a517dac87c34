"""A live worker delivering to a flaky webhook, a JSONL file and Redis; audit recomputes an alert."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import orjson
import pytest
from aiohttp import web

from streams.embedded import free_port
from tests.integration.harness import ROOT, Reader, WorkerProcess, drift_traffic, isolated_env, produce, topic

pytestmark = pytest.mark.integration


class FlakyWebhook:
    """A real HTTP server on 127.0.0.1 that answers 503 to its first ``failures`` requests."""

    def __init__(self, failures: int):
        self.failures, self.port = failures, free_port()
        self.received: list = []
        self.attempts = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request):
        self.attempts += 1
        if self.attempts <= self.failures:
            return web.Response(status=503)
        self.received.append(await request.json())
        return web.Response(status=200)

    def _run(self):
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_flaky_webhook_gets_every_alert_and_audit_recomputes_the_evidence(broker_url, redis_url, tmp_path, unique):
    model, n, k = f"sinks-{unique}", 4000, 2000
    with FlakyWebhook(failures=3) as hook:
        config = tmp_path / "driftline.toml"
        config.write_text(f"""
[defaults]
reference_size = 1000
window_size = 500
window_seconds = 36000
[[sinks]]
type = "redis"
[[sinks]]
type = "webhook"
url = "http://127.0.0.1:{hook.port}/hook"
[[sinks]]
type = "jsonl"
path = "{tmp_path / 'alerts.jsonl'}"
""")
        env = isolated_env(broker_url, redis_url)
        worker = WorkerProcess(env, tmp_path, config=config)
        try:
            worker.wait_ready()
            events = list(drift_traffic(n, shift_at=k, model=model, shift=1.0))
            produce(broker_url, topic(env, "predictions"), [events[i:i + 100] for i in range(0, n, 100)],
                    key=model.encode())   # one partition: the reference is the first events sent
            reader = Reader(broker_url, topic(env, "alerts"))
            alerts = reader.poll_until(lambda r: any(a["kind"] == "input_drift" for a in r), timeout=90)
            alerts = reader.drain(idle=4.0)
            reader.close()
            kafka_ids = [a["alert_id"] for a in alerts if a["model"] == model]
            assert kafka_ids, "no alerts on the topic"
            deadline = time.monotonic() + 30   # the webhook failed first, then recovered: it gets them all
            def delivered():
                return [a["alert_id"] for a in hook.received if "alert_id" in a]

            while time.monotonic() < deadline and len(delivered()) < len(kafka_ids):
                time.sleep(0.2)
            assert delivered() == kafka_ids
            assert hook.attempts == len(hook.received) + 3   # retrain requests are delivered too
            lines = [orjson.loads(line) for line in (tmp_path / "alerts.jsonl").read_bytes().splitlines()]
            assert [a["alert_id"] for a in lines if a.get("alert_id")] == kafka_ids
            assert worker.proc.poll() is None

            drift = next(a for a in alerts if a["kind"] == "input_drift")
            cli = [sys.executable, "-m", "streams.cli", "--config", str(config)]
            result = subprocess.run(cli + ["audit", drift["alert_id"], "--recompute"], cwd=ROOT, env=worker.env,
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
            assert "income" in result.stdout and "NO" not in result.stdout.split("recomputed from")[-1]
            status = subprocess.run(cli + ["status", "--json"], cwd=ROOT, env=worker.env, capture_output=True,
                                    text=True, timeout=30)
            mine = [s for s in orjson.loads(status.stdout) if s["model"] == model]
            assert mine and mine[0]["counts"]["predictions"] == n
            assert "income" in mine[0]["last_window"]["drifted_features"] or mine[0]["active_conditions"]
        finally:
            worker.terminate()
