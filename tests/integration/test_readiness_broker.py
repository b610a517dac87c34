"""/readyz follows the broker: ready with it, 503 when it stops."""
from __future__ import annotations

import orjson
import pytest

from streams.embedded import start_broker
from tests.integration.harness import SMALL_WINDOWS, WorkerProcess, isolated_env, wait_until
from tests.integration.test_operations import get

pytestmark = pytest.mark.integration


def test_readyz_is_503_once_the_broker_stops(redis_url, tmp_path):
    broker = start_broker(log_path=tmp_path / "tansu.log")
    config = tmp_path / "driftline.toml"
    config.write_text(SMALL_WINDOWS)
    worker = WorkerProcess(isolated_env(broker.url, redis_url), tmp_path, config=config)
    port = int(worker.env["DRIFTLINE_WEB_PORT"])
    try:
        wait_until(lambda: get(port, "/readyz")[0] == 200, 90, 0.2, "ready")
        assert orjson.loads(get(port, "/readyz")[1])["checks"]["broker"] == "ok"
        broker.stop()
        code, body = wait_until(lambda: (r := get(port, "/readyz"))[0] == 503 and r, 30, 0.5, "unready")
        body = orjson.loads(body)
        assert body["status"] == "unready" and body["checks"]["broker"] != "ok"
        assert get(port, "/healthz")[0] == 200          # the process itself is fine
    finally:
        worker.kill()      # with the broker gone a graceful stop waits for shutdown_timeout
        broker.stop()
