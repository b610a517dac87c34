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
        dropped (counted); the same id from another version is shadow traffic and joins too.
        A message of one event is joined by :meth:`_one_prediction`."""
        if len(batch) == 1:
            return self._one_prediction(batch)
        return self._batch_predictions(batch)

    def _one_prediction(self, batch: PredictionColumns) -> dict:
        """:meth:`predictions` of one event: its values read from the columns directly, without a
        list per column or the loop over rows."""
        time = batch.ts.item(0)
        self._advance_sources(batch.sources or [(None, 1)], [time])
        pid, name, score = batch.ids[0], batch.model_version[0], batch.score.item(0)
        entry = (name, batch.prediction[0], None if score != score else score, batch.segment_of(0), time)
        shadows = self.pending.get(pid)
        if shadows is not None and self._redelivered(shadows, entry):
            return {}
        if time > self.clock:
            self.clock = time
        label = self.early.get(pid)
        if label is not None:
            return {name: [[0], [(0, *self._early_joined(label, time, self.clock))]]}
        if shadows is None:
            self.pending[pid] = [entry]
        return {name: [[0], []]}

    def _batch_predictions(self, batch: PredictionColumns) -> dict:
        """:meth:`predictions` of any batch."""
        n = len(batch)
        pending, early = self.pending, self.early
        times = batch.ts.tolist()
        self._advance_sources(batch.sources or [(None, n)], times)
        clock = self.clock        # max prediction time, of the rows kept
        by_version: dict = {}     # name -> [rows, early labels as (position, label, clock)]
        scores = batch.score.tolist()
        segment_rows = batch.segment_rows()
        for index, pid in enumerate(batch.ids):
            name = batch.model_version[index]
            score = scores[index]
            entry = (name, batch.prediction[index], None if score != score else score, segment_rows[index],
                     times[index])
            shadows = pending.get(pid)
            if shadows is not None and self._redelivered(shadows, entry):
                continue
            if times[index] > clock:
                clock = times[index]
            taken = by_version.get(name)
            if taken is None:
                taken = by_version[name] = [[], []]
            label = early.get(pid)
            if label is not None:   # kept until its TTL: a shadow version's prediction may still come
                taken[1].append((len(taken[0]), *self._early_joined(label, times[index], clock)))
            elif shadows is None:
                pending[pid] = [entry]
            taken[0].append(index)
        self.clock = clock
        return by_version

    def _advance_sources(self, sources, times: list) -> None:
        """Each source partition's clock moved to the newest of its rows (``(source, count)`` runs of
        ``times``); labels that came before any prediction start waiting when the first comes."""
        start, clocks, first = 0, self.source_clocks, not self.source_clocks
        for source, count in sources:
            if count:
                newest = max(times[start:start + count])
                if newest > clocks.get(source, float("-inf")):
                    clocks[source] = newest
            start += count
        if first and clocks:
            for label in self.early.values():
                label[1] = self.watermark

    def _redelivered(self, shadows: list, entry: tuple) -> bool:
        """A prediction whose id waits already: from the same version a redelivery (counted, dropped),
        from another one shadow traffic, which joins too (appended to ``shadows``)."""
        if any(e[0] == entry[0] for e in shadows):
            self.counts["duplicate_predictions"] += 1
            return True
        shadows.append(entry)
        return False

    def _early_joined(self, label: list, time: float, clock: float) -> tuple:
        """A label that came before its prediction (at ``time``), joined now: marked joined (its delay
        observed the first time) and given as ``(label, clock, kpis, refused kpis)``."""
        if not label[2] and len(label) > 3 and label[3] >= time:   # [3]: label time
            self.label_delay.observe(label[3] - time)
        label[2] = True
        return (label[0], clock, *_label_kpis(label))

    def labels(self, batch: LabelColumns) -> list:
        """Join a batch of labels with their predictions: runs of consecutive labels of one version,
        ``[version, predictions, scores, labels, segments, kpis, refused kpis]``; a label whose
        prediction has not come waits for it. A message of one label is joined by :meth:`_one_label`."""
        if len(batch) == 1:
            return self._one_label(batch)
        return self._batch_labels(batch)

    def _one_label(self, batch: LabelColumns) -> list:
        """:meth:`labels` of one label, without the loop (and the watermark read only if it waits)."""
        joined: list = []
        self._join_label(joined, batch.ids[0], batch.label[0], batch.ts.item(0),
                         kpis_of(batch.kpis, 0) if batch.kpis else None, batch.invalid_kpis[0] or None, None)
        return joined

    def _batch_labels(self, batch: LabelColumns) -> list:
        """:meth:`labels` of any batch."""
        watermark = self.watermark
        joined: list = []
        with_kpis = batch.kpis
        for position, (pid, label, ts) in enumerate(zip(batch.ids, batch.label, batch.ts.tolist())):
            self._join_label(joined, pid, label, ts, kpis_of(with_kpis, position) if with_kpis else None,
                             batch.invalid_kpis[position] or None, watermark)
        return joined

    def _join_label(self, joined: list, pid, label, ts: float, label_kpis, label_invalid, watermark) -> None:
        """One label joined with the predictions waiting for it, into the runs of ``joined``, or kept
        waiting for them (``watermark``: the batch's, None to read it here)."""
        entries = self.pending.pop(pid, None)
        if entries is None:   # [4:6]: the label's KPIs (newer checkpoints)
            self.early[pid] = [label, self.watermark if watermark is None else watermark, False, ts,
                               label_kpis or None, label_invalid]
            return
        delay = ts - entries[0][4]
        if delay >= 0:   # a label stamped before its prediction is another clock's doing, not a delay
            self.label_delay.observe(delay)
        for name, prediction, score, segment, _ in entries:
            if not joined or joined[-1][0] != name:
                joined.append([name, [], [], [], [], [], []])
            run = joined[-1]
            run[1].append(prediction), run[2].append(score), run[3].append(label), run[4].append(segment)
            run[5].append(label_kpis), run[6].append(label_invalid)

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
