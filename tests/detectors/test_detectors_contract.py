"""One parametrised contract for every window test and every online detector."""

import pickle

import numpy as np
import pytest

from detectors import (
    ChiSquared,
    FeatureProfile,
    JensenShannon,
    KolmogorovSmirnov,
    MissingRate,
    OnlineDetector,
    PopulationStabilityIndex,
    Wasserstein,
    WindowTest,
    make_concept_detector,
)
from detectors.concept import CONCEPT_DETECTORS

RNG_SEED = 0
CATS = np.array(list("abcde"))


def numeric_data(kind):
    rng = np.random.default_rng(RNG_SEED)
    ref = rng.normal(size=2000)
    if kind == "stationary":
        return ref, rng.normal(size=1000)
    return ref, rng.normal(loc=1.0, size=1000)


def categorical_data(kind):
    rng = np.random.default_rng(RNG_SEED)
    p = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    ref = rng.choice(CATS, p=p, size=2000)
    return ref, rng.choice(CATS, p=p if kind == "stationary" else p[::-1], size=1000)


def missing_data(kind):
    rng = np.random.default_rng(RNG_SEED)
    ref = np.where(rng.random(2000) < 0.05, np.nan, rng.normal(size=2000))
    rate = 0.05 if kind == "stationary" else 0.25
    return ref, np.where(rng.random(1000) < rate, np.nan, rng.normal(size=1000))


WINDOW_TESTS = [
    (KolmogorovSmirnov(alpha=0.01), numeric_data),
    (ChiSquared(alpha=0.01), categorical_data),
    (MissingRate(alpha=0.01), missing_data),
    (PopulationStabilityIndex(), numeric_data),
    (PopulationStabilityIndex(), categorical_data),
    (Wasserstein(), numeric_data),
    (JensenShannon(), numeric_data),
    (JensenShannon(), categorical_data),
]


@pytest.mark.parametrize("test, data", WINDOW_TESTS, ids=lambda x: repr(x) if not callable(x) or hasattr(x, "test") else x.__name__)
def test_window_test_contract(test, data):
    assert isinstance(test, WindowTest)
    assert repr(test).startswith(type(test).__name__ + "(")
    assert repr(test.clone()) == repr(test)
    ref, window = data("stationary")
    fp = FeatureProfile.from_values("f", ref)
    quiet = test.test(fp, window)
    assert not quiet.drifted
    assert quiet.threshold_on in ("p_value", "statistic")
    ref, window = data("jump")
    fp = FeatureProfile.from_values("f", ref)
    loud = test.test(fp, window)
    assert loud.drifted
    if loud.threshold_on == "p_value":
        assert loud.p_value <= loud.threshold
    else:
        assert loud.statistic > loud.threshold
    assert loud.feature == "f" and loud.detector == test.name
    again = pickle.loads(pickle.dumps(test))
    assert again.test(FeatureProfile.from_dict(fp.to_dict()), window) == loud
    loud.to_dict()


# Per-detector settings for the contract: river defaults unless noted. DDM and EDDM
# are noisy on long stationary streams (see README of river and the explorations in
# test_detectors_concept.py), so they get a longer warm-up / lower thresholds here.
ONLINE = {
    "adwin": {},
    "page_hinkley": {},
    "kswin": {},
    "ddm": {"warm_start": 100},
    "eddm": {"alpha": 0.7, "beta": 0.6, "warm_start": 50},
    "hddm_a": {},
    "hddm_w": {},
    "fhddm": {},
}


def error_stream(seed, n_before=1000, n_after=1000, p_before=0.1, p_after=0.5):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.random(n_before) < p_before, rng.random(n_after) < p_after]).astype(int).tolist()


def alarms(detector, stream):
    out = []
    for i, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected:
            out.append(i)
    return out


def test_every_river_detector_is_covered():
    assert set(ONLINE) == set(CONCEPT_DETECTORS)


@pytest.mark.parametrize("name", sorted(ONLINE))
def test_online_detector_contract(name):
    detector = make_concept_detector(name, **ONLINE[name])
    assert isinstance(detector, OnlineDetector)
    assert detector.name == name
    assert repr(detector).startswith(type(detector).__name__ + "(")
    n_before = 1000 if name != "kswin" else 300  # KSWIN runs a scipy KS test per update (~0.5 ms)
    stream = error_stream(RNG_SEED, n_before=n_before, n_after=n_before)
    first_half, second_half = stream[:n_before], stream[n_before:]
    assert alarms(detector, first_half) == [], "false alarm on the stationary part"
    copy = pickle.loads(pickle.dumps(detector))
    fired = alarms(detector, second_half)
    assert fired, "no alarm after the error rate jumped from 0.1 to 0.5"
    assert alarms(copy, second_half) == fired, "pickled copy decides differently"
    fresh = detector.clone()
    assert alarms(fresh, first_half) == []
