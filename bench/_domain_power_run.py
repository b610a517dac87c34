"""One side of bench.domain_power, in its own process: CORE_DIR's ``detectors`` is imported.

    python bench/_domain_power_run.py CORE_DIR N_WINDOWS   -> one JSON line
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

LEVELS = np.array(list("abcdefgh"))
SCENARIOS = {"stationary": {}, "f3+0.2": {"f3": 0.2}, "f3+0.3": {"f3": 0.3}, "f3+0.5": {"f3": 0.5},
             "c1 mix 0.3": {"c1": 0.3}, "c5 mix 0.15": {"c5": 0.15}, "f3+0.3 and c1 mix 0.3": {"f3": 0.3, "c1": 0.3}}


def rows(rng, n: int, shift: dict) -> dict:
    factor = rng.normal(size=n)
    columns = {}
    for j in range(10):
        x = 0.6 * factor + 0.8 * rng.normal(size=n) + shift.get(f"f{j}", 0.0)
        x[rng.random(n) < 0.02] = np.nan
        columns[f"f{j}"] = x
    for j in range(10):
        weights = np.ones(8)
        if f"c{j}" in shift:   # a mix change: the first two levels gain share
            weights[:2] += 8 * shift[f"c{j}"]
        p = weights / weights.sum()
        if j < 2:   # tied to the factor: the level depends on it
            codes = np.clip(((factor + rng.normal(scale=0.7, size=n)) * 2 + 4).astype(int), 0, 7)
            if f"c{j}" in shift:
                swap = rng.random(n) < shift[f"c{j}"]
                codes[swap] = rng.choice(8, size=int(swap.sum()), p=p)
        else:
            codes = rng.choice(8, size=n, p=p)
        c = LEVELS[codes].astype(object)
        c[rng.random(n) < 0.02] = None
        columns[f"c{j}"] = c
    return columns


def main() -> None:
    core, n_windows = sys.argv[1], int(sys.argv[2])
    sys.path.insert(0, core)
    from detectors.domain_classifier import DomainClassifier
    from detectors.profile import ReferenceProfile
    from detectors.settings import ModelSettings

    assert sys.modules["detectors"].__path__[0].startswith(core), "wrong core imported"
    settings = {k: v for k, v in ModelSettings().multivariate.items() if k not in ("enabled", "every")}
    out = {}
    cpu = 0.0
    for name, shift in SCENARIOS.items():
        p_values, named = [], []
        for w in range(n_windows):
            rng = np.random.default_rng(1000 * w + 7)
            reference = ReferenceProfile.from_columns(rows(rng, 2000, {}))
            window = rows(rng, 1000, shift)
            test = DomainClassifier(**settings)
            started = time.process_time()
            r = test.test(reference, window)
            cpu += time.process_time() - started
            p_values.append(r.p_value)
            top = [k for k, _ in r.evidence["top_features"]]
            named.append(top[:len(shift)] if shift else top[:2])
        shifted = set(SCENARIOS[name])
        out[name] = {"p_values": p_values,
                     "named_right": [bool(shifted) and set(t) == shifted for t in named]}
    alpha = settings["alpha"]
    null = np.sort(out["stationary"]["p_values"])
    q05 = float(np.quantile(null, 0.05))
    summary = {}
    for name, r in out.items():
        p = np.asarray(r["p_values"])
        fired = p <= alpha
        summary[name] = {"rate_at_alpha": float(fired.mean()), "rate_at_null_q05": float((p <= q05).mean()),
                         "named_right_when_fired": (float(np.mean(np.asarray(r["named_right"])[fired]))
                                                    if fired.any() else None),
                         "named_right_all": float(np.mean(r["named_right"])),
                         "median_p": float(np.median(p))}
    print(json.dumps({"alpha": alpha, "null_q05": q05, "cpu_ms_per_test": 1000 * cpu / (n_windows * len(SCENARIOS)),
                      "scenarios": summary}))


if __name__ == "__main__":
    main()
