"""Fixtures for the reliability tests: real workers, the session broker and Redis, small windows.

Every worker a test starts goes through ``start_worker`` so it is stopped (SIGTERM, then
SIGKILL, by its own PID) when the test ends, whatever happened.
"""
from __future__ import annotations

import os
import uuid

import pytest

from tests.integration.harness import SMALL_WINDOWS, WorkerProcess


def pytest_addoption(parser):
    # Registered when pytest is pointed at this folder (an "initial" conftest); elsewhere the
    # environment variable DRIFTLINE_LONG=1 does the same.
    parser.addoption("--long", action="store_true", default=False,
                     help="reliability: run the 2M-event memory test instead of the bounded CI run")


@pytest.fixture
def long_run(request) -> bool:
    return bool(request.config.getoption("--long", default=False)) or os.environ.get("DRIFTLINE_LONG") == "1"


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def write_config(tmp_path):
    def write(text: str = SMALL_WINDOWS, name: str = "driftline.toml"):
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


@pytest.fixture
def start_worker(tmp_path):
    """``start_worker(env, config=..., tag=...)`` -> a ready WorkerProcess, stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(env: dict, config=None, tag: str = "worker", ready: bool = True, timeout: float = 60.0):
        worker = WorkerProcess(env, tmp_path, config=config, tag=tag)
        started.append(worker)
        if ready:
            worker.wait_ready(timeout)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.terminate(timeout=20)
        elif not worker._log.closed:
            worker._log.close()


# every record the reliability tests leave on the session broker's alerts, retrain and dead-letter
# topics validates against schemas/ (the same session check as the integration tests')
from tests.integration.conftest import outputs_follow_the_schemas  # noqa: E402,F401
