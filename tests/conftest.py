"""Session fixtures: a REAL Kafka-compatible broker and a REAL Redis server.

Broker, in order of preference:
1. ``DRIFTLINE_TEST_BROKER`` (e.g. ``kafka://10.0.0.5:9092``): an external cluster;
2. testcontainers' Kafka when a Docker engine answers;
3. the bundled Tansu broker on a free 127.0.0.1 port (the default on build machines).
Redis: ``DRIFTLINE_TEST_REDIS_URL`` if set, otherwise a redis-server on a free port.
"""
from __future__ import annotations

import os

import pytest

from streams.embedded import start_broker, start_redis


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory):
    external = os.environ.get("DRIFTLINE_TEST_BROKER")
    if external:
        yield external
        return
    if os.environ.get("DRIFTLINE_TEST_DOCKER") == "1" and _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield "kafka://" + kafka.get_bootstrap_server()
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    broker = start_broker(log_path=log)
    try:
        yield broker.url
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def redis_service():
    if os.environ.get("DRIFTLINE_TEST_REDIS_URL"):
        yield None
        return
    service = start_redis()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def redis_url(redis_service):
    return os.environ.get("DRIFTLINE_TEST_REDIS_URL") or redis_service.url


@pytest.fixture
def redis_client(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()
