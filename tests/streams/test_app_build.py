"""streams.app builds a worker from the settings it is given: nothing is read or built at import.

No broker: building a Faust app, its topics, table, agent and timers contacts nothing until
the app starts.
"""
from __future__ import annotations

import importlib
from types import SimpleNamespace

from faust.transport.drivers import aiokafka as driver

from streams import config, transport
from streams.config import Settings
from streams.monitor_stage import MonitorStage


def test_importing_the_module_reads_no_settings(monkeypatch):
    def refuse():
        raise AssertionError("settings read at import")

    monkeypatch.setattr(config, "current", refuse)
    import streams.app

    importlib.reload(streams.app)            # a fresh import: nothing reads config.current()
    assert not hasattr(streams.app, "worker") and not hasattr(streams.app, "settings")


def test_build_app_wires_what_the_settings_say_and_two_builds_share_nothing():
    from streams.app import build_app

    a = build_app(Settings(app_id="alpha", partitions=2, fetch_max_wait_ms=37, tick_seconds=3.0,
                           web_enabled=False, sinks=[]))
    b = build_app(Settings(app_id="beta", sinks=[]))
    assert (a.app.conf.id, b.app.conf.id) == ("alpha", "beta")
    assert a.events_topic.get_topic_name() == "alpha-monitor-events" and a.events_topic.partitions == 2
    assert a.table.name == "monitor-state" and a.state.table is a.table
    assert [agent.channel for agent in a.app.agents.values()] == [a.events_topic]
    assert isinstance(a.stage, MonitorStage) and a.stage.worker is a.worker
    assert a.stage.deadletter_topic is a.deadletter_topic
    assert a.worker.outputs == {"alert": a.alerts_topic, "retrain": a.retrain_topic}
    assert a.worker is not b.worker and a.worker.ledger is not b.worker.ledger
    hooks = a.app.driftline_consumer
    assert hooks == transport.ConsumerHooks(fetch_max_wait_ms=37, ledger=a.worker.ledger,
                                            on_log_recreated=a.log_recreated,
                                            from_start=frozenset({"alpha-monitor-events"}))
    assert a.ingest.topic_identity is not None and a.ingest.topic_identity is not b.ingest.topic_identity
    assert b.app.driftline_consumer.fetch_max_wait_ms == 100
    assert a.ingest in a.app._extra_services          # started with the app (app.service)
    assert len(a.app._app_tasks) == 3                   # the tick and status timers, the sinks' start


def test_the_faust_consumer_takes_its_fetch_wait_from_the_app(monkeypatch):
    monkeypatch.setattr(driver.AIOKafkaConsumerThread, "_create_worker_consumer",
                        lambda self, transport: SimpleNamespace(_fetch_max_wait_ms=1500))
    thread = transport.ConsumerThread.__new__(transport.ConsumerThread)
    thread.app = SimpleNamespace(driftline_consumer=transport.ConsumerHooks(fetch_max_wait_ms=37))
    assert thread._create_worker_consumer(None)._fetch_max_wait_ms == 37
    thread.app = SimpleNamespace()          # a Faust app not built by streams.app: the default
    assert thread._create_worker_consumer(None)._fetch_max_wait_ms == transport.DEFAULT_FETCH_MAX_WAIT_MS


def test_faust_a_streams_app_builds_the_app_once_from_the_current_settings(monkeypatch):
    import streams.app

    monkeypatch.setattr(config, "current", lambda: Settings(app_id="from-current", web_enabled=False, sinks=[]))
    streams.app.current.cache_clear()
    try:
        from faust.cli.base import find_app

        app = find_app("streams.app")
        assert app.conf.id == "from-current" and find_app("streams.app") is app
        assert streams.app.current().app is app
    finally:
        streams.app.current.cache_clear()
