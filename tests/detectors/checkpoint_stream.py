"""A deterministic labelled stream (mixed types, segments, a shift half way), shared by the
checkpoint-fixture generator and the tests that restore it."""
from __future__ import annotations

import numpy as np

SETTINGS = dict(window_size=300, reference_size=600, performance_window=200, cbpe_reference_labels=400,
                min_window_size=50, segment_min_size=40, segment_reference_min_size=80,
                multivariate={"enabled": True, "every": 1, "max_rows": 200, "alpha": 0.001})


def stream(start: int, n: int, seed: int, shift_from: int | None = None):
    """Predictions and their labels (a label for 4 of 5, some before their prediction)."""
    rng = np.random.default_rng(seed)
    predictions, labels = [], []
    for i in range(start, start + n):
        shifted = shift_from is not None and i >= shift_from
        x = float(rng.normal(1.0 if shifted else 0.0))
        score = float(1 / (1 + np.exp(-(x + rng.normal(scale=0.5)))))
        region = str(rng.choice(["eu", "us", "apac"], p=[0.5, 0.3, 0.2]))
        features = {"x": x, "z": float(rng.normal()) + 0.5 * x, "n": int(rng.integers(0, 4)),
                    "c": str(rng.choice(["a", "b", "c"] if not shifted else ["a", "a", "c"])),
                    "flag": bool(rng.random() < 0.3)}
        if i % 17 == 0:
            features["z"] = None
        prediction = score >= 0.5
        predictions.append({"prediction_id": f"p{i}", "model": "m", "model_version": "1",
                            "timestamp": 1_000_000.0 + i, "features": features, "prediction": prediction,
                            "score": score, "segment": {"region": region}, "latency_ms": None})
        if i % 5:
            truth = bool(rng.random() < (score if not shifted else 1 - score))
            labels.append({"prediction_id": f"p{i}", "model": "m", "label": truth,
                           "timestamp": 1_000_000.0 + i + 3})
    return predictions, labels


def feed(monitor, predictions, labels, batch: int = 50) -> list:
    """Predictions in batches, each batch's labels after it (every 7th batch's labels before it)."""
    out = []
    by_id = {}
    for label in labels:
        by_id[label["prediction_id"]] = label
    for k in range(0, len(predictions), batch):
        chunk = predictions[k:k + batch]
        chunk_labels = [by_id[p["prediction_id"]] for p in chunk if p["prediction_id"] in by_id]
        early = (k // batch) % 7 == 3
        if early:
            out += monitor.add_labels(chunk_labels)
        out += monitor.add_predictions(chunk, offset=k // batch, partition=0, sources=[(0, len(chunk))])
        if not early:
            out += monitor.add_labels(chunk_labels)
    return out


def comparable(out: list) -> list:
    """Emitted records without wall-clock fields."""
    return [(kind, {k: v for k, v in record.items() if k not in ("created_at", "requested_at")}) for kind, record in out]


OUTCOME_SETTINGS = dict(SETTINGS, latency_slo_ms={"p99": 40.0}, kpis={"revenue": "higher", "cost": "lower"},
                        retrain_min_interval=600.0)


def outcome_stream(start: int, n: int, seed: int, shift_from: int | None = None, slow_from: int | None = None,
                   challenger_every: int = 4):
    """:func:`stream` with serving latencies and KPIs (a slowdown and a revenue drop from ``slow_from``),
    every ``challenger_every``-th prediction from version "2" (champion/challenger state)."""
    predictions, labels = stream(start, n, seed, shift_from)
    rng = np.random.default_rng(seed + 1000)
    by_id = {label["prediction_id"]: label for label in labels}
    for i, p in enumerate(predictions, start):
        slow = slow_from is not None and i >= slow_from
        p["latency_ms"] = round(float(rng.gamma(9.0, 2.0)) * (1.8 if slow else 1.0), 3)
        p["kpis"] = {"cost": round(0.01 * (1 + abs(p["features"]["x"])), 6)}
        if i % challenger_every == 0:
            p["model_version"] = "2"
        label = by_id.get(p["prediction_id"])
        if label is not None:
            revenue = float(rng.gamma(4.0, 2.5)) * (0.6 if slow else 1.0) if label["label"] else 0.0
            label["kpis"] = {"revenue": round(revenue, 6)}
    return predictions, labels
