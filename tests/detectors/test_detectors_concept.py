"""Online concept detectors: the 1 = error convention, input validation, run lengths."""

import numpy as np
import pytest

from detectors import make_concept_detector
from detectors.concept import BinaryErrorDetector, ContinuousDetector

BINARY = ["ddm", "eddm", "hddm_a", "hddm_w", "fhddm"]


def first_alarm(detector, stream, start=0):
    for i, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected and i >= start:
            return i
    return None


@pytest.mark.parametrize("name", BINARY)
def test_binary_detectors_validate_input(name):
    detector = make_concept_detector(name)
    assert isinstance(detector, BinaryErrorDetector)
    for good in (0, 1, True, False, 0.0, 1.0, np.int64(1)):
        detector.update(good)
    for bad in (0.5, 2, -1, "1", None, float("nan")):
        with pytest.raises(ValueError):
            detector.update(bad)


def test_continuous_detectors_reject_non_numbers():
    detector = make_concept_detector("adwin")
    assert isinstance(detector, ContinuousDetector)
    detector.update(0.37)
    for bad in ("x", None, float("inf")):
        with pytest.raises(ValueError):
            detector.update(bad)


def test_names_are_normalised_and_unknown_rejected():
    assert make_concept_detector("HDDM_A").name == "hddm_a"
    assert make_concept_detector("PageHinkley").name == "page_hinkley"
    with pytest.raises(ValueError):
        make_concept_detector("cusum")


@pytest.mark.parametrize("name", ["ddm", "hddm_a", "fhddm", "page_hinkley"])
def test_fires_when_error_rate_rises_not_when_it_falls(name):
    """1 = error; the detector must fire on a rising error rate. FHDDM only does so because the
    wrapper feeds it 1 - x: river's FHDDM fires on a *falling* mean of its input."""
    rng = np.random.default_rng(7)
    rising = np.concatenate([rng.random(1000) < 0.1, rng.random(1000) < 0.5]).astype(int).tolist()
    falling = np.concatenate([rng.random(1000) < 0.5, rng.random(1000) < 0.1]).astype(int).tolist()
    assert first_alarm(make_concept_detector(name), rising, start=1000) is not None
    assert first_alarm(make_concept_detector(name), falling) is None


def test_raw_river_fhddm_fires_on_falling_mean():
    """Pins the river 0.26.1 behaviour the wrapper corrects for: raw FHDDM fed 1 = error
    fires when errors *fall* and stays silent when they rise."""
    from river.drift.binary import FHDDM

    rng = np.random.default_rng(7)
    rising = np.concatenate([rng.random(1000) < 0.1, rng.random(1000) < 0.5]).astype(int).tolist()
    falling = np.concatenate([rng.random(1000) < 0.5, rng.random(1000) < 0.1]).astype(int).tolist()
    assert first_alarm(FHDDM(), falling, start=1000) is not None
    assert first_alarm(FHDDM(), rising) is None


# Run length, alibi-detect style. Config: Page-Hinkley(mode="up", threshold=10, delta=0.005)
# on a Bernoulli(0.1) error stream. Measured ERT about 1700 updates (seeded); the stated band
# is [1000, 3000]. After the error rate jumps to 0.3 the mean detection delay must be < ERT / 10.
PH_CONFIG = {"threshold": 10, "delta": 0.005}
ERT_BAND = (1000, 3000)


def test_page_hinkley_mean_run_length_is_in_band():
    rng = np.random.default_rng(0)
    stream = (rng.random(200_000) < 0.1).astype(int).tolist()
    detector = make_concept_detector("page_hinkley", **PH_CONFIG)
    last, run_lengths = 0, []
    for i, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected:  # river resets the detector on the next update
            run_lengths.append(i - last)
            last = i
    assert len(run_lengths) >= 30
    assert ERT_BAND[0] <= np.mean(run_lengths) <= ERT_BAND[1]


def test_page_hinkley_detection_delay_is_well_below_ert():
    delays = []
    for seed in range(30):
        rng = np.random.default_rng(1000 + seed)
        pre = (rng.random(300) < 0.1).astype(int).tolist()
        post = (rng.random(3000) < 0.3).astype(int).tolist()
        detector = make_concept_detector("page_hinkley", **PH_CONFIG)
        for x in pre:
            detector.update(x)
        delays.append(first_alarm(detector, post))
    assert all(d is not None for d in delays)
    assert np.mean(delays) < ERT_BAND[0] / 10
