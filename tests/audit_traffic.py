"""Labelled traffic for the audit tests of estimated performance and fairness (unit and integration).

A credit model whose score is its calibrated P(default | features); labels drawn from
that probability. The segment (region) is correlated with the features (the south has
higher incomes and ages), as real segments are. Two changes, from ``change_at`` on:

- ``"confidence"``: a covariate shift towards the decision boundary (income and debt
  shrink): P(y | x) holds, predictions are less certain, accuracy drops, and CBPE's
  estimate sees it before the labels do;
- ``"segment"``: the model is biased for the south (its score shifted up there): more of the
  south is predicted positive and more of it is wrong, a positive-rate and accuracy gap.
"""
from __future__ import annotations

import numpy as np


def labelled_traffic(n: int, change_at: int, change: str, model: str = "credit", version: str = "1",
                     seed: int = 5, start: float = 1_767_225_600.0) -> tuple[list[dict], list[dict]]:
    """``(predictions, labels)``, one label per prediction, in the order of the predictions."""
    if change not in ("confidence", "segment"):
        raise ValueError(f"unknown change {change!r}")
    rng = np.random.default_rng(seed)
    south = rng.random(n) < 0.5
    income = rng.normal(size=n) + 0.2 * south
    age = rng.normal(size=n) + 0.5 * south
    debt = 0.6 * income + 0.8 * rng.normal(size=n)
    after = np.arange(n) >= change_at
    if change == "confidence":
        income = np.where(after, 0.3 * income, income)
        debt = np.where(after, 0.3 * debt, debt)
    z = 1.6 * debt - 0.9 * income + 0.2 * age
    p = 1 / (1 + np.exp(-z))
    y = rng.random(n) < p
    score = p if change == "confidence" else 1 / (1 + np.exp(-(z + 1.5 * (after & south))))
    plan = rng.choice(["basic", "plus"], size=n, p=[0.7, 0.3])
    events, labels = [], []
    for i in range(n):
        s = round(float(score[i]), 6)
        pid = f"{model}-{seed}-{i}"
        events.append({
            "prediction_id": pid, "model": model, "model_version": version, "timestamp": start + i,
            "prediction": bool(s >= 0.5), "score": s, "segment": {"region": "south" if south[i] else "north"},
            "features": {"income": float(income[i]), "age": float(age[i]), "debt": float(debt[i]),
                         "plan": str(plan[i])},
        })
        labels.append({"prediction_id": pid, "model": model, "label": bool(y[i]), "timestamp": start + i})
    return events, labels
