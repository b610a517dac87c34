"""``data_quality.unseen_categories`` is judged against what chance gives a stationary stream.

A categorical with hundreds of levels keeps showing values its reference never saw: with a fixed
1 % rate, a stationary Zipf feature of 300 levels alerted in 20 of 20 windows (reference 2,000,
windows of 1,000). The count now needs a p-value bound (detectors.quality.unseen_p_value_bound)
at most ``unseen_alpha`` as well.
"""
from __future__ import annotations

import csv
import itertools
import math

import numpy as np
import pytest

from detectors.monitor import ModelMonitor
from detectors.profile import ReferenceProfile
from detectors.quality import unseen_p_value_bound
from detectors.settings import ModelSettings


def _unseen(reference: list, window: list) -> int:
    seen = set(reference)
    return sum(v not in seen for v in window)


def _counts(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


@pytest.mark.parametrize("pooled", [list("aaaabbbccdef"), list("aabbccddeeff"), list("abcdefghijkl"),
                                    list("aaaaaaabbcde")])
def test_the_bound_holds_over_every_split_of_the_pooled_values(pooled):
    """Exact permutation tail by enumeration of all C(12, 5) windows: the bound is never below it."""
    m = 5
    tails: dict[int, int] = {}
    splits = list(itertools.combinations(range(len(pooled)), m))
    for chosen in splits:
        window = [pooled[i] for i in chosen]
        reference = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        k = _unseen(reference, window)
        for j in range(1, k + 1):
            tails[j] = tails.get(j, 0) + 1
    reference, window = pooled[m:], pooled[:m]
    for k, count in tails.items():
        exact = count / len(splits)
        bound = unseen_p_value_bound(k, _counts(reference), _counts(window))
        assert bound >= exact - 1e-12, (k, bound, exact)


def _zipf(rng, levels: int, n: int, a: float = 1.1) -> np.ndarray:
    p = 1 / np.arange(1, levels + 1) ** a
    return rng.choice(levels, n, p=p / p.sum())


def test_the_bound_is_above_the_permutation_tail_and_not_far_from_it():
    rng = np.random.default_rng(4)
    pooled = [f"v{i}" for i in _zipf(rng, 300, 3000)]
    reference, window = pooled[:2000], pooled[2000:]
    k_obs = _unseen(reference, window)
    draws = np.array([_unseen(p[:2000], p[2000:]) for p in (list(rng.permutation(pooled)) for _ in range(2000))])
    for k in (k_obs, int(np.quantile(draws, 0.99))):
        mc = (draws >= k).mean()
        bound = unseen_p_value_bound(k, _counts(reference), _counts(window))
        assert bound >= mc - 4 * math.sqrt(mc * (1 - mc) / draws.size) - 1e-3, (k, bound, mc)
        assert bound <= 20 * max(mc, 1e-3), (k, bound, mc)     # conservative, not useless


def _population(rng, n: int, new_from: int | None = None):
    """A product id (Zipf, 300 levels) whose popular items depend on the region and the price."""
    region = rng.choice(["eu", "us", "apac"], n, p=[0.5, 0.3, 0.2])
    item = _zipf(rng, 300, n) + np.where(region == "us", 7, 0)            # the us ranks items differently
    price = np.round(np.exp(3 + 0.002 * item + rng.normal(0, 0.3, n)), 2)
    products = np.array([f"sku-{i}" for i in item], dtype=object)
    if new_from is not None:                                             # a catalogue launch
        launched = rng.random(n - new_from) < 0.05
        products[new_from:][launched] = "sku-new"
    score = 1 / (1 + np.exp(-(np.log(price) - 3.3)))
    return products, price, region, score


def _events(rng, start: int, n: int, new_from: int | None = None):
    products, price, region, score = _population(rng, n, new_from)
    return [{"prediction_id": f"p{start + i}", "model": "m", "model_version": "1", "timestamp": 1e6 + (start + i) * 0.01,
             "features": {"product": str(products[i]), "price": float(price[i]), "region": str(region[i])},
             "prediction": bool(score[i] >= 0.5), "score": float(score[i]), "segment": {"region": str(region[i])},
             "latency_ms": None} for i in range(n)]


def _reference_from_csv(rng, tmp_path, n: int) -> ReferenceProfile:
    products, price, region, score = _population(rng, n)
    path = tmp_path / "reference.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([["product", "price", "region", "__score__"],
                                  *zip(products, price, region, score.round(6))])
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    numeric = {"price", "__score__"}
    return ReferenceProfile.from_columns({k: [float(r[k]) if k in numeric else r[k] for r in rows] for k in rows[0]})


def _unseen_alerts(rng, tmp_path, windows: int, alpha: float = 1e-4, new_from_window: int | None = None) -> list:
    monitor = ModelMonitor("m", ModelSettings(reference_size=2000, window_size=1000,
                                              quality={"unseen_alpha": alpha}))
    monitor.set_reference("1", _reference_from_csv(rng, tmp_path, 2000), source="file")
    alerts = []
    for w in range(windows):
        new_from = 0 if new_from_window is not None and w >= new_from_window else None
        for what, alert in monitor.add_predictions(_events(rng, w * 1000, 1000, new_from), offset=w, partition=0):
            if what == "alert" and alert["kind"] == "data_quality":
                alerts.append((w, alert))
    assert monitor.versions["1"].window_index == windows
    return alerts


@pytest.mark.parametrize("seed", [1, 2])
def test_silent_on_a_stationary_high_cardinality_feature_with_a_reference_from_a_file(seed, tmp_path):
    quiet = _unseen_alerts(np.random.default_rng(seed), tmp_path, 30)
    assert quiet == []
    rate_alone = _unseen_alerts(np.random.default_rng(seed), tmp_path, 30, alpha=1.0)
    assert len(rate_alone) >= 1 and all("product" in a["evidence"] for _, a in rate_alone)   # it can fail


def test_fires_on_a_new_category_in_a_high_cardinality_feature(tmp_path):
    alerts = _unseen_alerts(np.random.default_rng(3), tmp_path, 8, new_from_window=5)
    assert [w for w, _ in alerts] == [5]
    finding = alerts[0][1]["evidence"]["product"]
    assert finding["detector"] == "data_quality.unseen_categories"
    assert dict(finding["top_unseen"])["sku-new"] >= 30
    assert finding["p_value"] <= finding["alpha"] == 1e-4
