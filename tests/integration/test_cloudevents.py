"""envelope = "cloudevents": alerts and retrain requests reach a real webhook receiver and a real topic
as CloudEvents, decoded here by the CloudEvents SDK (not by driftline's code)."""
from __future__ import annotations

import asyncio
import threading
from datetime import datetime

import pytest
from aiohttp import web
from cloudevents.http import from_http
from cloudevents.kafka import KafkaMessage, from_binary, from_structured

import schemas
from streams.embedded import free_port
from tests.integration.harness import (WorkerProcess, bootstrap, drift_traffic, isolated_env, produce, topic,
                                       wait_processed, wait_until)
from tests.schemas.outputs import check_topics, read_output_topics

pytestmark = pytest.mark.integration


class Receiver:
    """An aiohttp webhook receiver on 127.0.0.1, in a thread of its own; keeps (headers, body) per POST."""

    def __init__(self):
        self.port = free_port()
        self.requests: list[tuple[dict, bytes]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    async def _hook(self, request):
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(status=202)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.ready.set()
        self.loop.run_forever()

    def close(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _expected_type(record: dict) -> str:
    return "io.driftline.retrain" if record.get("kind") == "retrain" else f"io.driftline.alert.{record['kind']}"


def _check_event(event, source: str) -> dict:
    record = event.get_data()
    retrain = record.get("kind") == "retrain"
    assert event["specversion"] == "1.0"
    assert event["id"] == (record["event_id"] if retrain else record["alert_id"])
    assert event["type"] == _expected_type(record)
    assert event["source"] == source
    assert event["dataschema"] == schemas.uri("retrain" if retrain else "alerts")
    assert event["datacontenttype"] == "application/json"
    assert event["subject"] == record["model"]
    stamp = record["requested_at"] if retrain else record["created_at"]
    assert abs(datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp() - stamp) < 1e-3
    return record


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_alerts_and_retrain_requests_as_cloudevents_on_a_webhook_and_a_topic(broker_url, redis_url, tmp_path,
                                                                            unique, mode):
    receiver = Receiver()
    env = isolated_env(broker_url, redis_url)
    source = f"/driftline/{env['DRIFTLINE_APP_ID']}"
    config = tmp_path / "driftline.toml"
    config.write_text(f"""
[defaults]
reference_size = 1000
window_size = 500
window_seconds = 36000

[[sinks]]
type = "kafka"
envelope = "cloudevents"
mode = "{mode}"
[[sinks]]
type = "webhook"
url = "http://127.0.0.1:{receiver.port}/hook"
envelope = "cloudevents"
""")
    worker = WorkerProcess(env, tmp_path, config=config)
    model, n = f"ce-{unique}", 3000
    try:
        worker.wait_ready()
        events = list(drift_traffic(n, shift_at=1500, model=model, shift=1.5))
        produce(broker_url, topic(env, "predictions"), [events[i:i + 50] for i in range(0, n, 50)],
                key=model.encode())   # one partition: the reference is the first events sent
        wait_processed(redis_url, {model: n})
        names = {topic(env, "alerts"), topic(env, "retrain")}

        def delivered():
            found = read_output_topics(bootstrap(broker_url), only=names, idle=2.0)
            sent = sum(len(rows) for rows in found.values())
            complete = found.get(topic(env, "retrain")) and len(receiver.requests) >= sent > 0
            return found if complete else None

        found = wait_until(delivered, timeout=90, interval=1, what="alerts, a retrain request and their webhook POSTs")
    finally:
        worker.terminate()
        receiver.close()

    # the topic: decoded by the SDK's Kafka binding
    on_topic = []
    for name, rows in found.items():
        for value, headers in rows:
            message = KafkaMessage(headers=headers, key=model.encode(), value=value)
            event = from_binary(message) if mode == "binary" else from_structured(message)
            on_topic.append(_check_event(event, source))
        if mode == "binary":
            assert all(h["content-type"] == b"application/json" for _, h in rows)
    kinds = {r["kind"] for r in on_topic}
    assert "input_drift" in kinds and "retrain" in kinds
    assert check_topics(found)[1] == []          # and the data follows the schemas
    # the webhook: structured mode over HTTP, the same records
    assert all(h["Content-Type"] == "application/cloudevents+json" for h, _ in receiver.requests)
    posted = [_check_event(from_http(h, body), source) for h, body in receiver.requests]
    key = lambda r: r.get("alert_id") or r["event_id"]  # noqa: E731
    assert sorted(map(key, posted)) == sorted(map(key, on_topic))
    assert {key(r): r for r in posted} == {key(r): r for r in on_topic}
