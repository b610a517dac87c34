"""The README's commands, run as written (issue 12, item 8).

"Running against your Kafka cluster" is executed line by line in a shell, against the test
broker and Redis (the README's hosts do not exist here): the ``export`` lines must produce
the values they show, and every ``driftline`` line must do what its comment says. Only the
ports of ``broker`` and ``redis`` are changed to free ones, and ``ALERT_ID`` is replaced by the
short id of an alert the worker raised.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from streams.embedded import free_port, stop_process
from tests.integration.harness import ROOT, alive, descendants, isolated_env, wait_until

pytestmark = pytest.mark.integration


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", _section("Running against your Kafka cluster"), re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


class Background:
    """A README command left running (worker, tail, broker, redis); stopped by its own PID."""

    def __init__(self, line: str, env: dict, cwd: Path):
        self.path = cwd / f"out-{time.monotonic_ns()}.log"
        self._out = open(self.path, "wb")
        self.proc = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=cwd, env=env, stdout=self._out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self) -> str:
        return self.path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc, 20)
        self._out.close()


def test_the_cluster_commands_work_as_written(broker_url, redis_url, tmp_path):
    lines = _commands()
    exports = [line for line in lines if line.startswith("export ")]
    shown = dict(re.match(r'export (\w+)="([^"]*)"', line).groups() for line in exports)
    for line in exports:   # the shell gives each variable the whole value shown
        name = line.split()[1].split("=")[0]
        value = subprocess.run(["bash", "-c", f'{line}\nprintf %s "${name}"'], capture_output=True, text=True).stdout
        assert value == shown[name], line
    commands = {line.split("#")[0].split()[1]: line.split("#")[0].strip()
                for line in lines if line.startswith("driftline ")}
    assert set(commands) == {"worker", "status", "tail", "audit", "reference", "simulate", "schema", "broker", "redis"}

    env = isolated_env(broker_url, redis_url, DRIFTLINE_DATA_DIR=tmp_path / "data")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"   # the installed `driftline`
    running: list[Background] = []

    def run(line: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=timeout)
        assert result.returncode == 0, (line, result.stdout[-2000:], result.stderr[-2000:])
        return result

    try:
        worker = Background(commands["worker"], env, tmp_path)
        running.append(worker)
        wait_until(lambda: "Ready" in worker.output() or worker.proc.poll() is not None, timeout=90,
                   what="worker ready")
        assert worker.proc.poll() is None, worker.output()[-3000:]
        assert "web server on http://127.0.0.1:" in worker.output()

        assert "no models seen yet" in run(commands["status"]).stdout
        tail = Background(commands["tail"], env, tmp_path)
        running.append(tail)
        time.sleep(3)   # tail reads from the latest offset: give its consumer time to get its partitions

        sent = run(commands["simulate"], timeout=300).stdout
        assert re.search(r"published 20000 predictions \(\d+ messages\) to \S+ and \d+ labels", sent), sent

        alert_line = wait_until(lambda: next((line for line in tail.output().splitlines()
                                              if " input_drift phishing/v1: " in line), None),
                                timeout=120, what="an input_drift line from tail")
        short = re.search(r"\[id (\w{12})\]", alert_line).group(1)[:10]
        status = run(commands["status"]).stdout
        assert "phishing" in status and "labelled (join rate)" in status

        audit = run(commands["audit"].replace("ALERT_ID", short)).stdout
        stored = orjson.loads(audit)
        assert stored["alert_id"].startswith(short) and stored["kind"] == "input_drift"
        readme_window = orjson.loads(re.search(r'"window": (\{.*?\}\}),', _section("The wire contract"),
                                               re.S).group(1))
        assert set(readme_window) == set(stored["window"]) and set(readme_window["offsets"]) == {"first", "last"}
        assert all(len(stored["window"]["offsets"][k]) == 2 for k in ("first", "last"))   # [offset, index]

        (tmp_path / "reference.csv").write_text("amount,country\n" + "".join(
            f"{i * 1.5},{'DE' if i % 3 else 'FR'}\n" for i in range(50)))
        schema = orjson.loads(run(commands["schema"]).stdout)
        assert schema["title"] == "driftline.predictions" and schema["$id"].startswith("urn:driftline:schema:")
        built = run(commands["reference"]).stdout
        assert "stored reference fraud:7:reference.csv: 50 rows, 2 features" in built
    finally:
        for process in reversed(running):
            process.stop()

    for name in ("broker", "redis"):   # long-running services, on a free port instead of the usual one
        line = re.sub(r"--port \d+", f"--port {free_port()}", commands[name])
        service = Background(line, env, tmp_path)
        try:
            wait_until(lambda: "listening on" in service.output() or service.proc.poll() is not None, timeout=30,
                       what=f"{name} listening")
            assert service.proc.poll() is None, service.output()
            children = descendants(service.proc.pid)
            assert children, f"{name}: no server process under the command"
        finally:
            service.stop()
        # stopped by SIGTERM (its PID), the command stops its server too: nothing is left behind
        wait_until(lambda: not any(alive(pid) for pid in children), timeout=15, what=f"{name}'s server stopped")
