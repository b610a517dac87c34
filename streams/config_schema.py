"""driftline's configuration tree, derived from the settings definitions (never written twice).

The top level is :class:`streams.config.Settings`, ``[defaults]`` and each
``[models.NAME]`` are :class:`detectors.settings.ModelSettings`, and the free-form
tables inside them take the keys of what they configure: ``drift`` the fields of
:class:`detectors.suite.WindowSettings`, ``quality`` and ``multivariate`` the
parameters of :class:`detectors.quality.DataQuality` and
:class:`detectors.domain_classifier.DomainClassifier`, ``concept_params`` those of
the river detector named by ``concept_detector``, ``[[sinks]]`` the options of
their sink type. Adding a field to any of these adds it here.
"""
from __future__ import annotations

import functools

from detectors.alerts import ALERT_KINDS, SEVERITIES
from detectors.concept import CONCEPT_DETECTORS, make_concept_detector
from detectors.domain_classifier import DomainClassifier
from detectors.profile import KINDS
from detectors.quality import DataQuality
from detectors.kpi import DIRECTIONS as KPI_DIRECTIONS
from detectors.settings import ModelSettings
from detectors.suite import WindowSettings
from streams.config_check import Custom, ListOf, MapOf, OneOf, Table, table_of_dataclass, table_of_signature


def _retrain_rule(value) -> str | None:
    if not isinstance(value, str):
        return f"must be a string \"kind:severity\", got {value!r}"
    kind, _, severity = value.partition(":")
    if kind not in ALERT_KINDS:
        return f"{kind!r} is not an alert kind ({', '.join(ALERT_KINDS)})"
    if severity and severity not in SEVERITIES:
        return f"{severity!r} is not a severity ({', '.join(SEVERITIES)})"
    return None


def _output_range(value) -> str | None:
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
    if not ok:
        return f"must be [low, high], got {value!r}"
    return None if value[0] < value[1] else f"low must be below high, got {value!r}"


def _latency_slo(value) -> str | None:
    from detectors.latency import percentile_of

    if not isinstance(value, dict):
        return f"must be a table of percentile = limit in ms, e.g. {{ p99 = 250 }}, got {value!r}"
    for name, limit in value.items():
        try:
            percentile_of(name)
        except ValueError as exc:
            return str(exc)
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
            return f"{name}: the limit must be a positive number of ms, got {limit!r}"
    return None


def _compare_on(value) -> str | None:
    if value == "error" or (isinstance(value, str) and value.startswith("kpi:") and len(value) > 4):
        return None
    return f"must be \"error\" or \"kpi:NAME\", got {value!r}"


def _concept_detector(value) -> str | None:
    try:
        make_concept_detector(value)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


MODEL = table_of_dataclass(ModelSettings, {
    "task": OneOf(("auto", "classification", "regression")),
    "feature_types": MapOf(OneOf(KINDS)),
    "drift": table_of_dataclass(WindowSettings, {"numeric_tests": ListOf(str), "categorical_tests": ListOf(str)}),
    "quality": table_of_signature(DataQuality.__init__),
    "multivariate": table_of_signature(DomainClassifier.__init__, {"enabled": bool, "every": int}),
    "concept_detector": Custom(_concept_detector, "a concept detector"),
    "retrain_on": ListOf(Custom(_retrain_rule, "kind:severity")),
    "output_range": Custom(_output_range, "[low, high]"),
    "champion": str,
    "latency_slo_ms": Custom(_latency_slo, "{ p99 = 250 }"),
    "kpis": MapOf(OneOf(KPI_DIRECTIONS)),
    "compare_on": Custom(_compare_on, "\"error\" or \"kpi:NAME\""),
})


def _sink_table(kind: str) -> Table:
    from sinks import _COMMON, _OPTIONS

    from sinks.cloudevents import ENVELOPES, MODES

    typed = {"url": str, "stream": str, "path": str, "logger": str, "slack": bool, "headers": MapOf(str),
             "maxlen": int, "audit_ttl": int, "timeout": float, "prefix": str, "envelope": OneOf(ENVELOPES),
             "source": str, "mode": OneOf(MODES), "tracking_uri": str, "experiment_prefix": str, "retries": int}
    fields = {key: typed.get(key, object) for key in _COMMON | _OPTIONS[kind]}
    return Table({**fields, "type": str, "name": str, "kinds": ListOf(OneOf(ALERT_KINDS)),
                  "min_severity": OneOf(SEVERITIES)})


def _sinks(value) -> str | None:
    from sinks import _OPTIONS

    if not isinstance(value, (list, tuple)):
        return f"must be an array of tables ([[sinks]]), got {value!r}"
    lines: list[str] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            lines.append(f"[{i}] must be a table")
            continue
        kind = entry.get("type")
        if kind not in _OPTIONS:
            lines.append(f"[{i}].type: {kind!r} is not one of {', '.join(map(repr, sorted(_OPTIONS)))}")
            continue
        from streams.config_check import check_value

        found: list[str] = []
        check_value(entry, _sink_table(kind), "", found)
        if not found:
            from sinks import envelope_of

            try:
                envelope_of(entry)
            except ValueError as exc:
                found.append(f"envelope: {exc}")
        lines.extend(f"[{i}].{line}" for line in found)
    kafka = [entry for entry in value if isinstance(entry, dict) and entry.get("type") == "kafka"]
    if len({(e.get("envelope", "none"), e.get("source"), e.get("mode")) for e in kafka}) > 1:
        lines.append("kafka: the alerts and retrain topics have one envelope; the kafka entries disagree")
    return "; ".join(lines) or None


BROKER_CREDENTIALS = Table({"mechanism": OneOf(("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")), "username": str,
                            "password": str, "password_env": str, "cafile": str, "ssl": bool})


def _settings_table() -> Table:
    from streams.config import Settings, Topics

    return table_of_dataclass(Settings, {
        "topics": table_of_dataclass(Topics),
        "defaults": MODEL,
        "models": MapOf(MODEL),
        "shards": MapOf(int),
        "gc_thresholds": Custom(_gc_thresholds, "[young, middle, old] thresholds, or []"),
        "sinks": Custom(_sinks, "[[sinks]]"),
        "broker_credentials": BROKER_CREDENTIALS,
        "broker": Custom(_broker_url, "kafka://host:port"),
        "redis_url": Custom(_redis_url, "redis://host:port/db"),
    }, exclude=("source",))


def _gc_thresholds(value) -> str | None:
    if not isinstance(value, list) or len(value) not in (0, 3) or not all(
            type(v) is int and v >= 0 for v in value):
        return f"must be [] or three integers >= 0 (gc.set_threshold), got {value!r}"
    if value and value[0] == 0:
        return "a young threshold of 0 turns the collector off, which lets cyclic garbage grow without bound"
    return None


def _broker_url(value) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {value!r}"
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("kafka", "aiokafka"):
        return f"{value!r} is not a broker URL; write kafka://host:port (several: kafka://h1:9092;h2:9092)"
    for server in rest.replace(",", ";").split(";"):
        host, colon, port = server.rpartition(":")
        if not colon or not host or not port.isdigit():
            return f"{server!r} in {value!r} is not host:port"
    return None


def _redis_url(value) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {value!r}"
    if not value.startswith(("redis://", "rediss://", "unix://")):
        return f"{value!r} is not a Redis URL; write redis://host:6379/0 (rediss:// for TLS, unix:///path)"
    return None


@functools.cache
def settings_table() -> Table:
    """The whole tree (built on first use: streams.config imports the checker)."""
    return _settings_table()


def deep_checks(data: dict) -> list[str]:
    """Value checks the parts make themselves (ranges, test names, detector parameters)."""
    out: list[str] = []
    tables = [("defaults", data.get("defaults") or {})]
    tables += [(f"models.{name}", table) for name, table in (data.get("models") or {}).items()]
    for path, table in tables:
        if "drift" in table:
            try:
                WindowSettings.from_dict(table["drift"])
            except (ValueError, TypeError) as exc:
                out.append(f"{path}.drift: {exc}")
        detector = table.get("concept_detector", (data.get("defaults") or {}).get("concept_detector", "adwin"))
        params = table.get("concept_params")
        if params:
            from detectors.concept import _canonical

            river_class = CONCEPT_DETECTORS[_canonical(detector)][0]
            from streams.config_check import check_value

            check_value(params, table_of_signature(river_class.__init__), f"{path}.concept_params", out)
    for name, count in (data.get("shards") or {}).items():
        if count < 1:
            out.append(f"shards.{name}: must be at least 1, got {count}")
    return out
