"""One window, every feature: the per-window drift decision the stream worker calls.

:func:`evaluate_window` runs, per reference feature, one *primary* significance
test (KS for numeric, chi-squared for categorical) plus the missing-rate test,
corrects all primary p-values of the window together (Benjamini-Hochberg by
default), and keeps only those whose effect size (PSI) is at least
``min_effect_size``: on big windows a tiny shift is significant but not worth
an alert. The distances (PSI, Wasserstein in reference std, Jensen-Shannon) are
reported as their own results and copied into the primary result's evidence.

Prediction drift: the model's outputs are just more columns of the same
profile, named ``"__prediction__"`` (class label or regression output) and
``"__score__"`` (score / probability). :func:`evaluate_window` tests them like
features but names the results ``"prediction_ks"`` / ``"prediction_chi_squared"``,
and they are part of the same corrected family. :func:`evaluate_predictions`
runs the same computation for one prediction column alone (uncorrected).

Everything is numpy per column, once per window; nothing here runs per event.
:func:`evaluate_window` builds each feature's results in one pass
(:mod:`detectors.window_block`: the reference side kept per profile, evidence
JSON-safe as it is built), with the numbers the per-test classes give; a feature
that path does not cover goes through those classes (:func:`_feature_results`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from detectors.base import DriftResult, json_safe
from detectors.chi_squared import ChiSquared
from detectors.jensen_shannon import JensenShannon
from detectors.ks import KolmogorovSmirnov
from detectors.missing_rate import MissingRate
from detectors.multiple_testing import CORRECTIONS, correct, raw_threshold
from detectors.profile import FeatureProfile, ReferenceProfile, WindowColumn
from detectors.psi import PopulationStabilityIndex
from detectors.wasserstein import Wasserstein
from detectors.window_block import Decision, FamilyMember, feature_tests, missing_rate_member

__all__ = ["WindowSettings", "WindowReport", "evaluate_window", "decide_family", "evaluate_predictions", "PREDICTION_COLUMNS"]

PREDICTION_COLUMNS = ("__prediction__", "__score__")
PRIMARY = {"numeric": "ks", "categorical": "chi_squared"}
DISTANCES = {"psi": PopulationStabilityIndex, "wasserstein": Wasserstein, "jensen_shannon": JensenShannon}
KNOWN_TESTS = {"numeric": {"ks", *DISTANCES}, "categorical": {"chi_squared", "psi", "jensen_shannon"}}


@dataclass
class WindowSettings:
    """How one window is judged.

    Examples
    --------
    >>> WindowSettings.from_dict({"alpha": 0.05, "numeric_tests": ["ks", "psi"]})
    WindowSettings(alpha=0.05, correction='bh', min_effect_size=0.05, numeric_tests=('ks', 'psi'), categorical_tests=('chi_squared', 'psi', 'jensen_shannon'), missing_rate=True)
    """

    alpha: float = 0.01  # family-wise / FDR level per window
    correction: str = "bh"  # "bh" | "bonferroni" | "none"
    min_effect_size: float = 0.05  # PSI below this never alerts, however small the p-value
    numeric_tests: tuple = ("ks", "psi", "wasserstein", "jensen_shannon")
    categorical_tests: tuple = ("chi_squared", "psi", "jensen_shannon")
    missing_rate: bool = True

    def __post_init__(self):
        self.numeric_tests = tuple(self.numeric_tests)
        self.categorical_tests = tuple(self.categorical_tests)
        if self.correction not in CORRECTIONS:
            raise ValueError(f"unknown correction {self.correction!r}; expected one of {CORRECTIONS}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        for kind, tests in (("numeric", self.numeric_tests), ("categorical", self.categorical_tests)):
            unknown = set(tests) - KNOWN_TESTS[kind]
            if unknown:
                raise ValueError(f"unknown {kind} tests {sorted(unknown)}; expected some of {sorted(KNOWN_TESTS[kind])}")

    @classmethod
    def from_dict(cls, d: Mapping) -> "WindowSettings":
        """Build from config; unknown keys are an error (catches typos)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown window settings {sorted(unknown)}")
        return cls(**dict(d))

    def to_dict(self) -> dict:
        return json_safe(dataclasses.asdict(self))


@dataclass
class WindowReport:
    """Everything computed for one window.

    ``results`` holds every result after correction (primary, missing-rate and
    distance results, in feature order); ``drifted`` the primary and
    missing-rate results that fired after the multiple-testing correction and
    the effect-size gate, i.e. what should alert; ``summaries`` the window's
    summary per reference feature.
    """

    results: list[DriftResult]
    summaries: dict[str, dict]
    drifted: list[DriftResult]
    reference_id: str = ""
    n: int = 0
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "reference_id": self.reference_id,
            "n": int(self.n),
            "settings": json_safe(self.settings),
            "results": [r.to_dict() for r in self.results],
            "summaries": json_safe(self.summaries),
            "drifted": [r.to_dict() for r in self.drifted],
        }


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

    >>> from detectors.base import DriftResult
    >>> family = [DriftResult("ks", f, 0.1, p, 0.01, "p_value", False, effect_size=0.2)
    ...           for f, p in (("a", 0.001), ("b", 0.004), ("c", 0.5))]
    >>> [(r.feature, r.drifted, round(r.evidence["p_value_adjusted"], 3)) for r in decide_family(family, WindowSettings())]
    [('a', True, 0.003), ('b', True, 0.006), ('c', False, 0.5)]
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

    Examples
    --------
    >>> rng = np.random.default_rng(7)
    >>> ref = ReferenceProfile.from_columns({"x": rng.normal(size=2000), "c": rng.choice(["a", "b"], size=2000)})
    >>> report = evaluate_window(ref, {"x": rng.normal(size=1000), "c": rng.choice(["a", "b"], size=1000)})
    >>> report.drifted
    []
    >>> report = evaluate_window(ref, {"x": rng.normal(1.0, size=1000), "c": rng.choice(["a", "b"], size=1000)})
    >>> [(r.detector, r.feature) for r in report.drifted]
    [('ks', 'x')]
    """
    n = max((len(v) for v in window.values()), default=0)
    summaries: dict[str, dict] = {}
    per_feature: list[tuple] = []
    for name, fp in reference.features.items():
        raw = window.get(name)
        if raw is None:
            raw = np.full(n, np.nan) if fp.kind == "numeric" else np.full(n, None, dtype=object)
        column = WindowColumn.of(raw, fp.value_type)  # converted, counted and binned once for every test below
        summaries[name] = column.summary
        per_feature.append(_feature_members(fp, column, settings))

    # The family: every primary and missing-rate test that has a decision to make.
    family = [r for p, m, _ in per_feature for r in (p, m) if type(r) is FamilyMember]
    decided: dict[int, DriftResult] = {}
    if family:
        p_values = np.array([r.p_value for r in family], dtype=np.float64)
        adjusted, reject = correct(p_values, settings.alpha, settings.correction)
        threshold = raw_threshold(p_values, settings.alpha, settings.correction)
        decision = Decision(settings)
        decided = {id(r): r.decided(a, s, threshold, decision) for r, a, s in zip(family, adjusted.tolist(), reject.tolist())}

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


def _feature_members(fp: FeatureProfile, column: WindowColumn, settings: WindowSettings) -> tuple:
    """``(primary, missing, distances)`` of one feature: the primary and missing-rate results a
    :class:`~detectors.window_block.FamilyMember` when they have a decision to make (else a
    :class:`DriftResult` with the reason, or None when not configured), the distances as
    :func:`_feature_results` gives them. :mod:`detectors.window_block` builds them in one pass;
    what it does not cover goes through the per-test classes."""
    tests = settings.numeric_tests if fp.kind == "numeric" else settings.categorical_tests
    primary_name = PRIMARY[fp.kind]
    detector = ("prediction_" if fp.name in PREDICTION_COLUMNS else "") + primary_name
    fast = feature_tests(fp, column, tests, primary_name if primary_name in tests else None, detector)
    if fast is not None:
        primary, distances = fast
    else:
        primary, distances, _ = _feature_results(fp, column, settings)
        if primary is not None and "reason" not in primary.evidence:
            primary = FamilyMember.of(primary)
    missing = None
    if settings.missing_rate:
        missing = missing_rate_member(fp, column) or MissingRate(settings.alpha).test(fp, column)
    return primary, missing, distances


def evaluate_predictions(
    reference_predictions: FeatureProfile,
    window_values: Sequence | np.ndarray,
    settings: WindowSettings = WindowSettings(),
) -> DriftResult:
    """Prediction drift of one output column: ``"prediction_ks"`` (numeric) or ``"prediction_chi_squared"``.

    The same computation :func:`evaluate_window` does for ``"__prediction__"``
    and ``"__score__"``, alone: no multiple-testing correction, same effect gate.

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> ref = FeatureProfile.from_values("__score__", rng.beta(2, 5, size=2000))
    >>> evaluate_predictions(ref, rng.beta(2, 5, size=1000)).drifted
    False
    >>> r = evaluate_predictions(ref, rng.beta(4, 3, size=1000))
    >>> r.detector, r.drifted
    ('prediction_ks', True)
    """
    fp = reference_predictions
    column = WindowColumn(window_values, fp.kind)
    primary, distances, effect = _feature_results(fp, column, settings)
    if primary is None:
        return distances[0]
    if not primary.detector.startswith("prediction_"):
        primary = replace(primary, detector="prediction_" + primary.detector)
    if "reason" in primary.evidence:
        return primary
    return _decide(primary, primary.p_value, primary.p_value <= settings.alpha, settings.alpha, settings)
