"""A checkpoint pickled by the monitor of main before the columnar core (fixtures/make_checkpoint_v0.py)
restores, and the restored monitor goes on to emit exactly what that code emitted after it."""
import math
import pathlib
import pickle

import orjson

from detectors.quality import DataQuality, out_of_range_p_value

from tests.detectors.checkpoint_stream import comparable, feed, stream

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def _expected():
    return orjson.loads((FIXTURES / "checkpoint_v0_expected.json").read_bytes())


def _plain(value):
    """JSON-shaped, without the wall-clock ``created_at`` stamps."""
    def strip(item):
        if isinstance(item, dict):
            return {k: strip(v) for k, v in item.items() if k != "created_at"}
        if isinstance(item, list):
            return [strip(v) for v in item]
        return item
    return strip(orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)))


def assert_same(got, want, where="") -> None:
    """Equal, floats to 1e-12 (the metrics' sums are taken in another order than river's)."""
    if isinstance(want, float) and isinstance(got, (int, float)):
        assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12), (where, got, want)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), (where, got, want)
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (where, got, want)
        for i, (a, b) in enumerate(zip(got, want)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert got == want, (where, got, want)


CLASSIFIER_FIELDS = ("statistic", "p_value", "message")   # and evidence.rows, and the features' order


def _without_classifier_numbers(value):
    """The multivariate_drift alerts with what the domain classifier computes taken out.

    The fixture's code trained it with river's SGD row by row; since issue 13 it is a ridge
    logistic regression fitted in batch (tests/detectors/test_detectors_stage2.py checks it), so
    its AUC, p-value and feature ranking differ by design. What the restore must keep stays
    compared: that the alert is raised in the same window, its identity, window, severity,
    lifecycle and the set of features it names."""
    if isinstance(value, dict):
        if value.get("kind") == "multivariate_drift":
            value = {k: v for k, v in value.items() if k not in CLASSIFIER_FIELDS}
            if "features" in value:
                value["features"] = sorted(value["features"])
            if "evidence" in value:
                value["evidence"] = {k: v for k, v in value["evidence"].items() if k != "rows"}
        return {k: _without_classifier_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_classifier_numbers(v) for v in value]
    return value


def _chance_out_of_range(alert: dict) -> bool:
    """An out-of-range alert whose counts are all chance under the exact null distribution.

    The fixture's code called a count of values outside the reference range significant on a
    binomial bound; since then the count's beta-binomial p-value must also be at most
    ``out_of_range_alpha`` (detectors.quality.out_of_range_p_value). Such an alert of that code
    is not raised any more, by design: in this stream, 4 of 300 values above the reference's
    maximum after a one-sigma shift that input drift reports (p 0.03)."""
    findings = alert.get("evidence", {}).values()
    return alert.get("kind") == "data_quality" and bool(findings) and all(
        f["detector"] == "data_quality.out_of_range" and out_of_range_p_value(
            f["n_outside"], f["n_present"], f["reference"]["n"]) > DataQuality().out_of_range_alpha
        for f in findings)


def _without_chance_out_of_range(expected: dict) -> dict:
    """The fixture's expectations less those alerts: emitted, counted, listed, active, found."""
    dropped = [alert for what, alert in expected["emitted"] if what == "alert" and _chance_out_of_range(alert)]
    ids = {alert["alert_id"] for alert in dropped}
    conditions = {f"{feature}/out_of_range" for alert in dropped for feature in alert["evidence"]}
    expected["emitted"] = [(what, r) for what, r in expected["emitted"] if r.get("alert_id") not in ids]
    version = expected["status"]["versions"]["1"]
    version["counts"]["alerts"] -= len(dropped)
    version["last_alerts"] = [a for a in version["last_alerts"] if a["alert_id"] not in ids]
    version["active_conditions"] = [c for c in version["active_conditions"]
                                    if not (c[0] == "data_quality" and c[1] in conditions)]
    findings = version["last_window"]["findings"]
    findings["data_quality"] = [key for key in findings.get("data_quality", []) if key not in conditions]
    if not findings["data_quality"]:
        del findings["data_quality"]
    return expected


def test_checkpoint_of_the_pickled_format_restores_and_continues_identically():
    monitor = pickle.loads((FIXTURES / "checkpoint_v0.pickle").read_bytes())["monitor"]
    out = feed(monitor, *stream(2400, 1800, seed=2, shift_from=2700))
    expected = _without_chance_out_of_range(_expected())
    assert len(expected["emitted"]) == len(_expected()["emitted"]) - 1    # the one alert named above
    assert [kind for kind, _ in out] == [kind for kind, _ in expected["emitted"]]
    assert "multivariate_drift" in [alert.get("kind") for _, alert in expected["emitted"]]
    assert_same(_without_classifier_numbers(_plain(comparable(out))),
                _without_classifier_numbers(_plain(expected["emitted"])))
    status = _plain(monitor.status())
    for version in status["versions"].values():
        # issue 15's trackers came after that code: restored empty, they see no latency or KPI in this stream
        latency, kpis = version.pop("latency"), version.pop("kpis")
        assert {k: latency["counts"][k] for k in ("observed", "invalid", "slo_breaches")} == {
            "observed": 0, "invalid": 0, "slo_breaches": 0}
        window_latency, window_kpis = version["last_window"].pop("latency"), version["last_window"].pop("kpis")
        assert window_latency["n"] == 0 and window_kpis == {}
        assert kpis["counts"] == {"observed": 0, "invalid": 0, "unknown": 0, "segments_dropped": 0}
    assert_same(_without_classifier_numbers(status), _without_classifier_numbers(_plain(expected["status"])))


def test_checkpoint_of_format_1_restores_and_continues_as_its_code_did():
    """fixtures/make_checkpoint_v1.py: the live objects as main at 1aa65ca pickled them, two
    versions, a window half open, pending joins, early labels, active alerts, latency and KPIs."""
    from tests.detectors.fixtures.make_checkpoint_v1 import continuation
    monitor = pickle.loads((FIXTURES / "checkpoint_v1.pickle").read_bytes())["monitor"]
    out = feed(monitor, *continuation())
    expected = _plain(orjson.loads((FIXTURES / "checkpoint_v1_expected.json").read_bytes()))
    assert [kind for kind, _ in out] == [kind for kind, _ in expected["emitted"]] and len(out) == 17
    assert_same(_plain(comparable(out)), expected["emitted"])
    assert_same(_plain(monitor.window_summaries()), expected["windows"])
    assert_same(_plain(monitor.status()), expected["status"])
