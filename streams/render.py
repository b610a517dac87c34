"""How the CLI shows records and status to a person: one readable line per record.

>>> alert = {"alert_id": "41708839b6aa", "model": "fraud", "model_version": "7", "kind": "input_drift",
...          "severity": "critical", "message": "input drift in amount (window 3, n=1000)", "created_at": 0}
>>> record_line("alerts", alert)
'1970-01-01 00:00:00Z CRITICAL input_drift fraud/7: input drift in amount (window 3, n=1000) [id 41708839b6aa]'
>>> record_line("deadletter", {"reason": "invalid JSON: unexpected character", "source_topic": "driftline.predictions",
...                            "partition": 2, "offset": 17, "index": None, "payload_bytes": 12})
'DEADLETTER driftline.predictions[2]@17: invalid JSON: unexpected character (12 bytes)'
>>> labels_cell({"predictions": 200, "labelled": 0})
'no labels yet'
>>> labels_cell({"predictions": 200, "labelled": 150})
'150 (75.0%)'
"""
from __future__ import annotations

import time


def _when(ts) -> str:
    if not isinstance(ts, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def record_line(what: str, record: dict) -> str:
    """One line for an alert, a retrain request or a dead letter (``--json`` prints the record itself)."""
    if what == "deadletter":
        where = f"{record.get('source_topic')}[{record.get('partition')}]@{record.get('offset')}"
        if record.get("index") is not None:
            where += f" item {record['index']}"
        return f"DEADLETTER {where}: {record.get('reason')} ({record.get('payload_bytes')} bytes)"
    who = f"{record.get('model')}/{record.get('model_version')}"
    if what == "retrain" or record.get("kind") == "retrain":
        alerts = record.get("alert_ids") or []
        return (f"{_when(record.get('requested_at'))} RETRAIN {who}: {record.get('reason')} "
                f"({len(alerts)} alert{'s' if len(alerts) != 1 else ''}) [id {str(record.get('event_id'))[:12]}]")
    return (f"{_when(record.get('created_at'))} {str(record.get('severity')).upper():8} {record.get('kind')} "
            f"{who}: {record.get('message')} [id {str(record.get('alert_id'))[:12]}]")


def labels_cell(counts: dict) -> str:
    """The labelled count and join rate, or "no labels yet" (never a metric computed from nothing)."""
    labelled, predictions = counts.get("labelled") or 0, counts.get("predictions") or 0
    if not labelled:
        return "no labels yet"
    return f"{labelled} ({100.0 * labelled / predictions:.1f}%)" if predictions else str(labelled)


def metric_cell(status: dict) -> str:
    if not (status.get("counts") or {}).get("labelled"):
        return "no labels yet"
    rolling = status.get("rolling_metrics") or {}
    name, value = next(iter(rolling.items()), (None, None))
    return f"{name}={value:.3f}" if isinstance(value, (int, float)) else "-"


def outcome_line(status: dict) -> str | None:
    """A version's rolling latency percentiles and KPI means (issue 15), or None when it has neither.

    >>> outcome_line({"model": "shop", "model_version": "2",
    ...               "latency": {"rolling": {"p50": 7.41, "p95": 18.6, "p99": 25.3}, "counts": {"invalid": 3}},
    ...               "kpis": {"kpis": {"revenue": {"mean": 5.381, "ci95": [5.1, 5.66],
    ...                                             "baseline": {"mean": 6.1}}}, "counts": {"invalid": 0}}})
    'shop/2: latency p50 7.4 ms, p95 18.6 ms, p99 25.3 ms (3 invalid); revenue 5.381 [5.1, 5.66] vs baseline 6.1'
    """
    parts = []
    latency = status.get("latency") or {}
    rolling = {q: v for q, v in (latency.get("rolling") or {}).items() if isinstance(v, (int, float))}
    if rolling:
        invalid = (latency.get("counts") or {}).get("invalid") or 0
        parts.append("latency " + ", ".join(f"{q} {v:.1f} ms" for q, v in rolling.items())
                     + (f" ({invalid} invalid)" if invalid else ""))
    kpis = status.get("kpis") or {}
    for name, entry in (kpis.get("kpis") or {}).items():
        if isinstance(entry.get("mean"), (int, float)):
            low, high = entry.get("ci95") or (None, None)
            ci = f" [{low:.4g}, {high:.4g}]" if isinstance(low, (int, float)) and isinstance(high, (int, float)) else ""
            base = (entry.get("baseline") or {}).get("mean")
            parts.append(f"{name} {entry['mean']:.4g}{ci}" + (f" vs baseline {base:.4g}" if base is not None else ""))
    if not parts:
        return None
    return f"{status.get('model')}/{status.get('model_version')}: " + "; ".join(parts)


def join_line(status: dict) -> str | None:
    """Predictions that expired unlabelled and labels that never met a prediction, per model."""
    join = status.get("join") or {}
    if not join and status.get("pending_labels") is None:
        return None
    expired = (join.get("expired_unlabelled") or 0) + (join.get("evicted_unlabelled") or 0)
    return (f"{status.get('model')}: {status.get('pending_labels', 0)} predictions waiting for a label, "
            f"{expired} expired unlabelled, {join.get('expired_labels', 0)} labels with an unknown prediction id, "
            f"{join.get('unknown_version_labels', 0)} labels for an unknown version")
