"""Traffic from a real model, with drift injected at known points.

The model is a river logistic regression trained at start-up on river's bundled
``Phishing`` dataset (1,250 labelled web pages, shipped inside the wheel: no
download). Traffic resamples those pages, adds a categorical ``channel``, and
publishes one prediction per page with its probability score, then the page's
true label. Two changes are injected:

* a **covariate shift** at ``shift_at``: ``request_from_other_domain`` is pushed
  towards 1 (the feature alerts, and so do the model's scores);
* a **concept drift** at ``concept_at``: a share of labels flips, so the same
  inputs now mean something else and accuracy falls;
* a **latency regression** at ``latency_at``: serving gets ``latency_factor`` times
  slower (latency otherwise depends on the channel and on ``long_url``);
* a **KPI drop** at ``kpi_drop_at``: the ``revenue`` a label event carries (earned
  on legitimate pages, so correlated with the true label) falls to ``kpi_drop`` of itself.

A share ``challenger_share`` of the traffic is served by a challenger version
(``challenger``) that earns ``challenger_revenue`` of the champion's revenue, so
the champion/challenger comparison has a KPI difference to report. Latency, revenue
and the split come from a random stream of their own: the features, scores and labels
are those of the scenario without them.

Timestamps are ``start + i * step`` so an alert's window bounds map back to the
event index that caused it.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

from streams.producer import BatchProducer

CHANNELS = ("web", "mobile", "email")
CHANNEL_MS = {"web": 6.0, "mobile": 9.0, "email": 4.0}   # median serving time per channel
LATENCY_SLO_MS = 60.0          # the demo's p99 SLO: about 2x the stationary p99
KPI = "revenue"
SHIFT_FEATURE = "request_from_other_domain"


@dataclass
class Scenario:
    events: int = 12_000
    shift_at: int = 5_000
    concept_at: int = 8_000
    shift_strength: float = 0.6     # share of shifted rows forced to the extreme value
    label_flip: float = 0.35        # share of labels flipped after the concept drift
    labelled_share: float = 0.95    # the rest never get a label (exercises the TTL)
    model: str = "phishing"
    version: str = "v1"
    seed: int = 7
    start: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    step: float = 0.05              # seconds of event time between predictions
    latency_at: int = 6_500
    latency_factor: float = 4.0
    kpi_drop_at: int = 10_000
    kpi_drop: float = 0.5
    challenger: str = "v2"
    challenger_share: float = 0.2   # 0: no challenger
    challenger_revenue: float = 0.85

    def index_of(self, timestamp: float) -> int:
        return int(round((timestamp - self.start) / self.step))


def train_model():
    from river import compose, datasets, linear_model, preprocessing

    model = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    rows = list(datasets.Phishing())
    for _ in range(3):
        for x, y in rows:
            model.learn_one(x, y)
    return model, rows


def generate(scenario: Scenario):
    """Yield (prediction, label or None) pairs, one per event, deterministically."""
    rng = random.Random(scenario.seed)
    serving = random.Random(scenario.seed + 1)   # latency, revenue and the version split
    model, rows = train_model()
    for i in range(scenario.events):
        x, y = rows[rng.randrange(len(rows))]
        x = dict(x)
        if i >= scenario.shift_at and rng.random() < scenario.shift_strength:
            x[SHIFT_FEATURE] = 1.0
        score = model.predict_proba_one(x).get(True, 0.0)
        features = {**x, "channel": rng.choice(CHANNELS)}
        pid = f"{scenario.model}-{scenario.seed}-{i}"
        ts = scenario.start + i * scenario.step
        challenger = serving.random() < scenario.challenger_share
        latency = CHANNEL_MS[features["channel"]] * (1.0 + 0.8 * float(x.get("long_url", 0.0))) \
            * serving.gammavariate(6.0, 1 / 6.0)
        if i >= scenario.latency_at:
            latency *= scenario.latency_factor
        revenue = serving.gammavariate(4.0, 2.5) if not y else serving.gammavariate(2.0, 0.5)
        if i >= scenario.kpi_drop_at:
            revenue *= scenario.kpi_drop
        if challenger:
            revenue *= scenario.challenger_revenue
        prediction = {
            "prediction_id": pid, "model": scenario.model,
            "model_version": scenario.challenger if challenger else scenario.version,
            "timestamp": ts, "features": features, "prediction": bool(score >= 0.5),
            "score": round(score, 6), "segment": {"channel": features["channel"]},
            "latency_ms": round(latency, 3),
        }
        label = None
        if rng.random() < scenario.labelled_share:
            truth = bool(y)
            if i >= scenario.concept_at and rng.random() < scenario.label_flip:
                truth = not truth
            label = {"prediction_id": pid, "model": scenario.model, "label": truth, "timestamp": ts + 1.0,
                     "kpis": {KPI: round(revenue, 4)}}
        yield prediction, label


@dataclass
class Published:
    """What :func:`publish` sent."""
    predictions: int = 0
    labels: int = 0
    prediction_messages: int = 0
    label_messages: int = 0


def publish(scenario: Scenario, bootstrap: str, topics, batch: int = 100, rate: float | None = None,
            progress=None) -> Published:
    """Publish the scenario; ``rate`` caps predictions per second (None: as fast as possible)."""
    sent = Published()
    started = time.monotonic()
    with BatchProducer(bootstrap, topics.predictions, batch_size=batch) as predictions, \
            BatchProducer(bootstrap, topics.labels, batch_size=batch) as labels:
        for prediction, label in generate(scenario):
            predictions.add(prediction)
            if label is not None:
                labels.add(label)
                sent.labels += 1
            sent.predictions += 1
            if progress is not None and sent.predictions % batch == 0:
                progress(sent.predictions)
            if rate and sent.predictions % batch == 0:
                ahead = sent.predictions / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    sent.prediction_messages, sent.label_messages = predictions.messages, labels.messages
    if progress is not None:
        progress(sent.predictions)
    return sent
