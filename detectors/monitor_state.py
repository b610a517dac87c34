"""Checkpointed state of the monitor (:mod:`detectors.monitor`): the format, and old layouts migrated in one place.

Format 2 (:data:`CHECKPOINT_FORMAT`) is plain data: ``ModelMonitor.to_state()``, a dict of named
fields in which each collaborator (window, tests, performance, outcomes, alerts, retrain policy,
join) gives its own ``to_state()``, read back by the ``from_state`` classmethods; it depends on
no class layout or private attribute name. Format 1 is every checkpoint written before: the live
objects pickled, restored through ``__setstate__`` and the migrations below.

Until issue 13 a version monitor was one class holding every attribute itself (the
"single-class layout", pickled in every checkpoint written before; the fixture
``tests/detectors/fixtures/checkpoint_v0.pickle`` is one). Its state is now split over
collaborators, one per concern. :func:`migrate_version_state` takes either layout and
returns the current one; :data:`FLAT_NAMES` says where each attribute of the single-class
layout lives now. A :class:`detectors.monitor.ModelMonitor` held its join itself; it is a
:class:`detectors.join.LabelJoin` now (:func:`migrate_model_state`, :data:`JOIN_NAMES`).
"""
from __future__ import annotations

from collections import OrderedDict

from detectors.buckets import DELAY_BUCKETS, DURATION_BUCKETS, BucketCounts
from detectors.cbpe import FitSample
from detectors.join import LabelJoin
from detectors.label_metrics import from_river
from detectors.lifecycle import AlertIssuer
from detectors.outcomes import OutcomeWatch
from detectors.outputs import OUTPUT_COLUMNS
from detectors.performance_watch import PerformanceWatch
from detectors.retrain_policy import RetrainPolicy
from detectors.window import OpenWindow
from detectors.window_tests import WindowTests

# single-class attribute -> (collaborator, its attribute); names not listed stay on the version
FLAT_NAMES = {
    "window": ("open", "rows"), "window_index": ("open", "index"), "_window_start": ("open", "start"),
    "_window_end": ("open", "end"), "_window_offsets": ("open", "offsets"), "_window_segments": ("open", "segments"),
    "_first_tick": ("open", "first_tick"), "_first_tick_window": ("open", "first_tick_window"),
    "_score_out_of_range": ("open", "out_of_range"),
    "quality": ("tests", "quality"), "domain": ("tests", "domain"),
    "segment_window_settings": ("tests", "segment_window_settings"),
    "segment_calibration": ("tests", "segment_calibration"), "_segment_report": ("tests", "segment_report"),
    "concept": ("performance", "concept"), "_metrics_suite": ("performance", "metrics_suite"),
    "_primary": ("performance", "primary"), "_baseline_metric": ("performance", "baseline_metric"),
    "baseline": ("performance", "baseline"), "_baseline_errors": ("performance", "baseline_errors"),
    "recent_errors": ("performance", "recent_errors"), "_suspect_left": ("performance", "suspect_left"),
    "_performance_announced": ("performance", "announced"), "_performance_active": ("performance", "active"),
    "_performance_clear": ("performance", "clear"), "cbpe": ("performance", "cbpe"),
    "_cbpe_fit": ("performance", "cbpe_fit"), "estimate": ("performance", "estimate"),
    "latency": ("outcomes", "latency"), "kpis": ("outcomes", "kpis"),
    "lifecycle": ("alerts", "lifecycle"), "last_alerts": ("alerts", "last_alerts"),
    "alerts_since_window": ("alerts", "alerts_since_window"),
    "deployed_at": ("retrain", "deployed_at"), "last_retrain_at": ("retrain", "last_retrain_at"),
    "suppressed_retrains": ("retrain", "suppressed_retrains"), "_drift_streak": ("retrain", "drift_streak"),
    "_scheduled_retrains": ("retrain", "scheduled_retrains"),
}
PARTS = {"open": OpenWindow, "tests": WindowTests, "performance": PerformanceWatch, "outcomes": OutcomeWatch,
         "alerts": AlertIssuer, "retrain": RetrainPolicy}
TRANSIENT = ("_check_errors",)   # set during a window's tests in the single-class layout


def migrate_version_state(state: dict) -> dict:
    """The state of a version monitor in the current layout, from either layout."""
    if "open" in state:
        return state
    return _split(_upgrade_flat(dict(state)))


def _upgrade_flat(state: dict) -> dict:
    """Single-class checkpoints of every age get the fields later ones have: those from before the
    shared confusion matrices get them on restore; those from before per-segment references get
    no segment references (their segments stay untested)."""
    state.setdefault("window_test_seconds", BucketCounts(DURATION_BUCKETS))
    state.setdefault("estimate", {})
    state.setdefault("closed_windows", [])
    state.setdefault("alerts_since_window", [])
    if "_feature_names" not in state:     # checkpoints from before max_features
        state["_feature_names"] = {name for name in state["reference"].features if name not in OUTPUT_COLUMNS} \
            if state.get("reference") else set()
        state["counts"].setdefault("features_dropped", 0)
    state.setdefault("_reference_segments", None)
    state.setdefault("segment_window_settings", state.get("window_settings"))
    state.setdefault("segment_calibration", None)
    state.setdefault("_segment_report", {})
    state.setdefault("_performance_active", False)
    state.setdefault("_performance_clear", 0)
    state.setdefault("_baseline_errors", None)   # the drop test then uses the baseline value
    cbpe = state.get("cbpe")
    if cbpe is not None and "_calibration_x" not in cbpe.__dict__:
        # fitted on raw scores at a 0.5 threshold: refit, calibrated, from the next labelled events
        state["cbpe"], state["_cbpe_fit"] = None, []
    state["_cbpe_fit"] = FitSample.restored(state.get("_cbpe_fit"))
    if "_metrics" in state:   # river's metrics (checkpoints before the numpy metrics): their values move over
        overall, rolling = state.pop("_metrics"), state.pop("_rolling")
        state["_metrics_suite"] = None if overall is None else from_river(
            state["task"], state["settings"].performance_window, overall, rolling)
    return state


def _split(flat: dict) -> dict:
    """The single-class state over the collaborators (those it predates are built from the settings)."""
    settings, counts = flat["settings"], flat["counts"]
    parts = {name: {} for name in PARTS}
    state = {}
    for name, value in flat.items():
        if name in TRANSIENT:
            continue
        where = FLAT_NAMES.get(name)
        if where is None:
            state[name] = value
        else:
            parts[where[0]][where[1]] = value
    if "latency" not in flat:   # checkpoints from before latency and KPIs
        parts["outcomes"] = OutcomeWatch(settings, flat["window_settings"]).__dict__
    for name, cls in PARTS.items():
        part = object.__new__(cls)
        shared = {"settings": settings} if name in ("tests", "performance", "alerts", "retrain") else {}
        if name in ("performance", "alerts", "retrain"):
            shared["counts"] = counts
        if name in ("alerts", "retrain"):
            shared.update(model=flat["model"], version=flat["version"])
        if name == "alerts":
            shared["config_version"] = flat["config_version"]
        part.__dict__.update({**shared, **parts[name]})
        state[name] = part
    return state


# ModelMonitor attribute before the join had its own class -> LabelJoin attribute
JOIN_NAMES = {"_pending": "pending", "_early_labels": "early", "clock": "clock", "source_clocks": "source_clocks",
              "counts": "counts", "label_delay": "label_delay"}


def migrate_model_state(state: dict) -> dict:
    """The state of a model monitor in the current layout, from either layout; checkpoints written
    before the watermark join get its fields."""
    if "join" in state:
        return state
    state = dict(state)
    state.setdefault("source_clocks", {})
    state.setdefault("label_delay", BucketCounts(DELAY_BUCKETS))
    state["_early_labels"] = OrderedDict(   # was (label, label time): wait from the old clock
        (pid, [label[0], state["clock"], False] if isinstance(label, tuple) else label)
        for pid, label in state["_early_labels"].items())
    join = object.__new__(LabelJoin)
    join.__dict__.update(settings=state["settings"], **{new: state.pop(old) for old, new in JOIN_NAMES.items()})
    state["join"] = join
    return state


# -- the explicit format ------------------------------------------------------------------------
CHECKPOINT_FORMAT = 2
"""The checkpoint record's ``"format"``: ``{"format": 2, "monitor": ModelMonitor.to_state(), "outbox": [...]}``.

Format 1 (no ``"format"`` key) is what workers wrote before: ``{"monitor": <ModelMonitor>, "outbox":
[...]}``, the live objects pickled, in the layouts migrated above (``__setstate__``)."""
