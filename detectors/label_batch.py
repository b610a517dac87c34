"""Joined labels of a classification model, folded in per batch while nothing is being watched.

:meth:`VersionMonitor.add_labels <detectors.monitor.VersionMonitor.add_labels>` takes labels one
by one because a label can change what happens to the next one: the concept detector fires and
the performance gap is then checked every 25 labels, the CBPE fit completes, the baseline is
set, a KPI check is due. Most of the time none of that can happen: the model has its baseline and
its CBPE fit, no check is pending, the labels carry no KPIs. Then each label only adds to counts,
to the rolling metrics (one numpy update per batch already) and to the error window, and feeds
the concept detector (river's, one update per label: ADWIN keeps its own buckets).
:func:`fold_quiet_labels` does that per batch, up to and including the label at which the
concept detector fires, whose check it runs as the label-by-label path would; the caller takes
the labels after it one by one. Everything it changes ends as the label-by-label path leaves it
(``tests/detectors/test_label_batch.py`` runs both on the same streams).
"""

from __future__ import annotations

__all__ = ["quiet", "fold_quiet_labels"]


MIN_LABELS = 8   # fewer go label by label: the batch's set-up costs more than it saves (bench.monitor_cost, batch 1)


def quiet(version, n: int, kpis: list | None, invalid_kpis: list | None) -> bool:
    """Whether ``version``'s next ``n`` labels can be folded per batch (see the module docstring)."""
    settings = version.settings
    return (n >= MIN_LABELS and version.task == "classification" and version.baseline is not None and not version._suspect_left
            and (version.cbpe is not None or not settings.estimate_performance)
            and not any(kpis or ()) and not any(invalid_kpis or ()))


def fold_quiet_labels(version, as_class, predictions: list, scores: list, labels: list, segments: list | None,
                      ts: float | list, out: list) -> int:
    """Fold the labels of a :func:`quiet` classification version in; returns how many were taken:
    all of them, or those up to and including the one at which the concept detector fired (its
    performance check done, what it emitted appended to ``out``). ``as_class`` is the monitor's
    class reading of labels and predictions; ``ts`` their join clock, one for all or one per label."""
    y_true = [label if type(label) is bool else as_class(label) for label in labels]   # bools are classes
    y_pred = [prediction if type(prediction) is bool else as_class(prediction) for prediction in predictions]
    errors = [float(t != p) for t, p in zip(y_true, y_pred)]
    fired = version.concept.update_until_drift(errors)
    taken = len(errors) if fired is None else fired + 1
    if taken < len(errors):
        y_true, y_pred, errors, scores = y_true[:taken], y_pred[:taken], errors[:taken], scores[:taken]
        segments = segments[:taken] if segments else segments
    if type(ts) is list:
        ts = ts[:taken]
    version.counts["labelled"] += taken
    if segments:
        version.segments.add_labels(segments, y_true, y_pred, ts)
    version.recent_errors.extend(errors)
    version._metrics_suite.update(y_true, y_pred, list(scores))
    if fired is not None:
        # as the label-by-label path does at the label that fires: watch the gap for a rolling
        # window of labels, and check it now
        version._suspect_left = version.settings.performance_window
        if not version._suspect_left:
            return taken
        version._suspect_left -= 1
        clock = ts[-1] if type(ts) is list else ts   # the firing label's
        found = version._check_performance(clock, trigger=version.concept.name)
        out += found
        alert = next((record for record in found if record.kind == "performance"), None)
        out += version.retrain.after_performance(alert, clock)
    return taken
