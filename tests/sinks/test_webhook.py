"""WebhookSink against a real aiohttp server on 127.0.0.1."""
from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiohttp import web

from sinks import SinkRouter, WebhookError, WebhookSink, slack_payload
from tests.sinks.helpers import CollectSink, make_record, wait_until

FAST = {"backoff_base": 0.02, "backoff_cap": 0.1}


@pytest.mark.asyncio
async def test_router_delivers_everything_in_order_once_the_webhook_recovers(http_server):
    failures = 3
    received: list[dict] = []
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls <= failures:
            return web.Response(status=500, text="boom")
        assert request.headers["Authorization"] == "Bearer t"
        assert request.content_type == "application/json"
        assert request.query["key"] == "k1"
        received.append(orjson.loads(await request.read()))
        return web.Response(status=204)

    url = await http_server(handler) + "/hooks/secret-path?key=k1"
    sink = WebhookSink(url, headers={"Authorization": "Bearer t"})
    router = SinkRouter([(sink, None)], **FAST)
    await asyncio.wait_for(router.start(), 1)
    records = [make_record(i) for i in range(8)]
    for record in records:
        router.publish(record)
    assert await asyncio.wait_for(router.flush(10), 12) is True
    assert received == records
    stats = router.stats()["webhook"]
    assert (stats["delivered"], stats["failed_attempts"], stats["dropped"], stats["pending"]) == (
        8, failures, 0, 0)
    assert "HTTP 500" in stats["last_error"]
    assert "secret-path" not in stats["last_error"] and "k1" not in stats["last_error"]
    await asyncio.wait_for(router.stop(), 5)
    assert sink._session is None


@pytest.mark.asyncio
async def test_a_hanging_webhook_blocks_neither_publish_nor_other_sinks(http_server):
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(release.wait(), 10)
        except asyncio.TimeoutError:
            pass
        return web.Response(status=200)

    url = await http_server(hang)
    slow = WebhookSink(url, timeout=0.2)
    other = CollectSink("other")
    router = SinkRouter([(slow, None), (other, None)], **FAST)
    await asyncio.wait_for(router.start(), 1)
    started = time.perf_counter()
    for i in range(50):
        router.publish(make_record(i))
    assert time.perf_counter() - started < 0.05
    await wait_until(lambda: len(other.seen) == 50, timeout=5)
    await wait_until(lambda: router.stats()["webhook"]["failed_attempts"] >= 2, timeout=5)
    stats = router.stats()["webhook"]
    assert stats["delivered"] == 0 and stats["pending"] == 50
    assert "timed out" in stats["last_error"]
    assert [r["seq"] for r in other.seen] == list(range(50))
    release.set()
    await asyncio.wait_for(router.stop(flush_timeout=0.1), 5)


@pytest.mark.asyncio
async def test_unreachable_webhook_raises_a_webhook_error():
    sink = WebhookSink("http://127.0.0.1:1/hook?token=zzz", timeout=1)
    with pytest.raises(WebhookError) as raised:
        await asyncio.wait_for(sink(make_record(0)), 5)
    assert "zzz" not in str(raised.value)
    await asyncio.wait_for(sink.close(), 5)


@pytest.mark.asyncio
async def test_slack_body_is_a_small_slack_message(http_server):
    bodies: list[dict] = []

    async def handler(request: web.Request) -> web.Response:
        bodies.append(orjson.loads(await request.read()))
        return web.Response(text="ok")

    sink = WebhookSink(await http_server(handler), slack=True)
    assert sink.name == "slack"
    record = make_record(4, severity="critical", feature="amount <&> tips",
                         histogram=list(range(5000)), psi=0.4567, ks_p_value=1e-9,
                         password="hunter2", note="multi\nline")
    await asyncio.wait_for(sink(record), 5)
    await asyncio.wait_for(sink.close(), 5)

    body, = bodies
    assert body == slack_payload(record)
    assert set(body) == {"text", "blocks"}
    assert body["text"] == ("[CRITICAL] input_drift on fraud v3: feature=amount <&> tips, "
                            "statistic=0.31, seq=4, psi=0.4567")
    section, context = body["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "amount &lt;&amp;&gt; tips" in section["text"]["text"]
    assert context["type"] == "context"
    assert context["elements"][0]["text"] == "2023-11-14 22:13:24 UTC · id `a-0004`"
    encoded = orjson.dumps(body)
    assert len(encoded) < 1000
    assert b"hunter2" not in encoded and b"\\n" not in encoded
