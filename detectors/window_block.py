"""One window's per-feature drift tests, computed in one pass per feature. Pure: no I/O.

:func:`detectors.suite.evaluate_window` used to run one test object per feature and test
(:class:`~detectors.ks.KolmogorovSmirnov`, :class:`~detectors.psi.PopulationStabilityIndex`,
...), build a result for each, then rebuild the primary and missing-rate results twice more
(distances copied in, then the multiple-testing decision) and walk their evidence to make it
JSON-safe. The numbers are cheap; that overhead was most of the window's cost. Here each
feature's results are built once, with their evidence already JSON-safe, and what depends on
the reference alone (its sorted sample and the counts KS needs of it, bin labels and counts,
smoothed fractions, category rows) is kept per :class:`~detectors.profile.FeatureProfile`
(:func:`feature_plan`), so a window does only its own side.

The results are those of the per-test classes, value for value and key for key
(``tests/detectors/test_evaluate_window_fast.py`` compares them with the former
implementation, kept in ``tests/detectors/suite_oracle.py``). A feature whose reference or
window this path does not cover (an all-missing window, a hand-built profile with an
unsorted sample, a single category...) is handed back to the per-test classes
(:func:`feature_tests` returns None), which say why in ``evidence["reason"]``.
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from detectors.base import DriftResult, json_safe
from detectors.chi_squared import MAX_LISTED, chi2_homogeneity
from detectors.histogram import bin_counts
from detectors.jensen_shannon import JensenShannon, jensenshannon_normalised
from detectors.ks import _attempt_exact_2kssamp, ks_from_differences, pooled_counts
from detectors.missing_rate import missing_psi, two_proportion_z
from detectors.profile import FeatureProfile, WindowColumn, safe_summary
from detectors.psi import PopulationStabilityIndex, psi_of_fractions, smoothed_fractions
from detectors.wasserstein import Wasserstein, _vecdot

__all__ = ["FamilyMember", "Decision", "feature_plan", "feature_tests", "missing_rate_member"]

_PSI, _WASSERSTEIN, _JS = PopulationStabilityIndex(), Wasserstein(), JensenShannon()  # the suite's distances
_LISTED = 50   # bins and fractions a PSI result lists, as PopulationStabilityIndex does
_STR = frozenset({str})


def _finite(x: float) -> float | None:
    """A float as :func:`~detectors.base.json_safe` leaves it."""
    return x if math.isfinite(x) else None


class FamilyMember:
    """A primary or missing-rate result waiting for its window's multiple-testing decision.

    Everything of the :class:`~detectors.base.DriftResult` but threshold and decision;
    ``evidence`` is JSON-safe already and :meth:`decided` adds the decision's keys to it.
    """

    __slots__ = ("detector", "feature", "statistic", "p_value", "threshold_on", "effect_size", "effect_name", "evidence")

    def __init__(self, detector, feature, statistic, p_value, effect_size, effect_name, evidence, threshold_on="p_value"):
        self.detector, self.feature, self.statistic, self.p_value = detector, feature, statistic, p_value
        self.threshold_on, self.effect_size, self.effect_name, self.evidence = threshold_on, effect_size, effect_name, evidence

    @classmethod
    def of(cls, result: DriftResult) -> "FamilyMember":
        """A result of the per-test classes, its evidence copied."""
        return cls(result.detector, result.feature, result.statistic, result.p_value, result.effect_size,
                   result.effect_name, dict(result.evidence), result.threshold_on)

    def decided(self, adjusted: float, significant: bool, threshold: float, decision: "Decision") -> DriftResult:
        """What :func:`detectors.suite._decide` makes of this result."""
        effect_ok = self.effect_size is None or self.effect_size >= decision.min_effect_size
        evidence = self.evidence
        evidence["p_value_adjusted"] = _finite(float(adjusted))
        evidence["correction"] = decision.correction
        evidence["alpha"] = decision.alpha
        evidence["significant"] = bool(significant)
        evidence["min_effect_size"] = decision.safe_min_effect_size
        evidence["effect_size_ok"] = bool(effect_ok)
        return DriftResult(self.detector, self.feature, self.statistic, self.p_value, float(threshold), self.threshold_on,
                           bool(significant and effect_ok), self.effect_size, self.effect_name, evidence)


class Decision:
    """The window settings' part of every decision's evidence, made JSON-safe once per window."""

    __slots__ = ("correction", "alpha", "min_effect_size", "safe_min_effect_size")

    def __init__(self, settings):
        self.correction = json_safe(settings.correction)
        self.alpha = json_safe(settings.alpha)
        self.min_effect_size = settings.min_effect_size
        self.safe_min_effect_size = json_safe(settings.min_effect_size)


# -- what a reference feature gives every window ----------------------------------------------

class _NumericPlan:
    """The reference side of a numeric feature's KS, Wasserstein, PSI and Jensen-Shannon."""

    __slots__ = ("source", "usable", "sample", "edges", "labels", "bin_counts", "n_binned", "bins",
                 "fractions", "psi_p", "js_p", "scale", "safe_scale", "scale_is_std")

    def __init__(self, fp: FeatureProfile, source: tuple):
        self.source = source
        sample, edges = fp.sample, fp.bin_edges
        # Profiles keep the sample sorted and NaN-free and the edges increasing; one built by hand
        # that does not is left to the per-test classes (which sort it, or call scipy).
        self.usable = (_attempt_exact_2kssamp is not None   # else KS is scipy's ks_2samp itself
                       and sample is not None and edges is not None and sample.ndim == 1 and sample.size > 0
                       and sample.dtype == np.float64 and bool(np.isfinite(sample).all())
                       and bool((sample[:-1] <= sample[1:]).all())
                       and edges.ndim == 1 and bool(np.isfinite(edges).all()) and bool((edges[:-1] < edges[1:]).all()))
        if not self.usable:
            return
        self.sample = sample
        self.edges = edges
        if edges.size == 0:
            self.labels = ["all"]
        else:
            self.labels = ([f"< {edges[0]:.6g}"] + [f"[{a:.6g}, {b:.6g})" for a, b in zip(edges[:-1], edges[1:])]
                           + [f">= {edges[-1]:.6g}"])
        counts = bin_counts(edges, sample)
        self.bin_counts = counts
        self.n_binned = int(counts.sum())
        self.bins = self.labels[:_LISTED]
        self.fractions = (counts[:_LISTED] / max(self.n_binned, 1)).tolist()
        self.psi_p = smoothed_fractions(counts, _PSI.pseudo_count)
        js_p = counts / counts.sum()
        self.js_p = js_p / js_p.sum()
        self.scale = fp.std if fp.std else 1.0
        self.safe_scale = json_safe(self.scale)
        self.scale_is_std = bool(fp.std)


class _CategoricalPlan:
    """The reference side of a categorical feature's chi-squared, PSI and Jensen-Shannon."""

    __slots__ = ("source", "usable", "counts", "labels", "row", "n", "fractions", "psi_p", "js_p")

    def __init__(self, fp: FeatureProfile, source: tuple):
        self.source = source
        counts = fp.category_counts
        self.usable = counts is not None and _STR.issuperset(map(type, counts))
        if not self.usable:
            return
        self.counts = counts
        self.labels = list(counts)
        self.row = [int(c) for c in counts.values()]
        self.n = sum(self.row)
        self.usable = self.n > 0 and all(type(c) is int for c in counts.values())
        if not self.usable:
            return
        self.fractions = [c / self.n for c in self.row[:_LISTED]]
        reference = np.array(self.row, dtype=np.int64)
        self.psi_p = smoothed_fractions(reference, _PSI.pseudo_count)   # with no unseen category in the window
        js_p = reference / reference.sum()
        self.js_p = js_p / js_p.sum()


_PLANS: "weakref.WeakKeyDictionary[FeatureProfile, _NumericPlan | _CategoricalPlan]" = weakref.WeakKeyDictionary()


def feature_plan(fp: FeatureProfile):
    """The reference side of ``fp``'s tests, kept while the profile keeps what it was made from."""
    if fp.kind == "numeric":
        source = (fp.kind, fp.sample, fp.bin_edges, fp.std)
    else:
        source = (fp.kind, fp.category_counts)
    plan = _PLANS.get(fp)
    if plan is None or len(plan.source) != len(source) or not all(a is b for a, b in zip(plan.source, source)):
        plan = _PLANS[fp] = (_NumericPlan if fp.kind == "numeric" else _CategoricalPlan)(fp, source)
    return plan


# -- one window ----------------------------------------------------------------------------------

_MISSING_CACHE: dict = {}   # (x_ref, n_ref, x_cur, n_cur) -> (z, p, psi): windows keep meeting the same few
_MISSING_CACHE_SIZE = 4096


def missing_rate_member(fp: FeatureProfile, column: WindowColumn) -> FamilyMember | None:
    """:class:`~detectors.missing_rate.MissingRate`'s result, or None where it has no decision."""
    n_cur, n_ref = int(column.values.size), int(fp.n)
    if not n_cur or not n_ref:
        return None
    x_cur = column.n_missing
    x_ref = int(round(fp.missing_rate * n_ref))
    key = (x_ref, n_ref, x_cur, n_cur)
    hit = _MISSING_CACHE.get(key)
    if hit is None:
        if len(_MISSING_CACHE) >= _MISSING_CACHE_SIZE:
            _MISSING_CACHE.clear()
        p_ref, p_cur = x_ref / n_ref, x_cur / n_cur
        z, p_value = two_proportion_z(x_ref, n_ref, x_cur, n_cur)
        hit = _MISSING_CACHE[key] = (float(z), p_value, missing_psi(p_ref, p_cur, n_ref, n_cur), p_ref, p_cur)
    z, p_value, psi, p_ref, p_cur = hit
    evidence = {"n_reference": n_ref, "n_current": n_cur, "reference_missing_rate": _finite(p_ref),
                "current_missing_rate": _finite(p_cur), "psi": _finite(psi)}
    return FamilyMember("missing_rate", fp.name, z, p_value, psi, "psi", evidence)


def _distance(name: str, feature: str, value: float, evidence: dict, effect_name: str) -> DriftResult:
    test = _PSI if name == "psi" else _WASSERSTEIN if name == "wasserstein" else _JS
    return DriftResult(name, feature, value, None, test.threshold, "statistic", bool(value > test.threshold),
                       effect_size=value, effect_name=effect_name, evidence=evidence)


def _primary_evidence(evidence: dict, distances: list[DriftResult], effect: float) -> dict:
    evidence["distances"] = {r.detector: _finite(float(r.statistic)) for r in distances} | {"psi": _finite(effect)}
    return evidence


_STEPS: dict[int, np.ndarray] = {}   # n -> 1.0, 2.0, ..., n


def _pooled(current: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`detectors.ks.pooled_counts` with the counts as float64, and the gaps between merged values."""
    n1, n = current.size, current.size + reference.size
    pooled = np.concatenate([current, reference])
    order = np.argsort(pooled, kind="stable")
    merged = pooled[order]
    deltas = merged[1:] - merged[:-1]   # np.diff(merged)
    if not deltas.all():   # ties: the counts at the end of each run of equal values
        order, merged, current_le, reference_le = pooled_counts(current, reference)
        return order, merged, deltas, current_le.astype(np.float64), reference_le.astype(np.float64)
    current_le = np.cumsum(order < n1, dtype=np.float64)
    steps = _STEPS.get(n)
    if steps is None:
        if len(_STEPS) > 64:
            _STEPS.clear()
        steps = _STEPS[n] = np.arange(1.0, n + 1.0)
    return order, merged, deltas, current_le, steps - current_le


def feature_tests(fp: FeatureProfile, column: WindowColumn, tests: tuple, primary_name: str | None, detector: str):
    """``(primary, distances)`` of one feature for one window, or None when this path does not cover it.

    ``tests`` are the settings' tests for the feature's kind, ``primary_name`` its primary test
    when one is configured (else None), ``detector`` the primary result's name. ``primary`` is
    a :class:`FamilyMember` (or None), ``distances`` the distance results in ``tests`` order:
    what :func:`detectors.suite._feature_results` gives, built once.
    """
    plan = feature_plan(fp)
    if not plan.usable:
        return None
    if fp.kind == "numeric":
        return _numeric_tests(fp, plan, column, tests, primary_name, detector)
    return _categorical_tests(fp, plan, column, tests, primary_name, detector)


def _numeric_tests(fp, plan: _NumericPlan, column: WindowColumn, tests, primary_name, detector):
    current = column.sorted_present
    n1 = current.size
    if not n1:
        return None
    reference = plan.sample
    n2 = reference.size
    name = fp.name
    # Both ECDFs at every value of both samples, from one stable merge (detectors.ks.pooled_counts),
    # as float64 counts: an integer count divided by a sample size is the same float either way.
    order, merged, deltas, current_le, reference_le = _pooled(current, reference)
    differences = current_le / n1 - reference_le / n2   # ECDF differences, in merged order
    # Histogram on the reference's bins: window values below each edge, from the sorted window.
    bounds = np.empty(plan.edges.size + 2, dtype=np.intp)
    bounds[0], bounds[-1] = 0, n1
    bounds[1:-1] = np.searchsorted(current, plan.edges, side="left")
    counts = bounds[1:] - bounds[:-1]
    column.shared("histograms", fp, lambda: (list(plan.labels), plan.bin_counts.copy(), counts))

    values: dict[str, float] = {}

    def psi_value() -> float:
        if "psi" not in values:
            values["psi"] = psi_of_fractions(plan.psi_p, smoothed_fractions(counts, _PSI.pseudo_count))
        return values["psi"]

    distances = []
    for test in tests:
        if test == "psi":
            evidence = {"n_reference": plan.n_binned, "n_current": n1, "bins": list(plan.bins),
                        "reference_fractions": list(plan.fractions), "current_fractions": (counts[:_LISTED] / n1).tolist()}
            distances.append(_distance("psi", name, psi_value(), evidence, "psi"))
        elif test == "wasserstein":
            if "wasserstein" not in values:
                # scipy's wasserstein_distance(current, reference) as detectors.wasserstein.wasserstein_sorted
                # computes it, on the differences KS uses too
                distance = np.abs(differences[:-1])
                values["wasserstein"] = float(_vecdot(distance, deltas) if _vecdot is not None else
                                              np.sum(distance * deltas, axis=-1))
            raw = values["wasserstein"]
            evidence = {"n_reference": n2, "n_current": n1, "scale": plan.safe_scale,
                        "scale_is_reference_std": plan.scale_is_std, "distance": _finite(raw)}
            distances.append(_distance("wasserstein", name, raw / plan.scale, evidence, "wasserstein_std"))
        elif test == "jensen_shannon":
            if "jensen_shannon" not in values:
                q = counts / counts.sum()
                values["jensen_shannon"] = float(jensenshannon_normalised(plan.js_p, q / q.sum()))
            evidence = {"n_reference": plan.n_binned, "n_current": n1, "n_bins": len(plan.labels)}
            distances.append(_distance("jensen_shannon", name, values["jensen_shannon"], evidence, "jensen_shannon"))
    if primary_name is None:
        return None, distances
    cddiffs = np.empty(differences.size)
    cddiffs[order] = differences   # in the order of concatenate([current, reference]), as ks_2samp has them
    statistic, p_value, location, sign = ks_from_differences(cddiffs, current, reference)
    effect = psi_value()
    evidence = {"n_reference": n2, "n_current": n1, "reference": safe_summary(fp), "current": column.safe_summary,
                "statistic_location": _finite(float(location)), "statistic_sign": int(sign)}
    primary = FamilyMember(detector, name, float(statistic), float(p_value), effect, "psi",
                           _primary_evidence(evidence, distances, effect))
    return primary, distances


def _categorical_tests(fp, plan: _CategoricalPlan, column: WindowColumn, tests, primary_name, detector):
    window_counts = column.counts
    reference_counts = plan.counts
    unseen = sorted(c for c in window_counts if c not in reference_counts)
    categories = plan.labels + unseen if unseen else list(plan.labels)
    window_row = [window_counts.get(c, 0) for c in categories]
    n_cur, n_ref = sum(window_row), plan.n
    if not n_cur or len(categories) < 2 or not _STR.issuperset(map(type, unseen)):
        return None
    reference_row = plan.row + [0] * len(unseen) if unseen else plan.row
    table = np.array([reference_row, window_row], dtype=np.int64)
    column.shared("histograms", fp, lambda: (list(categories), table[0].copy(), table[1].copy()))

    values: dict[str, float] = {}

    def psi_value() -> float:
        if "psi" not in values:
            p = plan.psi_p if not unseen else smoothed_fractions(table[0], _PSI.pseudo_count)
            values["psi"] = psi_of_fractions(p, smoothed_fractions(table[1], _PSI.pseudo_count))
        return values["psi"]

    distances = []
    for test in tests:
        if test == "psi":
            fractions = plan.fractions if not unseen else [c / n_ref for c in reference_row[:_LISTED]]
            evidence = {"n_reference": n_ref, "n_current": n_cur, "bins": categories[:_LISTED],
                        "reference_fractions": list(fractions), "current_fractions": [c / n_cur for c in window_row[:_LISTED]]}
            distances.append(_distance("psi", fp.name, psi_value(), evidence, "psi"))
        elif test == "jensen_shannon":
            if "jensen_shannon" not in values:
                if unseen:
                    p = table[0] / table[0].sum()
                    p = p / p.sum()
                else:
                    p = plan.js_p
                q = table[1] / table[1].sum()
                values["jensen_shannon"] = float(jensenshannon_normalised(p, q / q.sum()))
            evidence = {"n_reference": n_ref, "n_current": n_cur, "n_bins": len(categories)}
            distances.append(_distance("jensen_shannon", fp.name, values["jensen_shannon"], evidence, "jensen_shannon"))
    if primary_name is None:
        return None, distances
    statistic, p_value, dof, expected_freq = chi2_homogeneity(table)
    expected = expected_freq[1]
    contribution = (table[1] - expected) ** 2 / expected + (table[0] - expected_freq[0]) ** 2 / expected_freq[0]
    order = np.argsort(-contribution)[:MAX_LISTED]
    k = len(plan.labels)
    evidence = {
        "n_reference": n_ref,
        "n_current": n_cur,
        "reference": safe_summary(fp),
        "current": column.safe_summary,
        "n_unseen_categories": len(unseen),
        "unseen_categories": unseen[:MAX_LISTED],
        "unseen_rate": float(sum(window_row[k:])) / n_cur,
        "dof": int(dof),
        "largest_changes": [[categories[i], reference_row[i] / n_ref, window_row[i] / n_cur] for i in order.tolist()],
    }
    effect = psi_value()
    primary = FamilyMember(detector, fp.name, float(statistic), float(p_value), effect, "psi",
                           _primary_evidence(evidence, distances, effect))
    return primary, distances
