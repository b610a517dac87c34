"""Every configuration key, at every depth, is checked when the process starts (issue 12, item 1)."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from detectors.settings import ModelSettings
from detectors.suite import WindowSettings
from streams import config
from streams.cli import main
from streams.config_check import ConfigError

ROOT = Path(__file__).resolve().parents[2]
ENV = {"HOME": "/nonexistent-home"}   # no DRIFTLINE_* from the machine running the tests


def _load(tmp_path, text: str, env: dict | None = None):
    path = tmp_path / "driftline.toml"
    path.write_text(text)
    return config.load(path, env={**ENV, **(env or {})}), path


def _problems(tmp_path, text: str, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text, env)
    return info.value.lines


@pytest.mark.parametrize("text, expected", [
    # the typo of the issue: a nested table in [defaults] and in [models.X]
    ("[defaults]\ndrift = { alpah = 0.01 }\n", "defaults.drift.alpah: unknown key (did you mean 'alpha'?)"),
    ("[models.fraud]\ndrift = { alpah = 0.01 }\n", "models.fraud.drift.alpah: unknown key (did you mean 'alpha'?)"),
    ("[models.fraud]\nmultivariate = { enabeld = false }\n",
     "models.fraud.multivariate.enabeld: unknown key (did you mean 'enabled'?)"),
    ("[defaults]\nquality = { max_unseen = 0.1 }\n",
     "defaults.quality.max_unseen: unknown key (did you mean 'max_unseen_rate'?)"),
    ("[defaults]\nconcept_detector = \"page_hinkley\"\nconcept_params = { treshold = 20 }\n",
     "defaults.concept_params.treshold: unknown key (did you mean 'threshold'?)"),
    ("web_prot = 6067\n", "web_prot: unknown key (did you mean 'web_port'?)"),
    ("[topics]\nalert = \"a\"\n", "topics.alert: unknown key (did you mean 'alerts'?)"),
    ("[[sinks]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\nmin_severty = \"critical\"\n",
     "sinks: [0].min_severty: unknown key (did you mean 'min_severity'?)"),
    ("[broker_credentials]\nusername = \"u\"\npasword = \"p\"\n",
     "broker_credentials.pasword: unknown key (did you mean 'password'?)"),
    # wrong types and values
    ("[models.fraud]\nwindow_size = \"500\"\n", "models.fraud.window_size: must be an integer, got string '500'"),
    ("partitions = 2.5\n", "partitions: must be an integer, got number 2.5"),
    ("[defaults]\ndrift = { alpha = \"0.01\" }\n", "defaults.drift.alpha: must be a number, got string '0.01'"),
    ("[defaults]\ndrift = { alpha = 2.0 }\n", "defaults.drift: alpha must be in (0, 1), got 2.0"),
    ("[defaults]\ntask = \"classifcation\"\n", "defaults.task: 'classifcation' is not one of 'auto', "
                                                 "'classification', 'regression' (did you mean 'classification'?)"),
    ("[models.fraud]\nfeature_types = { country = \"categoric\" }\n",
     "models.fraud.feature_types.country: 'categoric' is not one of 'numeric', 'categorical' "
     "(did you mean 'categorical'?)"),
    ("[defaults]\nretrain_on = [\"input_drift:severe\"]\n",
     "defaults.retrain_on[0]: 'severe' is not a severity (info, warning, critical)"),
    ("[defaults]\nconcept_detector = \"adwn\"\n", "defaults.concept_detector: unknown concept detector 'adwn'"),
    ("broker = \"127.0.0.1:9092\"\n", "broker: '127.0.0.1:9092' is not a broker URL; write kafka://host:port"),
    ("redis_url = \"localhost:6379\"\n", "redis_url: 'localhost:6379' is not a Redis URL"),
    ("models = 3\n", "models: must be a table, got integer 3"),
    ("gc_thresholds = [50000, 50]\n", "gc_thresholds: must be [] or three integers >= 0"),
    ("gc_thresholds = [0, 10, 10]\n", "gc_thresholds: a young threshold of 0 turns the collector off"),
])
def test_a_problem_names_the_file_the_key_path_and_the_key_meant(tmp_path, text, expected):
    lines = _problems(tmp_path, text)
    path = tmp_path / "driftline.toml"
    assert any(line.startswith(f"{path}: {expected}") for line in lines), lines


def test_every_problem_is_reported_at_once(tmp_path):
    lines = _problems(tmp_path, "web_prot = 1\n[defaults]\ndrift = { alpah = 0.01 }\nwindow_size = 1.5\n")
    assert len(lines) == 3, lines


def test_a_valid_nested_configuration_loads(tmp_path):
    settings, _ = _load(tmp_path, """
[defaults]
drift = { alpha = 0.02, correction = "bonferroni", numeric_tests = ["ks", "psi"] }
quality = { max_unseen_rate = 0.05 }
multivariate = { enabled = false, every = 2, max_rows = 300, alpha = 0.001, newton_steps = 3 }
concept_detector = "page_hinkley"
concept_params = { threshold = 20 }
[models.fraud]
window_size = 500
performance_tolerance = 1     # an integer where a number is expected is fine
feature_types = { country = "categorical" }
output_range = [0, 100]
[[sinks]]
type = "jsonl"
path = "/tmp/x.jsonl"
kinds = ["input_drift"]
""")
    fraud = settings.for_model("fraud")
    assert (fraud.window_size, fraud.drift["alpha"], fraud.output_range) == (500, 0.02, [0, 100])
    assert settings.for_model("other").window_size == 1000


def test_environment_values_are_checked_and_converted():
    assert config.load(env={**ENV, "DRIFTLINE_WEB_PORT": "7000"}).web_port == 7000
    with pytest.raises(ConfigError, match=r"DRIFTLINE_WEB_PORT='x': web_port must be an integer"):
        config.load(env={**ENV, "DRIFTLINE_WEB_PORT": "x"})
    with pytest.raises(ConfigError, match=r"topics.alrets: unknown key \(did you mean 'alerts'\?\)"):
        config.load(env={**ENV, "DRIFTLINE_TOPIC_ALRETS": "x"})


def test_invalid_toml_and_missing_file_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("window_size = = 3\n")
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML: .*line 1"):
        config.load(bad, env=ENV)
    with pytest.raises(ConfigError, match=r"missing.toml: no such file"):
        config.load(tmp_path / "missing.toml", env=ENV)


@pytest.mark.parametrize("where", ["before", "after"])
def test_the_cli_exits_2_with_the_problem_and_no_traceback(tmp_path, where):
    path = tmp_path / "driftline.toml"
    path.write_text("[defaults]\ndrift = { alpah = 0.01 }\n")
    args = ["--config", str(path), "status"] if where == "before" else ["status", "--config", str(path)]
    result = CliRunner().invoke(main, args, env={"DRIFTLINE_CONFIG": None})
    assert result.exit_code == 2, result.output
    assert f"{path}: defaults.drift.alpah: unknown key (did you mean 'alpha'?)" in result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)


def test_the_worker_refuses_a_nested_typo_before_starting(tmp_path):
    """A real process, as a user runs it: exit 2 in a few seconds, the problem in two lines."""
    path = tmp_path / "driftline.toml"
    path.write_text("[models.fraud]\ndrift = { alpah = 0.01 }\n")
    result = subprocess.run([sys.executable, "-m", "streams.cli", "worker", "--config", str(path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "driftline: configuration error:",
        f"{path}: models.fraud.drift.alpah: unknown key (did you mean 'alpha'?)"]
    assert list(tmp_path.iterdir()) == [path]          # nothing written before the check


# -- the README's configuration reference is checked against the definitions --------------------
def _readme_config() -> dict:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    return tomllib.loads(block)


def _plain(value):
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return list(value) if isinstance(value, tuple) else value


TABLES = ("topics", "sinks", "broker_credentials", "shards", "defaults", "models")


def test_readme_configuration_is_valid_and_complete_with_the_real_defaults():
    data = _readme_config()
    config_check_lines = []
    try:
        from streams.config_check import check

        check("README.md", data)
    except ConfigError as exc:
        config_check_lines = exc.lines
    assert config_check_lines == []

    settings = config.Settings()
    for f in dataclasses.fields(config.Settings):
        if f.name == "source":
            continue
        assert f.name in data, f"README's configuration reference leaves out {f.name}"
        if f.name not in TABLES:
            assert data[f.name] == getattr(settings, f.name), f"README shows {f.name} = {data[f.name]!r}"
    assert data["topics"] == _plain(settings.topics)

    shown = {**data["defaults"]}
    for table in data["models"].values():
        shown = {**table, **shown}
    defaults = ModelSettings()
    for f in dataclasses.fields(ModelSettings):
        assert f.name in shown, f"README's configuration reference leaves out {f.name}"
        if f.name in data["defaults"]:
            expected = _plain(getattr(defaults, f.name))
            if f.name == "drift":
                expected = _plain(WindowSettings())
            elif f.name == "quality":
                expected = {"max_out_of_range_rate": 0.01, "max_type_mismatch_rate": 0.0, "max_unseen_rate": 0.01,
                            "out_of_range_alpha": 1e-4, "unseen_alpha": 1e-4}
            assert _plain(data["defaults"][f.name]) == expected, f"README shows {f.name} = {data['defaults'][f.name]!r}"


def test_readme_quality_defaults_are_data_quality_defaults():
    import inspect

    from detectors.quality import DataQuality

    signature = inspect.signature(DataQuality.__init__)
    assert _readme_config()["defaults"]["quality"] == {
        name: p.default for name, p in signature.parameters.items() if name != "self"}
