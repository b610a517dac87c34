"""Alerts and retrain requests as plain data, and the lifecycle that decides when to send them.

An alert id is a hash of *what* was detected and *where in the stream* (model,
version, kind, window index, features), never of wall-clock time: when a
crashed worker replays events from its last checkpoint it rebuilds the same
windows and therefore the same ids, so consumers (and the sinks' dedup) can drop
the redelivered copy.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import ClassVar

import msgspec

SEVERITIES = ("info", "warning", "critical")

ALERT_KINDS = (
    "input_drift", "prediction_drift", "performance", "data_quality",
    "multivariate_drift", "estimated_performance", "fairness", "segment_drift", "comparison", "latency", "kpi", "resolved",
)


def stable_id(*parts: object) -> str:
    text = "|".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """One alert as a typed record; :meth:`to_dict` is the wire format of ``driftline.alerts``
    (``schemas/alerts.json``), made only where it leaves the monitor."""

    TAG: ClassVar[str] = "alert"   # what the monitor's output items call it
    alert_id: str
    model: str
    model_version: str
    kind: str
    severity: str
    feature: str | None
    features: list
    detector: str
    statistic: float | None
    p_value: float | None
    threshold: float | None
    window: dict
    reference: dict
    evidence: dict
    message: str
    conditions: list
    config_version: str
    created_at: float

    def to_dict(self) -> dict:
        return msgspec.structs.asdict(self)     # fields in wire order


class RetrainRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One retrain request as a typed record; :meth:`to_dict` is the wire format of
    ``driftline.retrain`` (``schemas/retrain.json``)."""

    TAG: ClassVar[str] = "retrain"
    event_id: str
    kind: str
    severity: str
    model: str
    model_version: str
    reason: str
    alert_ids: list
    data_range: dict
    suppressed: bool
    requested_at: float

    def to_dict(self) -> dict:
        return msgspec.structs.asdict(self)     # fields in wire order


def build_alert(*, model: str, model_version: str, kind: str, severity: str, detector: str,
                feature: str | None, statistic: float | None, p_value: float | None,
                threshold: float | None, window: dict, reference: dict, evidence: dict,
                id_parts: tuple, config_version: str = "", features: list | None = None,
                message: str = "", now: float | None = None, conditions: list | None = None) -> Alert:
    """One alert (see :func:`make_alert`) as a typed record.

    ``conditions`` are the lifecycle keys the alert announces (a ``resolved`` alert names the
    one it ends), so a consumer that tracks conditions (Alertmanager) can match the two.
    """
    return Alert(
        alert_id=stable_id(model, model_version, kind, *id_parts), model=model, model_version=model_version,
        kind=kind, severity=severity, feature=feature,
        features=features if features is not None else ([feature] if feature else []),
        detector=detector, statistic=statistic, p_value=p_value, threshold=threshold, window=window,
        reference=reference, evidence=evidence, message=message,
        conditions=[str(c) for c in conditions] if conditions is not None else [],
        config_version=config_version, created_at=time.time() if now is None else now)


def make_alert(**fields) -> dict:
    """One alert in the wire format of ``driftline.alerts`` (see README); fields as :func:`build_alert`."""
    return build_alert(**fields).to_dict()


def build_retrain_request(*, model: str, model_version: str, reason: str, alert_ids: list,
                          data_range: dict, id_parts: tuple, suppressed: bool = False,
                          now: float | None = None) -> RetrainRequest:
    return RetrainRequest(
        event_id=stable_id(model, model_version, "retrain", *id_parts), kind="retrain", severity="warning",
        model=model, model_version=model_version, reason=reason, alert_ids=list(alert_ids),
        data_range=data_range, suppressed=suppressed, requested_at=time.time() if now is None else now)


def make_retrain_request(**fields) -> dict:
    """One retrain request in the wire format of ``driftline.retrain``; fields as :func:`build_retrain_request`."""
    return build_retrain_request(**fields).to_dict()


def wire(records: list) -> list:
    """The monitor's typed output records as the stream layer takes them: ``(tag, dict)`` items."""
    return [(record.TAG, record.to_dict()) for record in records]


@dataclass
class Condition:
    active: bool = False
    announced_at: int = -1     # window index of the last announcement
    clear_streak: int = 0


@dataclass
class AlertLifecycle:
    """Dedup, cooldown and hysteresis per (kind, feature).

    A condition is announced when it first appears, re-announced every
    ``realert_windows`` windows while it persists, and resolved after
    ``resolve_windows`` consecutive clear windows.

    >>> life = AlertLifecycle(realert_windows=3, resolve_windows=2)
    >>> [life.observe(w, "input_drift", {"x"})[0] for w in range(5)]
    [['x'], [], [], ['x'], []]
    >>> life.observe(5, "input_drift", set()), life.observe(6, "input_drift", set())
    (([], []), ([], ['x']))
    """

    realert_windows: int = 10
    resolve_windows: int = 3
    _conditions: dict = field(default_factory=dict, repr=False)

    def observe(self, window_index: int, kind: str, firing: set, undecided: set = frozenset()) -> tuple[list, list]:
        """Return (features to announce now, features resolved now) for one kind in one window.

        ``undecided`` features could not be judged in this window (too little data): an active
        one neither counts as clear nor as firing.
        """
        announce, resolved = [], []
        for feature in sorted(firing, key=str):
            cond = self._conditions.setdefault((kind, feature), Condition())
            cond.clear_streak = 0
            if not cond.active or window_index - cond.announced_at >= self.realert_windows:
                cond.active, cond.announced_at = True, window_index
                announce.append(feature)
        for (k, feature), cond in self._conditions.items():
            if k != kind or feature in firing or not cond.active or feature in undecided:
                continue
            cond.clear_streak += 1
            if cond.clear_streak >= self.resolve_windows:
                cond.active = False
                resolved.append(feature)
        return announce, resolved

    def active(self) -> list[tuple[str, str]]:
        return [key for key, cond in self._conditions.items() if cond.active]

    def to_state(self) -> dict:
        """Conditions as rows ``[kind, key, active, announced_at, clear_streak]``, in the order they appeared."""
        return {"realert_windows": self.realert_windows, "resolve_windows": self.resolve_windows,
                "conditions": [[kind, key, c.active, c.announced_at, c.clear_streak]
                               for (kind, key), c in self._conditions.items()]}

    @classmethod
    def from_state(cls, state: dict) -> "AlertLifecycle":
        return cls(state["realert_windows"], state["resolve_windows"],
                   {(kind, key): Condition(active, announced_at, streak)
                    for kind, key, active, announced_at, streak in state["conditions"]})
