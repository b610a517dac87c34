"""Alert construction and lifecycle of one model version: what a window's findings announce
and resolve, the alerts built from them, and the record of what was emitted. Pure: no I/O.

Dedup, re-announcement and hysteresis per (kind, key) are :class:`detectors.alerts.AlertLifecycle`'s;
this class owns it, builds the alerts as typed records (:class:`detectors.alerts.Alert`) and keeps
the short histories ``status`` and the window history show.
"""
from __future__ import annotations

from collections import deque

from detectors.alerts import Alert, AlertLifecycle, build_alert
from detectors.settings import ModelSettings

class AlertIssuer:
    """Announces, resolves and records the alerts of one model version.

    ``counts`` is the version's counter dict (``alerts`` is counted here).
    """

    def __init__(self, model: str, version: str, settings: ModelSettings, config_version: str, counts: dict):
        self.model = model
        self.version = version
        self.settings = settings
        self.config_version = config_version
        self.counts = counts
        self.lifecycle = AlertLifecycle(settings.realert_windows, settings.resolve_windows)
        self.last_alerts: deque = deque(maxlen=10)
        self.alerts_since_window: list = []  # what the next window summary lists as raised

    def emit(self, alert: Alert) -> Alert:
        """Record ``alert`` as emitted; returns it (the monitor's output item)."""
        self.counts["alerts"] += 1
        self.last_alerts.append({k: getattr(alert, k) for k in ("alert_id", "kind", "severity", "feature", "message",
                                                                "created_at")})
        self.alerts_since_window.append({k: getattr(alert, k) for k in ("alert_id", "kind", "severity", "features",
                                                                        "message")})
        del self.alerts_since_window[:-100]
        return alert

    def take_since_window(self) -> list:
        """The alerts raised since the last call (a window summary lists them)."""
        alerts, self.alerts_since_window = self.alerts_since_window, []
        return alerts

    def active(self, kind: str) -> set:
        return {key for k, key in self.lifecycle.active() if k == kind}

    def severity(self, kind: str, results: list) -> str:
        if kind in ("input_drift", "prediction_drift"):
            effect = max((r.effect_size or 0.0) for r in results)
            return "critical" if effect >= self.settings.critical_effect_size or len(results) >= 3 else "warning"
        if kind in ("fairness", "estimated_performance"):
            worst = max(abs(r.statistic) for r in results)
            return "critical" if worst > 2 * max(r.threshold for r in results) else "warning"
        return "warning"

    def window_alert(self, kind: str, keys: list, results: list, report, bounds: dict, reference,
                     reference_info: dict, window_index: int) -> Alert:
        """The alert of one kind of finding in a closed window; ``results`` worst first."""
        top = results[0]
        evidence = {}
        for r in results:
            entry = {"detector": r.detector, "statistic": r.statistic, "p_value": r.p_value,
                     "threshold": r.threshold, "effect_size": r.effect_size, "effect_name": r.effect_name}
            if r.feature in reference.features:
                entry["reference"] = reference.features[r.feature].summary
                entry["current"] = report.summaries.get(r.feature)
            entry.update({k: v for k, v in r.evidence.items() if k not in ("reference", "current")})
            evidence[r.feature or "rows"] = entry
        names = [r.feature for r in results if r.feature]
        if kind == "multivariate_drift":
            names = [f for f, _ in top.evidence.get("top_features", [])[:3]]
        return build_alert(
            model=self.model, model_version=self.version, kind=kind, severity=self.severity(kind, results),
            detector=top.detector, feature=top.feature, features=names, statistic=top.statistic,
            p_value=top.p_value, threshold=top.threshold, window=bounds, reference=reference_info,
            evidence=evidence, id_parts=(window_index, ",".join(sorted(map(str, keys)))),
            config_version=self.config_version, conditions=sorted(map(str, keys)),
            message=f"{kind.replace('_', ' ')} in {', '.join(map(str, names))} (window {window_index}, n={bounds['n']})")

    def resolved_alert(self, kind: str, feature: str, bounds: dict, reference_info: dict, window_index: int) -> Alert:
        return build_alert(
            model=self.model, model_version=self.version, kind="resolved", severity="info", detector="lifecycle",
            feature=feature, statistic=None, p_value=None, threshold=None, window=bounds,
            reference=reference_info, evidence={"resolves": kind, "clear_windows": self.settings.resolve_windows},
            id_parts=(window_index, kind, feature), config_version=self.config_version, conditions=[feature],
            message=f"{kind.replace('_', ' ')} in {feature} cleared for {self.settings.resolve_windows} windows")

    # -- checkpoint ----------------------------------------------------------------
    def to_state(self) -> dict:
        return {"lifecycle": self.lifecycle.to_state(), "last_alerts": list(self.last_alerts),
                "alerts_since_window": list(self.alerts_since_window)}

    @classmethod
    def from_state(cls, state: dict, model: str, version: str, settings: ModelSettings, config_version: str,
                   counts: dict) -> "AlertIssuer":
        issuer = cls(model, version, settings, config_version, counts)
        issuer.lifecycle = AlertLifecycle.from_state(state["lifecycle"])
        issuer.last_alerts.extend(state["last_alerts"])
        issuer.alerts_since_window = list(state["alerts_since_window"])
        return issuer
