"""The columnar path (ModelMonitor.add_columns) against the row-by-row one it replaced
(VersionMonitor.add_prediction per event, kept as the oracle and as the path for batches that
need a decision per event): same alerts, same status, whatever the batching."""
import math

import numpy as np
import orjson
import pytest

from detectors.columns import LabelColumns, PredictionColumns
from detectors.monitor import ModelMonitor, VersionMonitor
from detectors.settings import ModelSettings
from tests.detectors.checkpoint_stream import comparable, stream


class RowByRow(ModelMonitor):
    """ModelMonitor whose versions take every batch on the row-by-row path."""

    def version(self, name):
        monitor = self.versions.get(name)
        if monitor is None:
            monitor = self.versions[name] = _RowVersion(self.model, name, self.settings, self.config_version)
        return monitor


class _RowVersion(VersionMonitor):
    def add_columns(self, batch, offset, rows, labels):
        return self._add_rows(batch, offset, rows, labels, keep_missing=True)


def _traffic(seed=4):
    predictions, labels = stream(0, 5200, seed=seed, shift_from=3500)
    rng = np.random.default_rng(seed)
    for i, p in enumerate(predictions):
        if i % 10 == 3:           # shadow traffic: the same id from version 2
            predictions.append({**p, "model_version": "2", "score": min(1.0, p["score"] + 0.1)})
        if i % 97 == 0:
            p["score"] = 1.3      # out of range
        if i % 61 == 0:
            p["timestamp"] += 400.0   # a late burst: windows close by time too
        if i % 301 == 0:
            predictions.append(dict(p))   # redelivery
    predictions.sort(key=lambda p: (int(p["prediction_id"][1:]), p["model_version"]))
    rng.shuffle(labels[:50])
    return predictions, labels


def _feed(monitor, predictions, labels, batch, early_every=5):
    """Each batch's predictions, then their labels; every ``early_every``-th batch (from the third)
    the labels first, so they wait and join along the predictions' batch."""
    out = []
    by_id = {l["prediction_id"]: l for l in labels}
    for k in range(0, len(predictions), batch):
        chunk = predictions[k:k + batch]
        ids = list(dict.fromkeys(p["prediction_id"] for p in chunk))
        chunk_labels = [by_id[i] for i in ids if i in by_id]
        early = (k // batch) % early_every == 2 % early_every
        if early:
            out += monitor.add_label_columns(LabelColumns.from_events(chunk_labels))
        out += monitor.add_columns(PredictionColumns.from_events(chunk, sources=[(0, len(chunk))]), k, 0)
        if not early:
            out += monitor.add_label_columns(LabelColumns.from_events(chunk_labels))
        out += monitor.tick(chunk[-1]["timestamp"])
    return out


def _plain(value):
    def strip(item):
        if isinstance(item, dict):
            return {k: strip(v) for k, v in item.items() if k != "created_at"}
        if isinstance(item, list):
            return [strip(v) for v in item]
        if isinstance(item, float):
            return round(item, 10)
        return item
    return strip(orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)))


@pytest.mark.parametrize("batch", [1, 37, 1000])
@pytest.mark.parametrize("settings", [
    dict(window_size=300, reference_size=600, performance_window=200, cbpe_reference_labels=400,
         min_window_size=50, window_seconds=300.0, segment_min_size=40, segment_reference_min_size=80,
         multivariate={"enabled": True, "every": 1, "max_rows": 200, "alpha": 0.001}),
    dict(window_size=500, reference_size=1000, performance_window=100, output_range=[0.0, 0.9],
         cbpe_reference_labels=300, min_window_size=20, window_seconds=100.0),
])
def test_columnar_path_equals_row_by_row(batch, settings):
    predictions, labels = _traffic()
    ours, oracle = ModelMonitor("m", ModelSettings(**settings)), RowByRow("m", ModelSettings(**settings))
    got, want = _feed(ours, predictions, labels, batch), _feed(oracle, predictions, labels, batch)
    assert sum(1 for kind, _ in want if kind == "alert") >= 3          # the stream does raise alerts
    assert _plain(comparable(got)) == _plain(comparable(want))
    assert _plain(ours.status()) == _plain(oracle.status())
    assert [v.window_index for v in ours.versions.values()] == [v.window_index for v in oracle.versions.values()]
    assert ours.versions["1"].last_window["offsets"] == oracle.versions["1"].last_window["offsets"]


@pytest.mark.parametrize("batch", [37, 1000])
def test_labels_that_came_first_join_along_a_batch_as_row_by_row(batch):
    """Every batch's labels before its predictions: they join in runs across rows (each at the join
    clock of its row) and leave what the row-by-row path, a label at a time, leaves: the alerts
    (performance ones included: the concept detector fires inside a run), the segment clocks.

    One known difference: a retrain request's id counts the predictions taken so far
    (``RetrainPolicy.request``), and the columnar path has counted the rows up to the window's cut
    when the label that calls for it joins, the row path those up to its own row; both are stable
    across a replay of the same messages."""
    settings = ModelSettings(window_size=300, reference_size=600, performance_window=200, cbpe_reference_labels=400,
                             min_window_size=50, window_seconds=300.0, segment_min_size=40)
    predictions, labels = _traffic()
    ours, oracle = ModelMonitor("m", settings), RowByRow("m", settings)
    got, want = (_without_retrain_ids(_feed(m, predictions, labels, batch, early_every=1)) for m in (ours, oracle))
    assert "performance" in {record.get("kind") for kind, record in want if kind == "alert"}
    assert sum(kind == "retrain" for kind, _ in want) >= 1
    assert _plain(comparable(got)) == _plain(comparable(want))
    assert _plain(ours.status()) == _plain(oracle.status())
    for name, version in ours.versions.items():
        assert version.segments._clock() == oracle.versions[name].segments._clock()
        assert version.counts["labelled"] > 0


def _without_retrain_ids(out: list) -> list:
    return [(kind, {k: v for k, v in record.items() if not (kind == "retrain" and k == "event_id")})
            for kind, record in out]


def _outcome_traffic(seed=5):
    """:func:`_traffic` with serving latencies (some negative, a slowdown after the shift), a
    ``cost`` KPI on predictions and a ``revenue`` KPI on labels (a drop in ``eu`` after the
    shift), refused KPI values and an unconfigured KPI name."""
    predictions, labels = _traffic(seed)
    rng = np.random.default_rng(seed)
    for p in predictions:
        i = int(p["prediction_id"][1:])
        late = i >= 3500
        p["latency_ms"] = None if i % 11 == 0 else float(rng.lognormal(4.0 + 0.6 * late, 0.3))
        if i % 173 == 0:
            p["latency_ms"] = -1.0                         # counted as bad data, the event is kept
        p["kpis"] = {} if i % 7 == 0 else {"cost": float(rng.gamma(2.0, 0.1))}
        if i % 89 == 0:
            p["kpis"]["bogus"] = 1.0                        # a name never configured
        p["invalid_kpis"] = ["cost"] if i % 131 == 0 else []
    for label in labels:
        i = int(label["prediction_id"][1:])
        drop = 0.5 if i >= 3500 else 1.0
        label["kpis"] = {"revenue": float(rng.gamma(2.0, 6.0) * drop)} if i % 3 else {}
        label["invalid_kpis"] = ["revenue"] if i % 97 == 0 else []
    return predictions, labels


@pytest.mark.parametrize("batch", [1, 37, 1000])
def test_latency_and_kpis_columnar_path_equals_row_by_row(batch):
    """The trackers of issue 15 (latency, KPIs) see the same values in the same order on both
    paths: same latency and kpi alerts (at window closes and between them), same status."""
    settings = dict(window_size=300, reference_size=600, performance_window=200, cbpe_reference_labels=400,
                    min_window_size=50, window_seconds=300.0, latency_slo_ms={"p99": 150},
                    latency_rolling_size=700, kpis={"revenue": "higher", "cost": "lower"})
    predictions, labels = _outcome_traffic()
    ours, oracle = ModelMonitor("m", ModelSettings(**settings)), RowByRow("m", ModelSettings(**settings))
    got, want = _feed(ours, predictions, labels, batch), _feed(oracle, predictions, labels, batch)
    kinds = {record.get("kind") for kind, record in want if kind == "alert"}
    assert {"latency", "kpi"} <= kinds
    assert _plain(comparable(got)) == _plain(comparable(want))
    assert _plain(ours.status()) == _plain(oracle.status())
    for name, version in ours.versions.items():
        other = oracle.versions[name]
        assert version.latency.counts == other.latency.counts and version.latency.counts["invalid"] > 0
        assert version.kpis.counts == other.kpis.counts
        assert version.kpis.counts["invalid"] > 0 and version.kpis.counts["unknown"] > 0
        np.testing.assert_array_equal(version.latency.rolling_values(), other.latency.rolling_values())
        np.testing.assert_array_equal(version.kpis.values("revenue", "region=eu"),
                                      other.kpis.values("revenue", "region=eu"))
        assert _plain(version.last_window.get("latency")) == _plain(other.last_window.get("latency"))
        assert _plain(version.last_window.get("kpis")) == _plain(other.last_window.get("kpis"))
    assert ours.versions["1"].last_window["latency"]["n"] > 0
