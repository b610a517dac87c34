"""Real Prometheus and Alertmanager (Debian packages) on 127.0.0.1, started by the tests.

`.ci/run` installs the packages; on a developer machine without them the tests skip,
in CI (``CI`` set) they fail, so a missing install step cannot pass unnoticed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import orjson
import pytest

from streams.embedded import Service, free_port, wait_for_port

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


def need(binary: str) -> str:
    if not shutil.which(binary):
        message = f"{binary} missing (Debian packages prometheus, prometheus-alertmanager; .ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def _start(name: str, args: list, port: int, workdir: Path) -> Service:
    log = open(workdir / f"{name}.log", "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir)
    service = Service(name, f"http://127.0.0.1:{port}", port, proc, _log=log)
    try:
        wait_for_port(port, timeout=30, proc=proc)
    except Exception:
        service.stop()
        raise
    return service


def start_alertmanager(workdir: Path, port: int | None = None) -> Service:
    """Alertmanager with one do-nothing receiver, no clustering, its data in ``workdir``."""
    need(ALERTMANAGER)
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text("route:\n  receiver: none\nreceivers:\n  - name: none\n")
    return _start("alertmanager", [ALERTMANAGER, f"--config.file={config}", f"--storage.path={workdir / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                  port, workdir)


def start_prometheus(workdir: Path, config_text: str, port: int | None = None) -> Service:
    need(PROMETHEUS)
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(config_text)
    return _start("prometheus", [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], port, workdir)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return orjson.loads(response.read())
