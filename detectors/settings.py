"""Per-model monitoring settings: plain data, shared by the stream layer and the monitor."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelSettings:
    """Per-model monitoring settings; [defaults] and [models.NAME] use these keys."""

    task: str = "auto"                  # "auto" | "classification" | "regression"
    window_size: int = 1000             # predictions per drift window
    window_seconds: float = 300.0       # a window also closes when this much event time passed...
    min_window_size: int = 100          # ...if it holds at least this many predictions
    reference_size: int = 2000          # first N predictions form the reference, unless one was built
    feature_types: dict = field(default_factory=dict)   # name -> "numeric" | "categorical"
    drift: dict = field(default_factory=dict)           # detectors.WindowSettings fields
    label_ttl_seconds: float = 3600.0   # unlabelled predictions expire after this (event time)
    max_pending_labels: int = 50_000    # hard cap on predictions waiting for a label
    performance_window: int = 500       # rolling-metric window (labelled events)
    performance_tolerance: float = 0.05 # alert when rolling metric is this much worse than baseline
    concept_detector: str = "adwin"     # detector on the error stream
    concept_params: dict = field(default_factory=dict)
    realert_windows: int = 10           # a persisting condition is re-announced every N windows
    resolve_windows: int = 3            # ...and resolved after N consecutive clear windows
    retrain_min_interval: float = 3600.0  # seconds between retrain requests (event time)

    def merged(self, overrides: dict) -> "ModelSettings":
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown model setting(s): {sorted(unknown)}")
        return dataclasses.replace(self, **overrides)
