"""Fixtures for sink tests: a real aiohttp server on 127.0.0.1."""
from __future__ import annotations

import asyncio

import pytest_asyncio
from aiohttp import web


@pytest_asyncio.fixture
async def http_server():
    """``await http_server(handler)`` -> base URL of a real server on 127.0.0.1:<free port>."""
    runners: list[web.AppRunner] = []

    async def start(handler) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await asyncio.wait_for(runner.setup(), 5)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await asyncio.wait_for(site.start(), 5)
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await asyncio.wait_for(runner.cleanup(), 5)
