"""The Docker image runs as a user of its own, the compose file waits for healthy services, and
installing prints no deprecation warning (issue 12, items 7 and 8).

No Docker engine runs on the build machines, so the image itself is not built here; these tests
read the files the way Docker would.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _dockerfile() -> list[tuple[str, str]]:
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    return [tuple(line.strip().split(None, 1)) for line in lines if line.strip() and not line.startswith("#")]


def test_the_image_runs_as_a_non_root_user_with_a_writable_data_folder():
    steps = _dockerfile()
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0", "nobody")   # nobody has no home to write state in
    user = users[-1]
    run = " ".join(arg for op, arg in steps if op == "RUN")
    assert f"useradd" in run and user in run
    env = dict(arg.split("=", 1) for op, arg in steps if op == "ENV")
    data_dir = env["DRIFTLINE_DATA_DIR"]
    assert f"chown {user}:{user} {data_dir}" in run
    last_user = max(i for i, (op, _) in enumerate(steps) if op == "USER")
    assert all(op != "RUN" for op, _ in steps[last_user:])   # nothing runs as root after it


def test_compose_services_have_healthchecks_and_workers_wait_for_them():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    workers = [s for name, s in services.items() if name.startswith("worker")]
    assert len(workers) == 2
    for worker in workers:
        assert worker["depends_on"] == {"kafka": {"condition": "service_healthy"},
                                        "redis": {"condition": "service_healthy"}}
        assert "6066" in " ".join(worker["healthcheck"]["test"])


def test_building_the_package_prints_no_deprecation_warning(tmp_path):
    """What `pip install .` prints, on a copy (a build writes build/ and *.egg-info next to pyproject.toml)."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for package in ("streams", "detectors", "sinks", "schemas"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "dist"), "."],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "deprecat" not in output.lower(), output[-3000:]
    wheels = list((tmp_path / "dist").glob("driftline-*.whl"))
    assert wheels
    import zipfile

    shipped = set(zipfile.ZipFile(wheels[0]).namelist())
    assert {f"schemas/{n}.json" for n in ("alerts", "deadletter", "labels", "predictions", "retrain")} <= shipped
