"""The evidence of the window's tests, built from cached JSON-safe summaries (profile.safe_evidence),
against what json_safe of the whole evidence gave: the same values, types and key order, on a
window with ties, missing values, junk and unseen categories."""
from __future__ import annotations

import numpy as np
import orjson

from detectors.base import json_safe
from detectors.profile import ReferenceProfile, WindowColumn
from detectors.suite import evaluate_window


def _columns(rng, n: int, shift: float) -> dict:
    base = rng.normal(size=n)
    amount = np.round(base * 2 + rng.normal(size=n), 1) + shift          # rounded: ties
    amount = [None if rng.random() < 0.05 else float(v) for v in amount]  # missing values
    amount[3] = "junk"
    plan = rng.choice(["a", "b", "c"], size=n).tolist()
    if shift:
        plan[:40] = ["new"] * 40                                          # unseen category
    plan[5] = None
    return {"amount": amount, "plan": plan, "flag": (rng.random(n) < 0.3).tolist(),
            "__score__": (1 / (1 + np.exp(-base))).tolist()}


def test_evidence_equals_json_safe_of_the_raw_evidence():
    rng = np.random.default_rng(11)
    reference = ReferenceProfile.from_columns(_columns(rng, 2000, 0.0))
    for shift in (0.0, 0.7):
        window = _columns(rng, 800, shift)
        report = evaluate_window(reference, window)
        checked = 0
        for result in report.results:
            evidence = result.evidence
            assert orjson.dumps(evidence) == orjson.dumps(json_safe(evidence))   # same keys, order, values
            if "reference" in evidence and "current" in evidence:
                profile = reference.features[result.feature]
                column = WindowColumn(window[result.feature], profile.value_type)
                assert evidence["reference"] == json_safe(profile.summary)
                assert evidence["current"] == json_safe(column.summary)
                checked += 1
        assert checked >= 4
