"""Pure drift statistics for driftline: numpy, scipy and river only, no I/O.

Window tests take a :class:`FeatureProfile` and a window of values and return a
:class:`DriftResult`; :func:`evaluate_window` runs the whole per-window suite.
"""

from detectors.base import DriftResult, OnlineDetector, WindowTest, json_safe
from detectors.calibration import Calibration, calibrate
from detectors.cbpe import CBPE
from detectors.concept import BinaryErrorDetector, ContinuousDetector, make_concept_detector
from detectors.domain_classifier import DomainClassifier
from detectors.quality import DataQuality
from detectors.chi_squared import ChiSquared
from detectors.jensen_shannon import JensenShannon
from detectors.ks import KolmogorovSmirnov, ks_statistic
from detectors.missing_rate import MissingRate
from detectors.multiple_testing import benjamini_hochberg, bonferroni, correct
from detectors.profile import FeatureProfile, ReferenceProfile, infer_kind, to_column
from detectors.psi import PopulationStabilityIndex
from detectors.suite import (
    PREDICTION_COLUMNS,
    WindowReport,
    WindowSettings,
    evaluate_predictions,
    evaluate_window,
)
from detectors.summary import summarize
from detectors.wasserstein import Wasserstein

__all__ = [
    "DriftResult",
    "OnlineDetector",
    "WindowTest",
    "json_safe",
    "FeatureProfile",
    "ReferenceProfile",
    "infer_kind",
    "to_column",
    "summarize",
    "KolmogorovSmirnov",
    "ks_statistic",
    "ChiSquared",
    "MissingRate",
    "PopulationStabilityIndex",
    "Wasserstein",
    "JensenShannon",
    "bonferroni",
    "benjamini_hochberg",
    "correct",
    "make_concept_detector",
    "ContinuousDetector",
    "BinaryErrorDetector",
    "DomainClassifier",
    "CBPE",
    "DataQuality",
    "Calibration",
    "calibrate",
    "WindowSettings",
    "WindowReport",
    "evaluate_window",
    "evaluate_predictions",
    "PREDICTION_COLUMNS",
]
