"""ModelMonitor end to end, in process: join, windows, lifecycle, retrain policy, fairness, comparison.

The monitor is pure, so these tests drive it with plain dicts and an event-time
clock they control (timestamps), and assert on what it emits.
"""
from __future__ import annotations

import pickle
from collections import OrderedDict

import numpy as np
import pytest

from detectors.monitor import ModelMonitor
from detectors.settings import ModelSettings
from tests.detectors.legacy_layout import flat_model_state

FAST = dict(reference_size=500, window_size=250, calibrate_ert_windows=0, performance_window=200, cbpe_reference_labels=500,
            multivariate={"enabled": False}, window_seconds=1e9)


def settings(**overrides) -> ModelSettings:
    return ModelSettings().merged({**FAST, **overrides})


def traffic(n, seed=0, shift_at=None, shift=1.0, version="1", start=0, segment=None, model="m"):
    rng = np.random.default_rng(seed)
    for i in range(start, start + n):
        x = rng.normal(size=3)
        if shift_at is not None and i >= shift_at:
            x[0] += shift
        score = float(1 / (1 + np.exp(-x[1])))
        yield {"prediction_id": f"{model}-{version}-{i}", "model": model, "model_version": version,
               "timestamp": float(i), "features": {"a": float(x[0]), "b": float(x[1]), "c": str(rng.choice(["u", "v"]))},
               "prediction": score >= 0.5, "score": score, "segment": segment(i, rng) if segment else None,
               "latency_ms": None}


def alerts(out, kind=None):
    return [r for k, r in out if k == "alert" and (kind is None or r["kind"] == kind)]


def run(monitor, events, labels=None, batch=50):
    out = []
    events = list(events)
    for i in range(0, len(events), batch):
        out += monitor.add_predictions(events[i:i + batch])
        if labels is not None:
            out += monitor.add_labels([labels(e) for e in events[i:i + batch] if labels(e) is not None])
    return out


def correct_label(e):
    return {"prediction_id": e["prediction_id"], "model": e["model"], "label": e["prediction"],
            "timestamp": e["timestamp"] + 0.5}


def test_stationary_stream_is_quiet_and_a_shift_alerts_on_that_feature_only():
    quiet = run(ModelMonitor("m", settings()), traffic(3000, seed=1), correct_label)
    assert alerts(quiet) == []
    out = run(ModelMonitor("m", settings()), traffic(3000, seed=1, shift_at=1500, shift=0.5), correct_label)
    drift = alerts(out, "input_drift")
    assert drift, "the shift must be caught"
    assert all(a["window"]["start"] >= 1500 for a in drift)
    assert drift[0]["feature"] == "a" and drift[0]["features"] == ["a"]
    assert drift[0]["window"]["start"] == 1500 and drift[0]["window"]["n"] == 250


def test_alert_ids_are_deterministic_and_state_survives_pickle():
    events = list(traffic(2500, seed=2, shift_at=1200))
    first = ModelMonitor("m", settings())
    out_a = run(first, events[:1000], correct_label)
    restored = pickle.loads(pickle.dumps(first))
    out_a += run(first, events[1000:], correct_label)
    out_b = out_a[:0] + run(ModelMonitor("m", settings()), events[:1000], correct_label)
    out_b += run(restored, events[1000:], correct_label)
    ids_a = [r.get("alert_id") or r.get("event_id") for _, r in out_a]
    ids_b = [r.get("alert_id") or r.get("event_id") for _, r in out_b]
    assert ids_a and ids_a == ids_b


def test_persisting_drift_is_reannounced_on_schedule_and_resolved_with_hysteresis():
    s = settings(realert_windows=4, resolve_windows=2)
    events = list(traffic(500 + 250 * 6, seed=3))           # reference + 6 shifted windows
    for e in events[500:]:
        e["features"]["a"] += 2.0
    events += list(traffic(250 * 3, seed=4, start=len(events)))  # 3 clean windows
    out = run(ModelMonitor("m", s), events)
    drift_windows = [a["window"]["index"] for a in alerts(out, "input_drift")]
    assert drift_windows == [0, 4]
    resolved = alerts(out, "resolved")
    resolved_drift = [(r["feature"], r["window"]["index"]) for r in resolved if r["evidence"]["resolves"] == "input_drift"]
    assert resolved_drift == [("a", 7)]


def test_label_join_in_either_order_with_ttl_and_cap():
    mon = ModelMonitor("m", settings(label_ttl_seconds=100, max_pending_labels=1000))
    events = list(traffic(600, seed=5))
    mon.add_labels([correct_label(e) for e in events[:10]])          # labels first
    mon.add_predictions(events[:100])
    mon.add_labels([correct_label(e) for e in events[10:20]])        # labels after
    mon.add_predictions(events[100:300])
    assert mon.versions["1"].counts["labelled"] == 20
    mon.add_predictions(events[300:])                                 # clock moves to 599
    status = mon.status()
    assert status["join"]["expired_unlabelled"] == 499 - 20          # ts < 599-100 expired (20 were joined)
    assert status["pending_labels"] == 101
    capped = ModelMonitor("m", settings(max_pending_labels=50))
    capped.add_predictions(events[:120])
    assert capped.status()["pending_labels"] == 50 and capped.status()["join"]["evicted_unlabelled"] == 70


def test_performance_drop_alerts_and_requests_retraining_within_the_policy():
    def labels(e):  # labels agree until 1500, then 40% of them flip
        flip = int(e["timestamp"]) >= 1500 and int(e["timestamp"]) % 5 < 2
        return {**correct_label(e), "label": (not e["prediction"]) if flip else e["prediction"]}

    out = run(ModelMonitor("m", settings(retrain_min_interval=10_000)), traffic(3500, seed=6), labels)
    perf = alerts(out, "performance")
    assert len(perf) >= 1 and perf[0]["window"]["end"] >= 1500
    assert perf[0]["evidence"]["baseline"] == pytest.approx(1.0) and perf[0]["evidence"]["rolling"] < 0.95
    retrains = [r for k, r in out if k == "retrain"]
    assert len(retrains) == 1 and retrains[0]["alert_ids"] == [perf[0]["alert_id"]]


def test_retrain_intervals_with_an_event_time_clock():
    s = settings(retrain_min_interval=1000, retrain_max_interval=600, retrain_on=("input_drift:warning",))
    mon = ModelMonitor("m", s)
    out = run(mon, traffic(2000, seed=7))
    scheduled = [r for k, r in out if k == "retrain"]
    # deployed at t=0; at least every 600 s, never within 1000 s of the last one: t=600 then t=1600
    assert [r["data_range"]["until"] for r in scheduled] == [600.0, 1600.0]
    assert all(r["reason"].startswith("scheduled") for r in scheduled)
    assert mon.versions["1"].counts["retrain_suppressed"] > 0  # t=1200 was suppressed, and recorded
    assert mon.versions["1"].suppressed_retrains[0]["next_allowed_at"] == 1600.0
    # a new version is a deployment: its own clock
    out = run(mon, traffic(700, seed=8, version="2", start=2000))
    v2 = [r for k, r in out if k == "retrain" and r["model_version"] == "2"]
    assert [r["data_range"]["until"] for r in v2] == [2600.0]


def test_fairness_gap_between_segments_alerts_and_random_segments_do_not():
    def region(i, rng):
        return {"region": "north" if i % 2 else "south"}

    def labels(e):  # the model is wrong on 30% of "south" after the reference period
        wrong = e["segment"]["region"] == "south" and int(e["timestamp"]) % 10 < 3
        return {**correct_label(e), "label": (not e["prediction"]) if wrong else e["prediction"]}

    out = run(ModelMonitor("m", settings(concept_detector="page_hinkley", segment_min_size=100)),
              traffic(1500, seed=9, segment=region), labels)
    fairness = alerts(out, "fairness")
    assert fairness and fairness[0]["feature"] == "region.accuracy"
    assert fairness[0]["evidence"]["region.accuracy"]["worst"] == "south"
    quiet = run(ModelMonitor("m", settings()), traffic(3000, seed=10, segment=region), correct_label)
    assert alerts(quiet, "fairness") == []


def test_champion_challenger_recommends_promote_or_rollback():
    def labels_with_error(rate_by_version):
        def labels(e):
            wrong = (int(e["timestamp"]) * 7919 % 100) < rate_by_version[e["model_version"]] * 100
            return {**correct_label(e), "label": (not e["prediction"]) if wrong else e["prediction"]}
        return labels

    for rates, expected in (({"1": 0.3, "2": 0.05}, "promote"), ({"1": 0.05, "2": 0.3}, "rollback")):
        mon = ModelMonitor("m", settings(comparison_min_labelled=150))
        events = [e for pair in zip(traffic(1500, seed=11, version="1"), traffic(1500, seed=12, version="2"))
                  for e in pair]
        out = run(mon, events, labels_with_error(rates))
        comparison = alerts(out, "comparison")
        assert comparison, f"no comparison for {rates}"
        assert comparison[0]["evidence"]["recommendation"] == expected
        assert comparison[0]["evidence"]["champion"] == "1" and comparison[0]["model_version"] == "2"


def test_shadow_predictions_share_an_id_and_both_get_the_label():
    mon = ModelMonitor("m", settings())
    p1 = next(traffic(1, seed=13, version="1"))
    p2 = {**p1, "model_version": "2"}
    mon.add_predictions([p1, p2, p1])                 # the second p1 is a redelivery
    mon.add_labels([correct_label(p1)])
    assert mon.versions["1"].counts["labelled"] == 1 and mon.versions["2"].counts["labelled"] == 1
    assert mon.counts["duplicate_predictions"] == 1


def test_scores_outside_unit_interval_raise_a_data_quality_alert():
    events = list(traffic(1000, seed=14))
    for e in events[700:720]:
        e["score"] = 1.7
    out = run(ModelMonitor("m", settings()), events)
    quality = alerts(out, "data_quality")
    assert [a["features"] for a in quality] == [["__score__"]]
    assert quality[0]["evidence"]["__score__"]["out_of_range"] == 20


def test_calibrated_threshold_is_reported_in_alerts():
    out = run(ModelMonitor("m", settings(calibrate_ert_windows=50)), traffic(1500, seed=15, shift_at=900))
    drift = alerts(out, "input_drift")
    assert drift and drift[0]["reference"]["calibration"]["ert"] == 50
    assert drift[0]["reference"]["alpha"] == pytest.approx(drift[0]["reference"]["calibration"]["threshold"])


def test_a_drop_the_concept_detector_sees_early_still_alerts_once_the_rolling_metric_confirms():
    def labels(e):  # 12% of labels flip after 1500: ADWIN fires when the rolling accuracy has barely moved
        flip = int(e["timestamp"]) >= 1500 and int(e["timestamp"]) * 7919 % 100 < 12
        return {**correct_label(e), "label": (not e["prediction"]) if flip else e["prediction"]}

    out = run(ModelMonitor("m", settings(performance_window=500)), traffic(4000, seed=16), labels, batch=25)
    perf = alerts(out, "performance")
    assert perf, "the drop must be reported"
    assert 1500 <= perf[0]["window"]["end"] <= 2100
    assert perf[0]["evidence"]["gap"] > 0.05


def test_drift_inside_one_segment_is_reported_for_that_segment():
    def region(i, rng):
        return {"region": "north" if i % 2 else "south"}

    events = list(traffic(2000, seed=17, segment=region))
    for e in events[1000:]:
        if e["segment"]["region"] == "south":
            e["features"]["b"] += 1.0
    out = run(ModelMonitor("m", settings(segment_min_size=100)), events)
    segment = alerts(out, "segment_drift")
    assert segment, "the south segment drifted"
    keys = {k for a in segment for k in a["features"]}
    assert "region=south:b" in keys and not any(k.startswith("region=north") for k in keys)
    assert segment[0]["evidence"]["region=south:b"]["segment"] == {"region": "south"}


def test_label_timestamps_from_another_clock_do_not_expire_waiting_predictions():
    """Predictions replayed from January, labels stamped 'now' (months later), interleaved.

    Label times once advanced the TTL clock: the first label expired every prediction
    still waiting, and the rest of the labels found nothing to join (seen as an
    intermittent label shortfall in the integration tests, depending on arrival order).
    """
    mon = ModelMonitor("m", settings(label_ttl_seconds=3600, max_pending_labels=10_000))
    events = list(traffic(1000, seed=7))
    late = 330 * 86400.0
    for i in range(0, 1000, 100):
        mon.add_predictions(events[i:i + 100])
        mon.add_labels([{**correct_label(e), "timestamp": e["timestamp"] + late} for e in events[i:i + 50]])
    mon.add_labels([{**correct_label(e), "timestamp": e["timestamp"] + late}
                    for i in range(0, 1000, 100) for e in events[i + 50:i + 100]])
    status = mon.status()
    assert mon.versions["1"].counts["labelled"] == 1000
    assert status["join"]["expired_unlabelled"] == 0 and status["pending_labels"] == 0
    assert mon.clock == max(e["timestamp"] for e in events)


def test_early_labels_expire_on_the_prediction_clock():
    mon = ModelMonitor("m", settings(label_ttl_seconds=100, max_pending_labels=10_000))
    events = list(traffic(400, seed=8))
    mon.add_predictions(events[:10])                                   # clock 9
    mon.add_labels([{**correct_label(e), "prediction_id": f"never-{i}", "timestamp": 1e12}
                    for i, e in enumerate(events[:5])])                 # waiting since clock 9
    assert mon.status()["early_labels"] == 5
    mon.add_predictions(events[10:109])                                 # clock 108: 108 - 100 < 9
    assert mon.status()["early_labels"] == 5
    mon.add_predictions(events[109:111])                                # clock 110: 110 - 100 > 9
    assert mon.status()["early_labels"] == 0 and mon.status()["join"]["expired_labels"] == 5


def test_a_partition_read_ahead_does_not_expire_joins_still_on_their_way():
    """Two source partitions read at different paces: TTLs follow the slower one (the watermark)."""
    mon = ModelMonitor("m", settings(label_ttl_seconds=100, max_pending_labels=10_000))
    events = list(traffic(1000, seed=9))
    even, odd = events[0::2], events[1::2]                            # partition 0 and partition 1
    mon.add_labels([correct_label(e) for e in odd])                    # partition 1's labels came first
    mon.add_predictions(even[:10], sources=[(0, 10)])                  # partition 0 has reached t=18
    mon.add_predictions(odd, sources=[(1, len(odd))])                  # partition 1 read to the end (t=999)
    assert (mon.clock, mon.watermark) == (999, 18)
    assert mon.status()["join"]["expired_unlabelled"] == 0 and mon.status()["pending_labels"] == 10
    mon.add_labels([correct_label(e) for e in even])                   # t=0..18 join, the rest wait
    mon.add_predictions(even[10:], sources=[(0, len(even) - 10)])      # partition 0 catches up
    status = mon.status()
    assert mon.versions["1"].counts["labelled"] == 1000
    assert status["join"]["expired_labels"] == 0 and status["join"]["expired_unlabelled"] == 0
    assert mon.watermark == 998 and status["pending_labels"] == 0


def test_labels_before_any_prediction_wait_from_the_first_prediction_time():
    mon = ModelMonitor("m", settings(label_ttl_seconds=1000, max_pending_labels=10_000))
    events = [{**e, "timestamp": 1.7e9 + e["timestamp"]} for e in traffic(300, seed=10)]
    mon.add_labels([correct_label(e) for e in events])
    for i in range(0, 300, 50):
        mon.add_predictions(events[i:i + 50])
    assert mon.versions["1"].counts["labelled"] == 300 and mon.status()["join"]["expired_labels"] == 0


def test_a_checkpoint_from_before_the_watermark_join_restores_and_keeps_joining():
    mon = ModelMonitor("m", settings(label_ttl_seconds=1000))
    events = list(traffic(200, seed=11))
    mon.add_predictions(events[:100])
    mon.add_labels([correct_label(e) for e in events[150:]])           # early labels
    state = flat_model_state(mon)                                       # the old layout:
    del state["source_clocks"]                                          # no per-partition clocks,
    state["_early_labels"] = OrderedDict((pid, (label[0], 99.0)) for pid, label in mon._early_labels.items())
    old = ModelMonitor.__new__(ModelMonitor)
    old.__setstate__(state)
    restored = pickle.loads(pickle.dumps(old))
    restored.add_predictions(events[100:])
    restored.add_labels([correct_label(e) for e in events[:150]])
    assert restored.versions["1"].counts["labelled"] == 200 and restored.watermark == 199


def test_a_score_out_of_range_after_cbpe_is_fitted_does_not_stop_the_model():
    """Once reproduced: one score of 1.5 made CBPE raise in every later window close, the window
    was never cleared, and every later message of the model failed."""
    mon = ModelMonitor("m", settings())
    events = list(traffic(3000, seed=12))
    run(mon, events[:1500], correct_label)
    assert mon.versions["1"].cbpe is not None
    events[1600] = {**events[1600], "score": 1.5}
    out = run(mon, events[1500:], correct_label)
    version = mon.versions["1"]
    assert version.counts["windows"] == 3000 // 250 - 2            # every window closed (2 built the reference)
    assert version.window.n == 0 and version.counts["check_errors"] == 0
    guardrail = alerts(out, "data_quality")
    assert [(a["features"], a["window"]["index"]) for a in guardrail] == [(["__score__"], 4)]
    assert guardrail[0]["evidence"]["__score__"]["out_of_range"] == 1


def test_a_check_that_raises_is_reported_and_the_next_window_still_closes():
    mon = ModelMonitor("m", settings(multivariate={"enabled": True, "every": 1, "max_rows": 200, "alpha": 0.001}))
    run(mon, traffic(750, seed=13), correct_label)                   # reference + 1 window
    version = mon.versions["1"]

    def broken(*args):
        raise ZeroDivisionError("a bug")

    version.domain.test = broken
    run(mon, traffic(500, seed=14, start=750), correct_label)        # 2 more windows
    assert version.counts["windows"] == 3 and version.window.n == 0
    assert version.counts["check_errors"] == 2
    assert version.last_window["errors"] == {"multivariate_drift": "ZeroDivisionError: a bug"}
    assert version.last_window["drift"]                              # the other checks ran


def test_invented_feature_names_past_max_features_are_dropped_and_counted():
    monitor = ModelMonitor("m", settings(max_features=8))
    events = list(traffic(1200))
    for i, e in enumerate(events):
        e["features"] = {**e["features"], f"junk-{i}": 1.0}
    run(monitor, events)
    version = monitor.versions["1"]
    known = len(next(traffic(1))["features"])
    assert len(version._feature_names) == 8
    assert version.counts["features_dropped"] == 1200 - (8 - known)
    assert len(version.window.columns()) <= 8 + 2              # + prediction and score
    restored = pickle.loads(pickle.dumps(monitor))
    assert restored.versions["1"]._feature_names == version._feature_names


def test_invented_names_in_large_batches_cost_their_values_not_a_column_each():
    """300-event messages with 20 new names per event (tests/reliability/test_limits.py's flood):
    the result is the dense columns' (the row-by-row oracle's), and the batch's peak memory is a
    fraction of a float64 column per invented name (6,000 x 300 x 8 bytes = 14 MB)."""
    import tracemalloc

    from detectors.columns import PredictionColumns

    def flood(start):
        events = list(traffic(300, seed=5, start=start))
        for i, e in enumerate(events):
            e["features"] = {**e["features"], **{f"x{start + i}-{j}": 1.0 for j in range(20)}}
        return events

    capped, dense = ModelMonitor("m", settings(max_features=12)), ModelMonitor("m", settings(max_features=12))
    warm = list(traffic(1000, seed=4))
    for mon in (capped, dense):
        run(mon, warm, correct_label, batch=100)
    peaks = {}
    outputs = {}
    for name, mon in (("capped", capped), ("dense", dense)):
        out = []
        for start in (1000, 1300):
            events = flood(start)
            tracemalloc.start()
            if name == "capped":
                out += mon.add_predictions(events)
            else:
                out += mon.add_columns(PredictionColumns.from_events(events))
            peaks[name] = max(peaks.get(name, 0), tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            out += mon.add_labels([correct_label(e) for e in events])
        outputs[name] = out
    a, b = capped.versions["1"], dense.versions["1"]
    assert a.counts == b.counts and a.counts["features_dropped"] == 2 * 300 * 20 - (12 - 3)
    assert a._feature_names == b._feature_names and len(a._feature_names) == 12
    assert {k: list(v) for k, v in a.window.columns().items()} == {k: list(v) for k, v in b.window.columns().items()}
    assert [(k, r.get("kind")) for k, r in outputs["capped"]] == [(k, r.get("kind")) for k, r in outputs["dense"]]
    assert peaks["dense"] > 14e6 and peaks["capped"] < peaks["dense"] / 4, peaks
