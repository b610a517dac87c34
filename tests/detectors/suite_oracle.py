"""Test oracle: :func:`detectors.suite.evaluate_window` as it was before the one-pass window
block (main at 26ed33c), one test object per feature and test, each result decided by
``_decide``. ``test_evaluate_window_fast.py`` compares the new implementation with it; the
per-test classes it calls (``KolmogorovSmirnov`` and the others) are the public ones, unchanged.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from detectors.base import DriftResult, json_safe
from detectors.chi_squared import ChiSquared
from detectors.ks import KolmogorovSmirnov
from detectors.missing_rate import MissingRate
from detectors.multiple_testing import correct, raw_threshold
from detectors.profile import FeatureProfile, ReferenceProfile, WindowColumn
from detectors.psi import PopulationStabilityIndex
from detectors.suite import DISTANCES, PREDICTION_COLUMNS, PRIMARY, WindowReport, WindowSettings


def _replace(result: DriftResult, **changes) -> DriftResult:
    """``dataclasses.replace`` without its per-call field introspection (it runs for every result)."""
    return DriftResult(**{**result.__dict__, **changes})


def _feature_results(fp: FeatureProfile, column: WindowColumn, settings: WindowSettings) -> tuple[DriftResult | None, list[DriftResult], float]:
    """Primary result (uncorrected), distance results and the PSI used as effect size."""
    tests = settings.numeric_tests if fp.kind == "numeric" else settings.categorical_tests
    prefix = "prediction_" if fp.name in PREDICTION_COLUMNS else ""
    distances = [DISTANCES[name]().test(fp, column) for name in tests if name in DISTANCES]
    by_name = {r.detector: r for r in distances}
    gate = by_name["psi"] if "psi" in by_name else PopulationStabilityIndex().test(fp, column)
    effect = float(gate.statistic)
    primary_name = PRIMARY[fp.kind]
    if primary_name not in tests:
        return None, distances, effect
    test = KolmogorovSmirnov(settings.alpha) if fp.kind == "numeric" else ChiSquared(settings.alpha)
    primary = test.test(fp, column, detector=prefix + primary_name)
    evidence = dict(primary.evidence)  # already JSON-safe: only what is added here needs converting
    evidence["distances"] = json_safe({r.detector: float(r.statistic) for r in distances} | {"psi": effect})
    primary = _replace(primary, effect_size=effect, effect_name="psi", evidence=evidence)
    return primary, distances, effect


def _decide(result: DriftResult, adjusted: float, significant: bool, threshold: float, settings: WindowSettings) -> DriftResult:
    effect_ok = result.effect_size is None or result.effect_size >= settings.min_effect_size
    evidence = dict(result.evidence)  # already JSON-safe: only what is added here needs converting
    evidence.update(json_safe(dict(
        p_value_adjusted=float(adjusted),
        correction=settings.correction,
        alpha=settings.alpha,
        significant=bool(significant),
        min_effect_size=settings.min_effect_size,
        effect_size_ok=bool(effect_ok),
    )))
    return _replace(result, threshold=float(threshold), drifted=bool(significant and effect_ok), evidence=evidence)


def decide_family(family: Sequence[DriftResult], settings: WindowSettings) -> list[DriftResult]:
    """Correct the p-values of one family of tests together, then apply the effect-size gate.

    The window's primary and missing-rate tests are one family; segment drift makes
    every segment x feature test of a window another one.

    """
    p_values = np.array([r.p_value for r in family], dtype=np.float64)
    adjusted, reject = correct(p_values, settings.alpha, settings.correction)
    threshold = raw_threshold(p_values, settings.alpha, settings.correction)
    return [_decide(r, a, s, threshold, settings) for r, a, s in zip(family, adjusted, reject)]


def evaluate_window(
    reference: ReferenceProfile,
    window: Mapping[str, Sequence | np.ndarray],
    settings: WindowSettings = WindowSettings(),
) -> WindowReport:
    """Test one window of rows (as columns) against the reference profile.

    Features in the reference but absent from ``window`` count as all missing;
    features not in the reference are ignored here (:mod:`detectors.quality`
    reports them). A primary result's ``threshold`` is the threshold on its raw
    p-value equivalent to the correction; the adjusted p-value is in
    ``evidence["p_value_adjusted"]``. A column may be a :class:`WindowColumn`
    already (the monitor builds them once per window for every check).
    """
    n = max((len(v) for v in window.values()), default=0)
    summaries: dict[str, dict] = {}
    per_feature: list[tuple[DriftResult | None, DriftResult | None, list[DriftResult]]] = []
    missing_test = MissingRate(settings.alpha)
    for name, fp in reference.features.items():
        raw = window.get(name)
        if raw is None:
            raw = np.full(n, np.nan) if fp.kind == "numeric" else np.full(n, None, dtype=object)
        column = WindowColumn.of(raw, fp.value_type)  # converted, counted and binned once for every test below
        summaries[name] = column.summary
        primary, distances, _ = _feature_results(fp, column, settings)
        missing = missing_test.test(fp, column) if settings.missing_rate else None
        per_feature.append((primary, missing, distances))

    # The family: every primary and missing-rate test that actually ran.
    family = [r for p, m, _ in per_feature for r in (p, m) if r is not None and "reason" not in r.evidence]
    decided = {id(r): d for r, d in zip(family, decide_family(family, settings))}

    results: list[DriftResult] = []
    drifted: list[DriftResult] = []
    for primary, missing, distances in per_feature:
        for r in (primary, missing):
            if r is None:
                continue
            r = decided.get(id(r), r)
            results.append(r)
            if r.drifted:
                drifted.append(r)
        if primary is None and distances:
            # No significance test configured: the first distance decides, on its statistic.
            results.append(distances[0])
            if distances[0].drifted:
                drifted.append(distances[0])
            distances = distances[1:]
        results.extend(distances)
    return WindowReport(results=results, summaries=summaries, drifted=drifted,
                        reference_id=reference.reference_id, n=n, settings=settings.to_dict())
