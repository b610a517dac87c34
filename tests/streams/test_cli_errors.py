"""Errors a user causes are one or two clear lines and a non-zero exit, within seconds (issue 12, item 2).

Each case runs ``driftline`` as a user does, in a process of its own, against addresses where
nothing listens (a port this test reserved and closed), so the Kafka and Redis clients' own
retries would show if they were reached.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration   # real processes: in `make test`, not `make test-fast`


def run(args, tmp_path, **env):
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env={**base, **env})
    return result, time.monotonic() - started


@pytest.fixture
def dead_broker():
    return f"kafka://127.0.0.1:{free_port()}"


@pytest.fixture
def dead_redis():
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.mark.parametrize("command", [["worker"], ["tail", "alerts"], ["simulate", "--events", "10"]])
def test_unreachable_broker(tmp_path, dead_broker, dead_redis, command):
    result, took = run(command, tmp_path, DRIFTLINE_BROKER=dead_broker, DRIFTLINE_REDIS_URL=dead_redis)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and took < 10, (took, result.stderr[-2000:])
    assert lines[0] == (f"driftline: cannot reach the Kafka broker at {dead_broker.split('://')[1]} "
                        f"(connection refused).")
    assert len(lines) == 2 and "--broker" in lines[1] and "DRIFTLINE_BROKER" in lines[1]
    assert list(tmp_path.iterdir()) == []     # nothing written where it was started


@pytest.mark.parametrize("command", [["status"], ["audit", "0123456789ab"], ["worker"]])
def test_unreachable_redis(tmp_path, dead_redis, command):
    from streams.embedded import start_broker

    broker = start_broker(log_path=tmp_path.parent / f"broker-{tmp_path.name}.log") if command == ["worker"] else None
    try:
        env = {"DRIFTLINE_REDIS_URL": dead_redis, **({"DRIFTLINE_BROKER": broker.url} if broker else {})}
        result, took = run(command, tmp_path, **env)
    finally:
        if broker:
            broker.stop()
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and took < 10, (took, result.stderr[-2000:])
    assert lines[0].startswith(f"driftline: cannot use Redis at redis://127.0.0.1:{dead_redis.rsplit(':')[-1][:-2]}")
    assert "connection refused" in lines[0] and len(lines) == 2 and "DRIFTLINE_REDIS_URL" in lines[1]


@pytest.mark.parametrize("option, value, expected", [
    ("--redis-url", "localhost:6379", "redis_url: 'localhost:6379' is not a Redis URL"),
    ("--broker", "localhost", "broker: 'localhost' is not a broker URL"),
])
def test_bad_urls_are_configuration_errors(tmp_path, option, value, expected):
    result, took = run(["status", option, value], tmp_path)
    assert result.returncode == 2 and took < 10
    assert result.stderr.strip().splitlines() == ["driftline: configuration error:", f"command line: {expected}"
                                                  + result.stderr.split(expected, 1)[1].splitlines()[0]]


def test_missing_files(tmp_path):
    result, _ = run(["--config", "nope.toml", "status"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["driftline: configuration error:", "nope.toml: no such file"]
    result, _ = run(["reference", "build", "--model", "m", "rows.csv"], tmp_path)
    assert result.returncode == 2 and "'rows.csv' does not exist" in result.stderr and "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path, dead_redis):
    quiet, _ = run(["status", "--redis-url", dead_redis], tmp_path)
    loud, _ = run(["status", "--redis-url", dead_redis, "--debug"], tmp_path)
    assert "Traceback" not in quiet.stderr and quiet.returncode == 1
    assert "Traceback" in loud.stderr and loud.returncode == 1


def test_global_options_after_the_command(tmp_path, dead_redis):
    config = tmp_path / "driftline.toml"
    config.write_text(f'redis_url = "{dead_redis}"\n')
    after, _ = run(["status", "--config", str(config)], tmp_path)
    before, _ = run(["--config", str(config), "status"], tmp_path)
    assert "No such option" not in after.stderr
    assert after.returncode == before.returncode == 1
    assert after.stderr == before.stderr and dead_redis.rsplit(":", 1)[0] in after.stderr
