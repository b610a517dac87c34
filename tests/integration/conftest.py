from __future__ import annotations

import uuid

import pytest

from tests.integration.harness import SMALL_WINDOWS, WorkerProcess, isolated_env


@pytest.fixture
def small_config(tmp_path):
    path = tmp_path / "driftline.toml"
    path.write_text(SMALL_WINDOWS)
    return path


@pytest.fixture
def unique():
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def shared_worker(broker_url, redis_url, tmp_path_factory):
    """One worker for a module's tests (each test uses its own model names)."""
    tmp = tmp_path_factory.mktemp("worker")
    config = tmp / "driftline.toml"
    config.write_text(SMALL_WINDOWS)
    env = isolated_env(broker_url, redis_url)
    worker = WorkerProcess(env, tmp, config=config)
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.terminate()


@pytest.fixture(scope="session", autouse=True)
def outputs_follow_the_schemas(broker_url):
    """After the session's integration tests: every record on every alerts, retrain and dead-letter
    topic of the shared broker validates against its schema (schemas/), bare or inside a CloudEvent."""
    from tests.integration.harness import bootstrap
    from tests.schemas.outputs import check_topics, read_output_topics

    yield
    checked, problems = check_topics(read_output_topics(bootstrap(broker_url)))
    assert not problems, f"{len(problems)} of {checked} output records break their schema:\n" + "\n".join(problems[:20])
