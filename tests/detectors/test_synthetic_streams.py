"""Concept drift on river's synthetic streams, with pinned detection indices and a dummy baseline.

A Hoeffding tree learns each stream prequentially; its 0/1 errors feed the
concept detector. The change is a ``ConceptDriftStream`` at event 3,000 (width
50). Beside each detector runs river's dummy detector firing every 1,000 events
(a periodic alarm needs no information, so a useful detector must beat its delay).
Indices are pinned: a change in river or in our wrapper that moves them shows up here.
"""
from __future__ import annotations

import pytest
from river import drift, tree
from river.datasets import synth

from detectors.concept import make_concept_detector

POSITION = 3000


def _streams():
    return {
        "sea": synth.ConceptDriftStream(synth.SEA(seed=1, variant=0), synth.SEA(seed=2, variant=3),
                                        seed=3, position=POSITION, width=50),
        "agrawal": synth.ConceptDriftStream(synth.Agrawal(classification_function=0, seed=1),
                                            synth.Agrawal(classification_function=4, seed=2),
                                            seed=3, position=POSITION, width=50),
        "stagger": synth.ConceptDriftStream(synth.STAGGER(classification_function=0, seed=1),
                                            synth.STAGGER(classification_function=2, seed=2),
                                            seed=3, position=POSITION, width=50),
    }


def _run(stream, n=6000):
    model = tree.HoeffdingTreeClassifier(grace_period=50)
    detector = make_concept_detector("adwin")
    dummy = drift.DummyDriftDetector(trigger_method="fixed", t_0=1000, w=1000, seed=0)
    fired, dummy_fired = [], []
    for i, (x, y) in enumerate(stream.take(n)):
        prediction = model.predict_one(x)
        error = 1.0 if prediction != y else 0.0
        model.learn_one(x, y)
        detector.update(error)
        dummy.update(error)
        if detector.drift_detected:
            fired.append(i)
        if dummy.drift_detected:
            dummy_fired.append(i)
    return fired, dummy_fired


@pytest.mark.parametrize("name, pinned", [
    ("sea", [3231, 4095]),
    ("agrawal", [1087, 3007]),   # 1087: the tree's error falling while it learns (a change, not a drift)
    ("stagger", [3039, 3391]),
])
def test_adwin_on_the_error_stream_beats_a_periodic_alarm(name, pinned):
    fired, dummy_fired = _run(_streams()[name])
    assert fired == pinned
    delay = min(i for i in fired if i >= POSITION) - POSITION
    dummy_delay = min(i for i in dummy_fired if i >= POSITION) - POSITION
    assert dummy_delay == 864
    assert delay < dummy_delay / 3
    assert len([i for i in fired if 1500 <= i < POSITION]) == 0, "no alarm on the learnt, stable concept"
