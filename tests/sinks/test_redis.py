"""RedisSink and StatusStore against a real redis-server on 127.0.0.1."""
from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from sinks import (
    RedisSink, SinkRouter, StatusStore, StoreUnavailable, get_reference_sync, put_reference_sync,
    read_status_sync, write_status_sync,
)
from streams.embedded import free_port, start_redis
from tests.sinks.helpers import make_record, wait_until


@pytest.mark.asyncio
async def test_redis_sink_writes_stream_entry_and_audit_hash(redis_url, redis_client):
    sink = RedisSink(redis_url, stream="test:alerts", maxlen=1000, audit_ttl=3600)
    record = make_record(1, severity="critical", evidence={"psi": [0.1, 0.2]})
    retrain = {"event_id": "r-1", "model": "fraud", "model_version": 3, "kind": "retrain",
               "severity": "info", "created_at": 1.5}
    await asyncio.wait_for(sink(record), 5)
    await asyncio.wait_for(sink(retrain), 5)
    await asyncio.wait_for(sink.close(), 5)

    entries = redis_client.xrange("test:alerts")
    assert len(entries) == 2
    fields = entries[0][1]
    assert orjson.loads(fields[b"json"]) == record
    assert (fields[b"model"], fields[b"kind"], fields[b"severity"]) == (b"fraud", b"input_drift", b"critical")
    assert orjson.loads(entries[1][1][b"json"]) == retrain

    audit = redis_client.hgetall("driftline:alert:a-0001")
    assert orjson.loads(audit[b"json"]) == record
    assert audit[b"created_at"] == b"1700000001.0"
    assert 3500 < redis_client.ttl("driftline:alert:a-0001") <= 3600
    assert orjson.loads(redis_client.hget("driftline:alert:r-1", "json")) == retrain


@pytest.mark.asyncio
async def test_redis_sink_trims_the_stream(redis_url, redis_client):
    sink = RedisSink(redis_url, stream="test:trim", maxlen=10, audit_ttl=None)
    for i in range(300):
        await asyncio.wait_for(sink(make_record(i)), 5)
    await asyncio.wait_for(sink.close(), 5)
    # Approximate trimming keeps at least maxlen and at most about one macro node more.
    assert 10 <= redis_client.xlen("test:trim") < 300
    assert redis_client.ttl("driftline:alert:a-0000") == -1  # audit_ttl=None: no expiry


@pytest.mark.asyncio
async def test_status_store_round_trips(redis_url, redis_client):
    store = StatusStore(redis_url)
    before = time.time()
    await asyncio.wait_for(store.write_status("fraud", 3, {"state": "drifting", "alerts": 2}), 5)
    await asyncio.wait_for(store.write_status("churn", "v1", {"state": "ok"}), 5)
    await asyncio.wait_for(store.write_status("fraud", 3, {"state": "ok", "alerts": 2}), 5)  # overwrite
    statuses = await asyncio.wait_for(store.read_all(), 5)
    assert [(s["model"], s["model_version"], s["state"]) for s in statuses] == [
        ("churn", "v1", "ok"), ("fraud", 3, "ok")]
    assert all(before <= s["updated_at"] <= time.time() for s in statuses)
    assert redis_client.smembers("driftline:models") == {b"fraud:3", b"churn:v1"}
    assert set(redis_client.hgetall("driftline:status:fraud:3")) == {b"json", b"updated_at"}

    profile = {"features": {"amount": {"bins": [0, 10, 100], "counts": [5, 3]}}, "n": 8}
    assert await asyncio.wait_for(store.get_reference("fraud", 3), 5) is None
    await asyncio.wait_for(store.put_reference("fraud", 3, profile), 5)
    assert await asyncio.wait_for(store.get_reference("fraud", 3), 5) == profile
    assert orjson.loads(redis_client.get("driftline:reference:fraud:3")) == profile
    await asyncio.wait_for(store.close(), 5)

    # The CLI's synchronous helpers see the same data.
    assert read_status_sync(redis_url) == statuses
    assert get_reference_sync(redis_url, "fraud", 3) == profile
    put_reference_sync(redis_url, "churn", "v1", {"n": 1})
    assert get_reference_sync(redis_url, "churn", "v1") == {"n": 1}
    write_status_sync(redis_url, "churn", "v1", {"state": "stale"})
    assert [s["state"] for s in read_status_sync(redis_url)] == ["stale", "ok"]


@pytest.mark.asyncio
async def test_status_store_writes_many_versions_in_one_round_trip(redis_url, redis_client):
    store = StatusStore(redis_url, prefix="many")
    entries = [(f"m{i:03d}", "1", {"state": "ok", "n": i}) for i in range(300)] + [("m000", "2", {"state": "new"})]
    before = redis_client.info("stats")["total_commands_processed"]
    await asyncio.wait_for(store.write_statuses(entries), 5)
    commands = redis_client.info("stats")["total_commands_processed"] - before
    await asyncio.wait_for(store.write_statuses([]), 5)      # nothing to write: no error
    statuses = await asyncio.wait_for(store.read_all(), 5)
    await asyncio.wait_for(store.close(), 5)
    assert [(s["model"], s["model_version"], s.get("n"), s["state"]) for s in statuses] == sorted(
        (m, v, st.get("n"), st["state"]) for m, v, st in entries)
    assert len(redis_client.smembers("many:models")) == 301
    # an HSET per version and one SADD for all, plus the connection's handshake (write_status: MULTI,
    # HSET, SADD, EXEC for each of them, 1,204)
    assert commands < 301 + 1 + 10


@pytest.mark.asyncio
async def test_status_store_skips_unreadable_entries(redis_url, redis_client):
    store = StatusStore(redis_url)
    await asyncio.wait_for(store.write_status("fraud", 1, {"state": "ok"}), 5)
    redis_client.sadd("driftline:models", "gone:1", "broken:1")
    redis_client.hset("driftline:status:broken:1", mapping={"json": b"{not json", "updated_at": "1"})
    statuses = await asyncio.wait_for(store.read_all(), 5)
    assert [s["model"] for s in statuses] == ["fraud"]
    redis_client.set("driftline:reference:fraud:1", b"{not json")
    with pytest.raises(StoreUnavailable, match="unreadable"):
        await asyncio.wait_for(store.get_reference("fraud", 1), 5)
    await asyncio.wait_for(store.close(), 5)


@pytest.mark.asyncio
async def test_status_store_fails_fast_with_a_connection_error_when_redis_is_down():
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"  # nothing listens there
    store = StatusStore(url)
    started = time.perf_counter()
    for call in (store.read_all(), store.write_status("m", 1, {}), store.get_reference("m", 1),
                 store.put_reference("m", 1, {})):
        with pytest.raises(ConnectionError) as raised:
            await asyncio.wait_for(call, 10)
        assert "s3cret" not in str(raised.value)
    for call in (lambda: read_status_sync(url), lambda: get_reference_sync(url, "m", 1),
                 lambda: put_reference_sync(url, "m", 1, {})):
        with pytest.raises(StoreUnavailable):
            call()
    assert time.perf_counter() - started < 5
    await asyncio.wait_for(store.close(), 5)


@pytest.mark.asyncio
async def test_status_store_times_out_on_a_server_that_never_answers():
    async def accept_and_ignore(reader, writer):
        await reader.read(-1)  # keep the socket open until the client gives up

    server = await asyncio.start_server(accept_and_ignore, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = StatusStore(f"redis://127.0.0.1:{port}/0", timeout=0.3)
    started = time.perf_counter()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(store.read_all(), 10)
    assert time.perf_counter() - started < 2.5
    with pytest.raises(StoreUnavailable):
        await asyncio.to_thread(read_status_sync, f"redis://127.0.0.1:{port}/0", 0.3)
    assert time.perf_counter() - started < 5
    await asyncio.wait_for(store.close(), 5)
    server.close()


@pytest.mark.asyncio
async def test_redis_outage_buffers_in_order_and_recovers():
    port = free_port()
    redis_service = start_redis(port)
    url = redis_service.url
    stream = "test:outage"
    sink = RedisSink(url, stream=stream, timeout=0.5)
    router = SinkRouter([(sink, None)], backoff_base=0.05, backoff_cap=0.2)
    try:
        await asyncio.wait_for(router.start(), 1)
        router.publish(make_record(0))
        assert await asyncio.wait_for(router.flush(5), 6)
        assert router.stats()["redis"]["delivered"] == 1

        redis_service.stop()  # the outage; the sink still holds a pooled connection
        started = time.perf_counter()
        for i in range(1, 21):
            router.publish(make_record(i))
        assert time.perf_counter() - started < 0.05  # monitoring never waits for Redis
        await wait_until(lambda: router.stats()["redis"]["failed_attempts"] >= 3, timeout=10)
        stats = router.stats()["redis"]
        assert (stats["pending"], stats["dropped"], stats["delivered"]) == (20, 0, 1)
        assert "ConnectionError" in stats["last_error"]

        redis_service = start_redis(port)  # back, same port, empty (no persistence)
        assert await asyncio.wait_for(router.flush(10), 12) is True
        stats = router.stats()["redis"]
        assert (stats["pending"], stats["dropped"], stats["delivered"]) == (0, 0, 21)

        import redis

        client = redis.Redis.from_url(url)
        try:
            seqs = [orjson.loads(f[b"json"])["seq"] for _, f in client.xrange(stream)]
            assert seqs == list(range(1, 21))
            assert client.exists("driftline:alert:a-0020") == 1
        finally:
            client.close()
    finally:
        await asyncio.wait_for(router.stop(flush_timeout=1), 10)
        redis_service.stop()


def test_dedup_guard_survives_a_redis_restart_without_letting_a_repeat_through(tmp_path):
    """A real redis-server restarted under the guard: the pooled connection it closed is
    retried, a mark it missed while down is written later, and ids this process sent are
    recognised even with Redis away."""
    import asyncio

    from sinks.dedup import DedupGuard
    from streams.embedded import start_redis

    first = start_redis()
    port = first.port
    guard = DedupGuard(first.url, prefix="t:")

    async def scenario():
        assert not await guard.delivered_before("a")
        await guard.mark_delivered("a")
        first.stop()
        await guard.mark_delivered("b")                 # Redis down: kept to mark later
        assert await guard.delivered_before("b")        # this process sent it
        second = start_redis(port)
        try:
            fresh = DedupGuard(second.url, prefix="t:")
            assert not await fresh.delivered_before("c")  # a new server: nothing there yet
            assert not await guard.delivered_before("c")  # reconnects, and writes the missed mark
            assert await fresh.delivered_before("b")      # the mark written after the restart
            await fresh.close()
        finally:
            await guard.close()
            second.stop()

    asyncio.run(scenario())
