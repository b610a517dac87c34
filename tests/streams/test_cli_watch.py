"""`driftline status --watch` without a terminal: one plain table per refresh, Redis outages shown."""
from __future__ import annotations

import subprocess
import sys

from sinks import write_status_sync
from tests.integration.harness import ROOT


def status(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", "--redis-url", redis_url, "status", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_watch_prints_a_table_per_refresh_and_survives_redis_down(redis_url, redis_client):
    write_status_sync(redis_url, "fraud", "3", {"counts": {"predictions": 1234, "labelled": 5, "windows": 2,
                                                           "alerts": 1}})
    done = status(redis_url, "--watch", "--interval", "0.1", "--times", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("every 0.1 s (Ctrl-C stops)") == 3 and done.stdout.count("1234") == 3
    down = status("redis://127.0.0.1:1/0", "--watch", "--interval", "0.1", "--times", "2")
    assert down.returncode == 0 and down.stdout.count("redis at redis://127.0.0.1:1/") == 2
    assert "Traceback" not in down.stderr
