"""When one model version asks for retraining: alerts that trigger it, input drift that
persists, a maximum interval, and a minimum interval between requests. Pure: no I/O.

Event time throughout (``ts`` of the events), so replays and tests decide the same way.
"""
from __future__ import annotations

from collections import deque

from detectors.alerts import SEVERITIES, Alert, RetrainRequest, build_retrain_request
from detectors.settings import ModelSettings

class RetrainPolicy:
    """Retrain requests of one model version; ``counts`` is the version's counter dict
    (``retrain_requests``/``retrain_suppressed`` are counted here, ``predictions``/``labelled``
    name a request)."""

    def __init__(self, model: str, version: str, settings: ModelSettings, counts: dict):
        self.model = model
        self.version = version
        self.settings = settings
        self.counts = counts
        self.deployed_at: float | None = None
        self.last_retrain_at: float | None = None
        self.suppressed_retrains: deque = deque(maxlen=20)
        self.drift_streak = 0             # consecutive windows with input drift
        self.scheduled_retrains = 0

    def triggers(self, alert: Alert) -> bool:
        for rule in self.settings.retrain_on:
            kind, _, severity = rule.partition(":")
            if alert.kind == kind and SEVERITIES.index(alert.severity) >= SEVERITIES.index(severity or "info"):
                return True
        return False

    def after_window(self, emitted: list, bounds: dict, input_drift: bool) -> list:
        """The request a window close makes: alerts it raised that trigger, or persisting drift."""
        self.drift_streak = self.drift_streak + 1 if input_drift else 0
        triggering = [a for a in emitted if self.triggers(a)]
        ts = bounds["end"]
        if triggering:
            reason = "; ".join(a.message for a in triggering)
            return self.request([a.alert_id for a in triggering], reason, ts, bounds=bounds)
        if self.settings.retrain_drift_windows and self.drift_streak >= self.settings.retrain_drift_windows:
            found = self.request([], f"input drift persisted {self.drift_streak} windows", ts, bounds=bounds)
            self.drift_streak = 0
            return found
        return []

    def after_performance(self, alert: Alert | None, ts: float) -> list:
        """The request a performance alert raised between window closes makes, if it triggers."""
        if alert is None or not self.triggers(alert):
            return []
        return self.request([alert.alert_id], f"performance {alert.severity}: {alert.message}", ts)

    def scheduled(self, ts: float) -> list:
        """A request when none was made for ``retrain_max_interval`` (call only when it is set)."""
        last = max(x for x in (self.deployed_at, self.last_retrain_at) if x is not None)
        if ts - last < self.settings.retrain_max_interval:
            return []
        self.scheduled_retrains += 1
        return self.request([], f"scheduled: no retrain for {self.settings.retrain_max_interval:.0f} s",
                            ts, id_parts=("scheduled", self.scheduled_retrains))

    def request(self, alert_ids: list, reason: str, ts: float, bounds: dict | None = None,
                id_parts: tuple | None = None) -> list[RetrainRequest]:
        """Ask for retraining unless one was asked within ``retrain_min_interval`` (then record it)."""
        data_range = {"since": self.deployed_at, "until": ts, "model_version": self.version}
        if bounds is not None:
            data_range["offsets"] = bounds.get("offsets")
        if self.last_retrain_at is not None and ts - self.last_retrain_at < self.settings.retrain_min_interval:
            self.counts["retrain_suppressed"] += 1
            self.suppressed_retrains.append({"at": ts, "reason": reason, "alert_ids": alert_ids,
                                             "next_allowed_at": self.last_retrain_at + self.settings.retrain_min_interval})
            return []
        self.last_retrain_at = ts
        self.counts["retrain_requests"] += 1
        return [build_retrain_request(
            model=self.model, model_version=self.version, reason=reason, alert_ids=alert_ids,
            data_range=data_range, id_parts=id_parts or ("n", self.counts["predictions"], self.counts["labelled"]),
            now=None)]

    # -- checkpoint ----------------------------------------------------------------
    def to_state(self) -> dict:
        return {"deployed_at": self.deployed_at, "last_retrain_at": self.last_retrain_at,
                "suppressed_retrains": list(self.suppressed_retrains), "drift_streak": self.drift_streak,
                "scheduled_retrains": self.scheduled_retrains}

    @classmethod
    def from_state(cls, state: dict, model: str, version: str, settings: ModelSettings,
                   counts: dict) -> "RetrainPolicy":
        policy = cls(model, version, settings, counts)
        policy.deployed_at, policy.last_retrain_at = state["deployed_at"], state["last_retrain_at"]
        policy.suppressed_retrains.extend(state["suppressed_retrains"])
        policy.drift_streak, policy.scheduled_retrains = state["drift_streak"], state["scheduled_retrains"]
        return policy
