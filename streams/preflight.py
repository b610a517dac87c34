"""Checks the CLI runs before it starts anything: can the broker and Redis be reached,
is there a web port free, can the data folder be written.

Each failure is a :class:`Unusable` whose message is the one or two lines a user
needs (the address tried, what to check), instead of the Kafka client's 30 s of
retries and a traceback.
"""
from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from sinks.base import redact_url


class Unusable(RuntimeError):
    """Something the command needs is not there; the message says what and what to check."""


def _servers(broker_url: str) -> list[tuple[str, int]]:
    servers = []
    for server in broker_url.split("://", 1)[-1].replace(",", ";").split(";"):
        host, _, port = server.rpartition(":")
        servers.append((host.strip("[]"), int(port)))
    return servers


def check_broker(broker_url: str, timeout: float = 3.0) -> None:
    """At least one bootstrap server accepts a TCP connection within ``timeout`` seconds."""
    errors = []
    for host, port in _servers(broker_url):
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            return
        except OSError as exc:
            errors.append(f"{host}:{port} ({_reason(exc)})")
    raise Unusable(f"cannot reach the Kafka broker at {', '.join(errors)}.\n"
                   f"Is it running? Set its address with --broker, DRIFTLINE_BROKER or `broker` in the config "
                   f"(`driftline broker` starts a local one).")


def check_redis(redis_url: str, timeout: float = 2.0) -> None:
    """Redis answers PING within ``timeout`` seconds."""
    from sinks._redis import sync_client

    try:
        client = sync_client(redis_url, timeout)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:   # connection, auth, protocol: all mean "not usable"
        raise Unusable(f"cannot use Redis at {redact_url(redis_url)} ({_reason(exc)}).\n"
                       f"Is it running (e.g. `redis-server --port 6379 --save ''`)? Set its URL with --redis-url, "
                       f"DRIFTLINE_REDIS_URL or `redis_url` in the config.") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout) or "Timeout" in type(exc).__name__:
        return "timed out"
    if isinstance(exc, ConnectionRefusedError) or "refused" in str(exc).lower():
        return "connection refused"
    if isinstance(exc, socket.gaierror) or "resolv" in str(exc).lower() or "Name or service" in str(exc):
        return "unknown host"
    return str(exc).splitlines()[0][:200] or type(exc).__name__


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as aiohttp binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise Unusable(f"cannot bind the web server to {host}:{port} ({exc.strerror}); check web_host") from None
    return True


def web_port(host: str, first: int, tries: int = 100) -> int:
    """``first``, or the next free port after it, so several workers share a host out of the box."""
    for port in range(first, min(first + tries, 65536)):
        if port_free(host, port):
            return port
    raise Unusable(f"no free web port on {host} in {first}..{first + tries - 1}; set web_port or --web-port")


def data_dir(path: str) -> Path:
    """Create the data folder; it must be writable by this user."""
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise Unusable(f"cannot write the data folder {folder} ({exc.strerror}).\n"
                       f"Set a writable one with data_dir in the config or DRIFTLINE_DATA_DIR.") from None
    return folder
