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
    feature_types: dict = field(default_factory=dict)   # name -> "numeric" | "categorical" | "boolean"
    drift: dict = field(default_factory=dict)           # detectors.WindowSettings fields
    label_ttl_seconds: float = 3600.0   # unlabelled predictions expire after this (event time)
    max_pending_labels: int = 50_000    # hard cap on predictions waiting for a label
    max_features: int = 1000            # distinct feature names kept per model version; others dropped, counted
    performance_window: int = 500       # rolling-metric window (labelled events)
    performance_tolerance: float = 0.05 # alert when rolling metric is this much worse than baseline...
    performance_alpha: float = 0.001    # ...and a one-sided test of "no drop" rejects at this level
    hysteresis: float = 0.5             # an announced fairness/performance gap holds until below this x tolerance
    concept_detector: str = "adwin"     # detector on the error stream
    concept_params: dict = field(default_factory=dict)
    realert_windows: int = 10           # a persisting condition is re-announced every N windows
    resolve_windows: int = 3            # ...and resolved after N consecutive clear windows
    critical_effect_size: float = 0.25  # drift with PSI at least this (or >= 3 features) is critical
    calibrate_ert_windows: float = 100.0  # calibrate the window threshold to ~1 false alarm per N windows (0: use alpha)
    quality: dict = field(default_factory=dict)         # detectors.DataQuality parameters
    output_range: list | None = None    # regression guardrail: [low, high] for predictions
    multivariate: dict = field(default_factory=lambda: {"enabled": True, "every": 1, "max_rows": 500, "alpha": 0.001})
    estimate_performance: bool = True   # CBPE on calibrated scores while labels are delayed...
    cbpe_reference_labels: int = 5000   # ...calibrated (isotonic) on the first this many labelled events
    # retrain policy (event time, so replays and tests are deterministic)
    retrain_min_interval: float = 3600.0  # never request retraining sooner than this after the last request
    retrain_max_interval: float = 0.0   # request at least this often, alerts or not (0: off)
    retrain_on: tuple = ("performance:warning", "estimated_performance:critical", "input_drift:critical")
    retrain_drift_windows: int = 3      # ...or when input drift persists this many consecutive windows
    # segments and fairness
    segment_min_size: int = 100         # per segment value and window, before a gap or drift is judged
    segment_drift: bool = True          # input drift tests inside each segment value, per window...
    segment_reference_min_size: int = 200  # ...against that value's own reference rows, if it has this many
    fairness_tolerance: float = 0.1     # accuracy / positive-rate / TPR gap that alerts
    fairness_alpha: float = 0.01
    # champion/challenger
    champion: str | None = None         # version to compare others with (default: the one with most traffic)
    comparison_min_labelled: int = 200
    comparison_alpha: float = 0.05
    compare_on: str = "error"           # what the recommendation decides on: "error" or "kpi:NAME"
    # serving latency and business KPIs (detectors.latency, detectors.kpi)
    latency_slo_ms: dict = field(default_factory=dict)  # percentile -> limit, e.g. {"p99": 250}
    latency_rolling_size: int = 5000    # latencies the rolling percentiles are computed over
    kpis: dict = field(default_factory=dict)            # KPI name -> "higher" | "lower" (which is better)
    kpi_tolerance: float = 0.05         # alert when a KPI's rolling mean moves this much (relative) against...
    kpi_alpha: float = 0.001            # ...its baseline and Welch's one-sided t-test rejects at this level

    def __setstate__(self, state: dict) -> None:
        """Settings pickled in a checkpoint before a field existed get that field's default
        (e.g. issue 15's ``latency_slo_ms``/``kpis`` in checkpoints from before them)."""
        for spec in dataclasses.fields(self):
            if spec.name not in state:
                missing = spec.default_factory is dataclasses.MISSING
                state[spec.name] = spec.default if missing else spec.default_factory()
        self.__dict__.update(state)   # frozen: set directly, as unpickling a dataclass does

    def __post_init__(self):
        if self.compare_on.startswith("kpi:") and self.compare_on[4:] not in self.kpis:
            raise ValueError(f"compare_on = {self.compare_on!r} names a KPI not in kpis ({sorted(self.kpis)})")

    def merged(self, overrides: dict) -> "ModelSettings":
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown model setting(s): {sorted(unknown)}")
        return dataclasses.replace(self, **overrides)

    def to_state(self) -> dict:
        """The fields by name (a checkpoint's settings, :mod:`detectors.monitor_state`)."""
        return {spec.name: getattr(self, spec.name) for spec in dataclasses.fields(self)}

    @classmethod
    def from_state(cls, state: dict) -> "ModelSettings":
        """Settings from :meth:`to_state`; a field recorded before it was removed is ignored, one
        added since gets its default."""
        known = {spec.name for spec in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in state.items() if name in known})
