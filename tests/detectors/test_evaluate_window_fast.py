"""evaluate_window (one pass per feature, detectors/window_block.py) against the implementation it
replaced (tests/detectors/suite_oracle.py: one test object per feature and test).

Equal means the same reprs (every statistic, p-value and evidence value, Python types included),
the same JSON text of ``WindowReport.to_dict()`` (so dict key order too), and the same histograms
left in the window's columns for the window summary.
"""

import dataclasses

import numpy as np
import orjson
import pytest

from detectors.histogram import _histograms, histograms
from detectors.profile import ReferenceProfile, WindowColumn
from detectors.suite import WindowSettings, evaluate_window
from detectors.window_buffer import WindowBuffer

from tests.detectors import suite_oracle

N_NUMERIC, N_CATEGORICAL = 6, 5
LEVELS = np.array(list("abcdefgh"))


def make_columns(rng, n, shift=0.0, unseen=0.0, missing=0.0):
    """Correlated numeric features (one with ties, one constant, one with signed zeros), categorical
    ones (one with a rare level), a boolean, the two prediction columns, with missing values."""
    base = rng.normal(size=n)
    numeric = base[:, None] * 0.6 + rng.normal(size=(n, N_NUMERIC))
    columns = {f"n{j}": numeric[:, j] + (shift if j == 0 else 0.0) for j in range(N_NUMERIC)}
    columns["n_ties"] = np.round(numeric[:, 1] * 2) / 2
    columns["n_constant"] = np.full(n, 3.0)
    columns["n_zeros"] = np.where(rng.random(n) < 0.3, np.where(rng.random(n) < 0.5, -0.0, 0.0), np.round(numeric[:, 2]))
    for j in range(N_CATEGORICAL):
        p = np.arange(1, 9, dtype=float)[::-1] if j else np.r_[np.full(7, 1.0), 0.02]
        values = LEVELS[rng.choice(8, size=n, p=p / p.sum())].astype(object)
        if unseen and j == 1:
            values[rng.random(n) < unseen] = "zz-new"
        if unseen and j == 2:
            values[rng.random(n) < unseen / 2] = "aa-new"
        columns[f"c{j}"] = values
    columns["flag"] = (base > 0.3).tolist()
    columns["__prediction__"] = (base > 0).tolist()
    columns["__score__"] = 1 / (1 + np.exp(-base - shift))
    if missing:
        for name in ("n1", "n_ties", "c0", "c3", "__score__"):
            holes = rng.random(n) < missing
            column = np.asarray(columns[name], dtype=object if name.startswith("c") else float).copy()
            column[holes] = None if name.startswith("c") else np.nan
            columns[name] = column
    return columns


def as_lists(columns):
    """Raw lists with None for missing, as JSON events give them."""
    out = {}
    for name, values in columns.items():
        values = values.tolist() if isinstance(values, np.ndarray) else list(values)
        out[name] = [None if isinstance(v, float) and v != v else v for v in values]
    return out


@pytest.fixture(scope="module")
def reference():
    columns = make_columns(np.random.default_rng(11), 2000, missing=0.02)
    columns["n_empty_reference"] = np.full(2000, np.nan)    # no sample: the per-test classes' reason
    columns["c_single"] = ["only"] * 2000                   # one category
    return ReferenceProfile.from_columns(columns, kinds={"flag": "boolean"}, reference_id="ref")


def windows(reference):
    rng = np.random.default_rng(5)
    plain = make_columns(rng, 1000)
    shifted = make_columns(rng, 1000, shift=0.4, unseen=0.05, missing=0.1)
    odd = make_columns(rng, 700, missing=0.3)
    odd["n2"] = np.full(700, np.nan)                          # all missing
    odd["c4"] = [None] * 700
    del odd["n3"], odd["c2"]                                  # absent from the window
    odd["n_constant"] = np.full(700, 2.0)
    odd["c_single"] = ["only"] * 690 + ["other"] * 10
    odd["n_empty_reference"] = rng.normal(size=700)
    small = make_columns(rng, 40, shift=1.0, unseen=0.3)
    small["c_single"] = ["only"] * 40
    return {"plain": plain, "shifted": shifted, "odd": odd, "small": small}


SETTINGS = {
    "default": WindowSettings(),
    "ks only": WindowSettings(numeric_tests=("ks",), categorical_tests=("chi_squared",)),
    "no primary": WindowSettings(numeric_tests=("wasserstein", "psi"), categorical_tests=("jensen_shannon", "psi")),
    "distances only once": WindowSettings(numeric_tests=("jensen_shannon",), categorical_tests=()),
    "no tests": WindowSettings(numeric_tests=(), categorical_tests=()),
    "repeated": WindowSettings(numeric_tests=("psi", "ks", "psi"), categorical_tests=("jensen_shannon", "chi_squared")),
    "bonferroni": WindowSettings(correction="bonferroni", alpha=0.05, min_effect_size=0.0),
    "none": WindowSettings(correction="none", alpha=0.2, min_effect_size=0.01),
    "no missing rate": WindowSettings(missing_rate=False),
}


def as_given(reference, columns, form):
    if form == "arrays":
        return {name: np.asarray(v) if not isinstance(v, list) else v for name, v in columns.items()}
    if form == "lists":
        return as_lists(columns)
    if form == "window columns":
        return {name: WindowColumn(v, reference.features[name].value_type) if name in reference.features else v
                for name, v in as_lists(columns).items()}
    buffer = WindowBuffer(reference, limit=1000)               # what the monitor passes
    n = max(len(v) for v in columns.values())
    buffer.extend(as_lists(columns), n)
    return buffer.window_columns()


def assert_same(new, old):
    assert repr(new.results) == repr(old.results)
    assert repr(new.drifted) == repr(old.drifted)
    assert repr(new.summaries) == repr(old.summaries)
    assert (new.reference_id, new.n, new.settings) == (old.reference_id, old.n, old.settings)
    assert new.to_dict() == old.to_dict()
    assert orjson.dumps(new.to_dict()) == orjson.dumps(old.to_dict())   # key order too


@pytest.mark.parametrize("form", ["arrays", "lists", "window columns", "monitor buffer"])
@pytest.mark.parametrize("settings", list(SETTINGS))
@pytest.mark.parametrize("window", ["plain", "shifted", "odd", "small"])
def test_evaluate_window_equals_former_implementation(reference, window, settings, form):
    columns = windows(reference)[window]
    new = evaluate_window(reference, as_given(reference, columns, form), SETTINGS[settings])
    old = suite_oracle.evaluate_window(reference, as_given(reference, columns, form), SETTINGS[settings])
    assert_same(new, old)


def test_window_columns_keep_the_histograms_the_window_summary_reads(reference):
    columns = as_given(reference, windows(reference)["shifted"], "monitor buffer")
    evaluate_window(reference, columns)
    for name, fp in reference.features.items():
        if name not in columns:
            continue
        fresh = _histograms(fp, WindowColumn(columns[name].raw, fp.value_type))
        kept = histograms(fp, columns[name])
        assert kept[0] == fresh[0] and kept[1].tolist() == fresh[1].tolist() and kept[2].tolist() == fresh[2].tolist()
        assert kept[1].dtype == fresh[1].dtype and kept[2].dtype == fresh[2].dtype


def test_a_profile_changed_in_place_is_not_served_from_the_cache(reference):
    columns = windows(reference)["plain"]
    profile = ReferenceProfile.from_dict(reference.to_dict())
    evaluate_window(profile, as_lists(columns))
    fp = profile.features["n0"]
    fp.sample = np.sort(fp.sample + 0.25)
    fp.bin_edges = fp.bin_edges + 0.25
    profile.features["c1"].category_counts = {**profile.features["c1"].category_counts, "zz-new": 40}
    assert_same(evaluate_window(profile, as_lists(columns)), suite_oracle.evaluate_window(profile, as_lists(columns)))


def test_hand_built_profiles_go_through_the_per_test_classes(reference):
    profile = ReferenceProfile.from_dict(reference.to_dict())
    unsorted = profile.features["n1"]
    unsorted.sample = unsorted.sample[::-1].copy()                       # not sorted
    profile.features["n4"].sample = np.append(profile.features["n4"].sample, np.nan)   # NaN in the sample
    profile.features["c3"].category_counts = {"a": 5, "b": 0}
    for window in windows(reference).values():
        try:
            old = suite_oracle.evaluate_window(profile, as_lists(window))
        except ValueError as exc:    # scipy's KS with a NaN gives a NaN sign, which int() refuses
            with pytest.raises(type(exc)):
                evaluate_window(profile, as_lists(window))
            continue
        assert_same(evaluate_window(profile, as_lists(window)), old)
    del profile.features["n4"]
    for window in windows(reference).values():
        assert_same(evaluate_window(profile, as_lists(window)), suite_oracle.evaluate_window(profile, as_lists(window)))


def test_many_stationary_and_shifted_windows(reference):
    rng = np.random.default_rng(99)
    for i in range(12):
        columns = make_columns(rng, int(rng.integers(50, 1200)), shift=0.05 * i, unseen=0.01 * (i % 3),
                               missing=0.02 * (i % 4))
        settings = dataclasses.replace(SETTINGS["default"], alpha=float(rng.uniform(0.001, 0.2)))
        assert_same(evaluate_window(reference, as_given(reference, columns, "monitor buffer"), settings),
                    suite_oracle.evaluate_window(reference, as_given(reference, columns, "monitor buffer"), settings))


def test_the_monitor_emits_the_same_alerts_and_window_history(monkeypatch):
    """A monitor over a stream with a shift half way, its windows tested by each implementation."""
    import detectors.window_tests as window_tests
    from detectors.monitor import ModelMonitor
    from detectors.settings import ModelSettings
    from tests.detectors.checkpoint_stream import SETTINGS as STREAM_SETTINGS, comparable, feed, stream

    def run():
        monitor = ModelMonitor("m", ModelSettings(**STREAM_SETTINGS))
        out = feed(monitor, *stream(0, 3000, seed=3, shift_from=1800))
        version = monitor.versions["1"]
        return comparable(out), repr(version.last_window), len(version.closed_windows)

    new = run()
    monkeypatch.setattr(window_tests, "evaluate_window", suite_oracle.evaluate_window)
    old = run()
    kinds = {record.get("kind") for kind, record in new[0] if kind == "alert"}
    assert {"input_drift", "prediction_drift"} <= kinds
    assert new == old
