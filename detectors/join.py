"""The prediction/label join of one model: predictions waiting for their labels, labels that
came first, and the event-time watermark that expires both. Pure: no I/O.

A label carries ``model``, so a prediction and its label meet in the same model's join
whichever arrives first. Event time comes from the predictions only: label timestamps come
from another clock (often when the label was recorded, days later), and a label stamped "now"
during a replay of older predictions would otherwise expire every prediction still waiting.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from detectors.buckets import DELAY_BUCKETS, BucketCounts
from detectors.columns import LabelColumns, PredictionColumns, kpis_of
from detectors.settings import ModelSettings
from detectors.state_values import decode, encode, floats_or_none, optional_floats


def _label_kpis(early: list) -> tuple:
    """An early label's KPIs and refused KPI names (``[4:6]``; None in older checkpoints)."""
    return (early[4] if len(early) > 4 else None), (early[5] if len(early) > 5 else None)


class LabelJoin:
    """Prediction id -> what waits for the other side of the join, for one model."""

    def __init__(self, settings: ModelSettings):
        self.settings = settings
        self.pending: OrderedDict = OrderedDict()   # prediction_id -> [(version, prediction, score, segment, ts)]
        # prediction_id -> [label, watermark when it came, joined yet, label time, kpis, refused kpis]
        self.early: OrderedDict = OrderedDict()
        self.clock = 0.0                    # max prediction time: retrain-policy and comparison clock
        self.source_clocks: dict = {}       # source partition -> max prediction time read from it
        self.counts = {"expired_unlabelled": 0, "evicted_unlabelled": 0, "expired_labels": 0,
                       "duplicate_predictions": 0, "unknown_version_labels": 0}
        self.label_delay = BucketCounts(DELAY_BUCKETS)   # label time - prediction time, joined labels

    @property
    def watermark(self) -> float:
        """Event time every source partition has passed: the clock of the label TTLs.

        Partitions are read at different paces (a backlog, a slow broker), so the max time
        seen can run far ahead of predictions still on their way from another partition;
        expiring by it would drop joins those predictions are about to make. A partition
        that stops carrying this model's predictions holds the watermark back: expiry is
        late, never early, and ``max_pending_labels`` still bounds memory.
        """
        return min(self.source_clocks.values(), default=0.0)

    def predictions(self, batch: PredictionColumns) -> dict:
        """Join a batch of predictions: version name -> ``[rows, early labels]``, the rows (indices in
        ``batch``) each version takes and the labels that came before them, as
        ``(position in its rows, label, clock, kpis, refused kpis)``. Redelivered predictions are
        dropped (counted); the same id from another version is shadow traffic and joins too."""
        n = len(batch)
        pending, early = self.pending, self.early
        ts = batch.ts
        times = ts.tolist()
        start, clocks, first = 0, self.source_clocks, not self.source_clocks
        for source, count in batch.sources or [(None, n)]:
            if count:
                newest = max(times[start:start + count])
                if newest > clocks.get(source, float("-inf")):
                    clocks[source] = newest
            start += count
        if first and clocks:   # labels that came before any prediction start waiting now
            for label in early.values():
                label[1] = self.watermark
        clock = self.clock        # max prediction time, of the rows kept
        by_version: dict = {}     # name -> [rows, early labels as (position, label, clock)]
        scores = batch.score.tolist()
        segment_rows = batch.segment_rows()
        for index, pid in enumerate(batch.ids):
            name = batch.model_version[index]
            segment = segment_rows[index]
            score = scores[index]
            entry = (name, batch.prediction[index], None if score != score else score, segment, times[index])
            shadows = pending.get(pid)
            if shadows is not None:
                # Same id from another version = shadow traffic; from the same version = redelivery.
                if any(e[0] == name for e in shadows):
                    self.counts["duplicate_predictions"] += 1
                    continue
                shadows.append(entry)
            if times[index] > clock:
                clock = times[index]
            taken = by_version.get(name)
            if taken is None:
                taken = by_version[name] = [[], []]
            label = early.get(pid)
            if label is not None:   # kept until its TTL: a shadow version's prediction may still come
                if not label[2] and len(label) > 3 and label[3] >= times[index]:   # [3]: label time
                    self.label_delay.observe(label[3] - times[index])
                label[2] = True
                taken[1].append((len(taken[0]), label[0], clock, *_label_kpis(label)))
            elif shadows is None:
                pending[pid] = [entry]
            taken[0].append(index)
        self.clock = clock
        return by_version

    def labels(self, batch: LabelColumns) -> list:
        """Join a batch of labels with their predictions: runs of consecutive labels of one version,
        ``[version, predictions, scores, labels, segments, kpis, refused kpis]``; a label whose
        prediction has not come waits for it."""
        watermark = self.watermark
        pending, early = self.pending, self.early
        joined: list = []
        with_kpis = batch.kpis
        for position, (pid, label, ts) in enumerate(zip(batch.ids, batch.label, batch.ts.tolist())):
            entries = pending.pop(pid, None)
            label_kpis = kpis_of(with_kpis, position) if with_kpis else None
            label_invalid = batch.invalid_kpis[position] or None
            if entries is None:   # [4:6]: the label's KPIs (newer checkpoints)
                early[pid] = [label, watermark, False, ts, label_kpis or None, label_invalid]
                continue
            delay = ts - entries[0][4]
            if delay >= 0:   # a label stamped before its prediction is another clock's doing, not a delay
                self.label_delay.observe(delay)
            for name, prediction, score, segment, _ in entries:
                if not joined or joined[-1][0] != name:
                    joined.append([name, [], [], [], [], [], []])
                run = joined[-1]
                run[1].append(prediction), run[2].append(score), run[3].append(label), run[4].append(segment)
                run[5].append(label_kpis), run[6].append(label_invalid)
        return joined

    def expire(self) -> None:
        """Drop joins older than the label TTL (prediction event time), then enforce the hard cap.

        A prediction waits for its label until the watermark is ``label_ttl_seconds``
        past it; a label that came first waits as long for its prediction, counted from
        the watermark when it arrived. A label joined early is kept until then too (a
        shadow version's prediction may still come), and only unjoined ones count as expired.
        """
        horizon = self.watermark - self.settings.label_ttl_seconds
        pending, early, counts = self.pending, self.early, self.counts
        while pending and next(iter(pending.values()))[0][-1] < horizon:
            pending.popitem(last=False)
            counts["expired_unlabelled"] += 1
        cap = self.settings.max_pending_labels
        while early and (len(early) > cap or next(iter(early.values()))[1] < horizon):
            counts["expired_labels"] += not early.popitem(last=False)[1][2]   # joined ones are not lost
        while len(pending) > cap:
            pending.popitem(last=False)
            counts["evicted_unlabelled"] += 1

    # -- checkpoint ----------------------------------------------------------------
    def to_state(self) -> dict:
        """Plain data: the waiting predictions as columns, one row per (prediction id, version) in
        join order, segments and version names coded (:mod:`detectors.state_values`); the labels that
        came first as rows ``[prediction id, label, watermark, joined, label time, kpis, refused]``."""
        ids = [pid for pid, waiting in self.pending.items() for _ in waiting]
        entries = [entry for waiting in self.pending.values() for entry in waiting]
        versions, predictions, scores, segments, times = zip(*entries) if entries else ((),) * 5
        return {"pending": {"ids": ids, "version": encode(list(versions)), "prediction": list(predictions),
                            "score": floats_or_none(scores), "segment": encode(list(segments)),
                            "ts": np.array(times, dtype=np.float64)},
                "early": [[pid, *label] for pid, label in self.early.items()],
                "clock": self.clock, "source_clocks": dict(self.source_clocks), "counts": dict(self.counts),
                "label_delay": self.label_delay.to_state()}

    @classmethod
    def from_state(cls, state: dict, settings: ModelSettings) -> "LabelJoin":
        join = cls(settings)
        recorded = state["pending"]
        pending = join.pending
        entries = zip(decode(recorded["version"]), recorded["prediction"], optional_floats(recorded["score"]),
                      decode(recorded["segment"]), recorded["ts"].tolist())
        for pid, entry in zip(recorded["ids"], entries):
            waiting = pending.get(pid)
            if waiting is None:
                pending[pid] = [entry]
            else:
                waiting.append(entry)   # shadow traffic: the same id from another version
        join.early.update((row[0], list(row[1:])) for row in state["early"])
        join.clock = state["clock"]
        join.source_clocks = dict(state["source_clocks"])
        join.counts.update(state["counts"])
        join.label_delay = BucketCounts.from_state(state["label_delay"])
        return join
