"""The version monitor's state split over its collaborators (issue 13): every attribute of the
single-class layout has a home, and a state migrated from that layout goes on exactly as the
monitor it was taken from."""
import pickle

from detectors.monitor import ModelMonitor, VersionMonitor
from detectors.monitor_state import FLAT_NAMES, PARTS, TRANSIENT, migrate_version_state
from detectors.settings import ModelSettings
from tests.detectors.checkpoint_stream import SETTINGS, comparable, feed, stream
from tests.detectors.legacy_layout import flat_state

FIXTURE = "tests/detectors/fixtures/checkpoint_v0.pickle"


def _fixture_flat_names() -> set:
    """The attribute names the fixture's single-class version monitor pickled."""
    seen = []
    original = VersionMonitor.__setstate__
    try:
        VersionMonitor.__setstate__ = lambda self, state: (seen.append(set(state)), original(self, state))[1]
        with open(FIXTURE, "rb") as f:
            pickle.load(f)
    finally:
        VersionMonitor.__setstate__ = original
    return seen[0]


def test_every_attribute_of_the_single_class_checkpoint_lands_in_the_current_layout():
    names = _fixture_flat_names()
    model = pickle.loads(open(FIXTURE, "rb").read())["monitor"]
    assert set(model.__dict__) == {"model", "settings", "config_version", "versions", "join", "applied_offsets",
                                   "_last_comparison"}
    assert model.join.settings is model.settings and model.counts is model.join.counts
    restored = model.versions["1"]
    assert set(restored.__dict__) == {"model", "version", "settings", "config_version", "window_settings", "task",
                                      "reference", "reference_info", "calibration", "unpublished_reference",
                                      "_reference_rows", "_reference_segments", "partition", "counts",
                                      "_feature_names", "segments", "last_window", "window_test_seconds",
                                      "closed_windows", *PARTS}
    # river's metrics became the numpy suite; the rest is where FLAT_NAMES says, or on the version
    kept = names - set(TRANSIENT) - {"_metrics", "_rolling"}
    assert kept - set(FLAT_NAMES) - set(restored.__dict__) == set()
    assert set(flat_state(restored)) >= kept
    for part in PARTS:   # shared, not copied: one counter dict for the version
        if "counts" in getattr(restored, part).__dict__:
            assert getattr(restored, part).counts is restored.counts


def test_a_state_migrated_from_the_single_class_layout_goes_on_identically():
    monitor = ModelMonitor("m", ModelSettings(**SETTINGS))
    feed(monitor, *stream(0, 1500, seed=4, shift_from=2000))
    twin = pickle.loads(pickle.dumps(monitor))
    old = flat_state(twin.versions["1"])
    assert "open" not in old and "window_index" in old and "_performance_active" in old
    twin.versions["1"] = VersionMonitor.__new__(VersionMonitor)
    twin.versions["1"].__setstate__(pickle.loads(pickle.dumps(old)))
    later = stream(1500, 1500, seed=5, shift_from=2000)
    want, got = comparable(feed(monitor, *later)), comparable(feed(twin, *later))
    assert [kind for kind, _ in want] == [kind for kind, _ in got] and "alert" in [kind for kind, _ in want]
    assert got == want
    assert _without_clock(twin.status()) == _without_clock(monitor.status())


def _without_clock(value):
    if isinstance(value, dict):
        return {k: _without_clock(v) for k, v in value.items() if k != "created_at"}
    if isinstance(value, list):
        return [_without_clock(v) for v in value]
    return value


def test_the_current_layout_passes_through_unchanged():
    version = VersionMonitor("m", "1", ModelSettings())
    state = dict(version.__dict__)
    assert migrate_version_state(state) is state
