"""TopicSink, LogSink, JsonlSink, the base helpers and build_sinks."""
from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from sinks import (
    JsonlSink, LogSink, RedisSink, Sink, SinkFilter, TopicSink, WebhookSink, build_sinks,
    redact_url, severity_rank,
)
from tests.sinks.helpers import CollectSink, make_record

SECRET_RECORD = make_record(
    7,
    webhook_url="https://hooks.slack.com/services/T000/B000/XSECRETX?token=qtoken",
    password="hunter2",
    note="line one\nline two",
    psi=0.123456,
)


@pytest.mark.asyncio
async def test_topic_sink_keys_by_model_and_sends_orjson():
    sent = []

    async def send(key: bytes, value: bytes) -> None:
        sent.append((key, value))

    sink = TopicSink(send)
    await asyncio.wait_for(sink(make_record(1, model="churn")), 1)
    await asyncio.wait_for(sink.close(), 1)
    assert sink.name == "kafka"
    assert sent == [(b"churn", orjson.dumps(make_record(1, model="churn")))]


@pytest.mark.asyncio
async def test_log_sink_writes_one_line_without_secrets(caplog):
    sink = LogSink()
    with caplog.at_level(logging.INFO, logger="driftline.alerts"):
        await asyncio.wait_for(sink(SECRET_RECORD), 1)
        await asyncio.wait_for(sink(make_record(8, severity="critical")), 1)
    first, second = caplog.records
    text = first.getMessage()
    assert "\n" not in text
    assert first.levelno == logging.WARNING and second.levelno == logging.ERROR
    for expected in ("kind=input_drift", "model=fraud", "model_version=3", "severity=warning",
                     "id=a-0007", "feature='amount'", "psi=0.1235"):
        assert expected in text
    for secret in ("XSECRETX", "qtoken", "hunter2", "hooks.slack.com", "line two"):
        assert secret not in caplog.text


@pytest.mark.asyncio
async def test_jsonl_sink_appends_parseable_lines(tmp_path):
    path = tmp_path / "nested" / "alerts.jsonl"
    sink = JsonlSink(path)
    records = [make_record(i) for i in range(3)] + [SECRET_RECORD]
    for record in records:
        await asyncio.wait_for(sink(record), 2)
    await asyncio.wait_for(sink.close(), 2)
    await asyncio.wait_for(JsonlSink(path)(make_record(9)), 2)  # reopening appends
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == records + [make_record(9)]


def test_sinks_satisfy_the_protocol(tmp_path):
    async def send(key, value):
        return None

    for sink in (TopicSink(send), LogSink(), JsonlSink(tmp_path / "a.jsonl"),
                 RedisSink("redis://127.0.0.1:1/0"), WebhookSink("http://127.0.0.1:1/"),
                 CollectSink()):
        assert isinstance(sink, Sink)


def test_severity_rank_and_filter():
    assert [severity_rank(s) for s in ("info", "warning", "critical")] == [0, 1, 2]
    with pytest.raises(ValueError):
        severity_rank("fatal")
    with pytest.raises(ValueError):
        SinkFilter(min_severity="fatal")
    warn = SinkFilter(min_severity="warning")
    assert [warn.matches({"severity": s}) for s in ("info", "warning", "critical", "bogus")] == [
        False, True, True, False]
    assert SinkFilter(kinds="retrain").kinds == frozenset({"retrain"})
    assert SinkFilter().matches({})


def test_redact_url_drops_credentials_paths_and_queries():
    assert redact_url("https://u:p@hooks.slack.com/services/T/B/X?token=t") == "https://hooks.slack.com/…"
    assert redact_url("redis://:pw@127.0.0.1:6380/2") == "redis://127.0.0.1:6380/…"
    assert "SECRET" not in repr(WebhookSink("https://example.com/hook/SECRET?k=SECRET"))
    assert "pw" not in repr(RedisSink("redis://:pw@127.0.0.1:6380/0"))


@pytest.mark.asyncio
async def test_build_sinks_from_config(tmp_path):
    sent = []

    async def send(key, value):
        sent.append(key)

    router = build_sinks([
        {"type": "kafka"},
        {"type": "jsonl", "path": str(tmp_path / "drift.jsonl"), "kinds": ["input_drift"]},
        {"type": "jsonl", "path": str(tmp_path / "critical.jsonl"), "min_severity": "critical"},
        {"type": "log", "min_severity": "warning"},
        {"type": "webhook", "url": "http://127.0.0.1:1/x", "slack": True, "name": "oncall"},
        {"type": "redis", "url": "redis://127.0.0.1:1/0", "audit_ttl": 60},
    ], send=send, maxsize=50)
    assert list(router.stats()) == ["kafka", "jsonl", "jsonl-2", "log", "oncall", "redis"]
    names = {sink.name: sink for sink in router.sinks}
    assert names["oncall"].slack is True and names["redis"].audit_ttl == 60
    assert router.maxsize == 50

    await asyncio.wait_for(router.start(), 1)
    router.publish(make_record(0, kind="input_drift", severity="warning"))
    router.publish(make_record(1, kind="performance", severity="critical"))
    await asyncio.wait_for(router.flush(0.5), 2)
    await asyncio.wait_for(router.stop(flush_timeout=0), 5)
    assert sent == [b"fraud", b"fraud"]
    drift = [orjson.loads(x)["seq"] for x in (tmp_path / "drift.jsonl").read_bytes().splitlines()]
    critical = [orjson.loads(x)["seq"] for x in (tmp_path / "critical.jsonl").read_bytes().splitlines()]
    assert (drift, critical) == ([0], [1])


@pytest.mark.parametrize("entry, message", [
    ({"type": "smtp"}, "not one of"),
    ({"type": "webhook"}, "needs"),
    ({"type": "jsonl", "path": "x", "colour": "red"}, "unknown option"),
    ({"type": "kafka"}, "send callable"),
    ({"type": "log", "min_severity": "loud"}, "unknown severity"),
])
def test_build_sinks_rejects_bad_config(entry, message):
    with pytest.raises(ValueError, match=message):
        build_sinks([entry])
