"""The soak's CI size: a stream through real workers while SIGTERM, kill -9, a rebalance, a Redis
restart and a frozen broker hit it (bench/soak.py; `python -m bench.soak` runs 200,000 predictions
and 20 cycles). Everything is judged against what Kafka holds."""
from __future__ import annotations

import pytest

from bench.soak import FAULTS, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_soak_loses_nothing_counts_nothing_twice_and_sends_every_output_once():
    result = run(predictions=20_000, models=4, cycles=len(FAULTS), seed=11)
    print(f"\n[soak] {result['fault_counts']} in {result['seconds']} s; held {result['held']}, counted "
          f"{result['counted']}, labelled {result['labelled']}; {result['alerts']} alerts, "
          f"{result['dead_letters']} dead letters for {result['bad_elements_sent']} bad elements; KS: {result['ks_checks']}")
    assert set(result["fault_counts"]) == set(FAULTS) and all(result["fault_counts"].values())
    assert sum(result["held"].values()) == 20_000
    assert result["counted"] == result["held"], f"lost {result['lost']}, counted twice {result['double_counted']}"
    assert result["labelled"] == result["labels_held"]
    assert not result["duplicate_alert_ids"] and not result["duplicate_retrain_ids"]
    assert result["alerts"] > 0
    assert result["dead_letters"] == result["bad_elements_sent"] > 0 and not result["duplicate_dead_letter_ids"]
    assert len(result["ks_checks"]) == 4 and all(c["equal"] for c in result["ks_checks"]), result["ks_checks"]
    assert all(code == 0 for code in result["exit_codes"]), result["faults"]
