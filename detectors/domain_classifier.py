"""Multivariate drift: can a classifier tell reference rows from window rows?"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from river import linear_model, optim
from scipy import stats

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.profile import ReferenceProfile, WindowColumn, infer_kind, to_column

__all__ = ["DomainClassifier"]


class DomainClassifier(Estimator):
    """Domain-classifier test: river logistic regression, held-out AUC, Mann-Whitney p-value.

    Reference rows (label 0, from ``ReferenceProfile.joint_sample`` or raw
    columns) and window rows (label 1) are subsampled to at most ``max_rows``
    each (seeded; the same number from both sides), split in half per side, and
    a ``river.linear_model.LogisticRegression`` learns on one half (``epochs``
    shuffled passes). Numeric features are standardised with the reference
    mean/std, missing values become 0 plus a ``<feature>__missing`` indicator;
    categorical features are one-hot (missing is its own category, unseen
    window categories get their own column). On the held-out half the AUC of
    the predicted probabilities is ``U / (n_0 n_1)`` from
    ``scipy.stats.mannwhitneyu(window_scores, reference_scores, alternative="greater")``,
    whose p-value is the test: the held-out scores come from a model that never
    saw those rows, so under no drift the labels are exchangeable and the
    Mann-Whitney null holds. Feature importance is the sum of absolute weights
    of a feature's encoded columns (standardised inputs), normalised to 1.
    Cost is bounded by ``max_rows``, independent of window size.

    Parameters
    ----------
    alpha
        Drift when ``p_value <= alpha``.
    max_rows
        At most this many rows per side.
    epochs
        Training passes over the training half.
    learning_rate
        SGD learning rate.
    n_top
        Features listed in ``evidence["top_features"]``.
    seed
        Subsampling and shuffling seed.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ref = ReferenceProfile.from_columns({"a": rng.normal(size=2000), "b": rng.normal(size=2000),
    ...                                      "c": rng.choice(["x", "y"], size=2000)})
    >>> test = DomainClassifier(alpha=0.01, max_rows=500)
    >>> test.test(ref, {"a": rng.normal(size=800), "b": rng.normal(size=800), "c": rng.choice(["x", "y"], size=800)}).drifted
    False
    >>> r = test.test(ref, {"a": rng.normal(size=800), "b": rng.normal(0.6, size=800), "c": rng.choice(["x", "y"], size=800)})
    >>> r.drifted, r.evidence["top_features"][0][0]
    (True, 'b')
    """

    name = "domain_classifier"

    def __init__(self, alpha: float = 0.01, max_rows: int = 1000, epochs: int = 2, learning_rate: float = 0.05,
                 n_top: int = 5, seed: int = 42):
        self.alpha = alpha
        self.max_rows = max_rows
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.n_top = n_top
        self.seed = seed
        self._reference_cache: tuple | None = None

    def __getstate__(self) -> dict:
        """The cached reference rows are rebuilt after a restore, not checkpointed."""
        return {**self.__dict__, "_reference_cache": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reference_cache = None

    @staticmethod
    def _reference_columns(reference) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        if isinstance(reference, ReferenceProfile):
            if reference.joint_sample is None:
                raise ValueError("the reference profile has no joint_sample; build it with joint_sample_size > 0")
            return dict(reference.joint_sample), reference.kinds
        kinds = {name: infer_kind(values) for name, values in reference.items()}
        return {name: to_column(values, kinds[name]) for name, values in reference.items()}, kinds

    def _encode(self, columns: dict[str, np.ndarray], kinds: dict[str, str], stats_: dict) -> list[dict]:
        """One dict per row, keys in feature order (``name``, then ``name__missing`` when
        missing; ``name=value`` for categories): built column by column, then zipped per row."""
        n = len(next(iter(columns.values())))
        keys, values, missing_rows = [], [], np.zeros(n, dtype=bool)
        for name, kind in kinds.items():
            column = columns[name]
            if kind == "numeric":
                mean, std = stats_[name]
                missing = np.isnan(column)
                missing_rows |= missing
                keys.append([name] * n)
                values.append(np.where(missing, 0.0, (np.nan_to_num(column) - mean) / std).tolist())
            else:
                labels = column.tolist()
                key_of = {value: f"{name}={'__missing__' if value is None else value}" for value in set(labels)}
                keys.append([key_of[value] for value in labels])
                values.append([1.0] * n)
        rows = [dict(zip(k, v)) for k, v in zip(zip(*keys), zip(*values))]
        for i in np.flatnonzero(missing_rows).tolist():  # rare: the indicator goes right after its feature
            row = {}
            for name, key, value in zip(kinds, (k[i] for k in keys), (v[i] for v in values)):
                row[key] = value
                if kinds[name] == "numeric" and np.isnan(columns[name][i]):
                    row[name + "__missing"] = 1.0
            rows[i] = row
        return rows

    def _reference_rows(self, reference, ref_sub: dict, rows: np.ndarray, kinds: dict) -> tuple[dict, list]:
        """Scales and encoded rows of the reference subsample: the same every window (same
        profile, same seeded draw), so a profile's are computed once and kept."""
        cached = self._reference_cache
        if cached is not None and cached[0] is reference and np.array_equal(cached[1], rows):
            return cached[2], cached[3]
        scale = {}
        for name, kind in kinds.items():
            if kind == "numeric":
                x = ref_sub[name][~np.isnan(ref_sub[name])]
                std = float(x.std()) if x.size > 1 else 0.0
                scale[name] = (float(x.mean()) if x.size else 0.0, std if std > 0 else 1.0)
        encoded = self._encode(ref_sub, kinds, scale)
        if isinstance(reference, ReferenceProfile):  # immutable; raw reference columns could change
            self._reference_cache = (reference, rows, scale, encoded)
        return scale, encoded

    def test(self, reference: ReferenceProfile | Mapping[str, Sequence], window: Mapping[str, Sequence | np.ndarray]) -> DriftResult:
        ref_columns, kinds = self._reference_columns(reference)
        n_window = max((len(v) for v in window.values()), default=0)
        cur_columns = {}
        for name, kind in kinds.items():
            raw = window.get(name)
            if raw is None:
                cur_columns[name] = np.full(n_window, np.nan) if kind == "numeric" else np.full(n_window, None, dtype=object)
            else:
                cur_columns[name] = WindowColumn.of(raw, kind).values  # converted once when shared
        n_ref = len(next(iter(ref_columns.values()))) if ref_columns else 0
        n_side = min(self.max_rows, n_ref, n_window)
        evidence = {"n_reference": n_ref, "n_current": n_window, "n_per_side": n_side}
        if n_side < 20:
            return empty_result(self.name, None, self.alpha, "p_value", "fewer than 20 rows on a side", evidence)
        rng = np.random.default_rng(self.seed)
        ref_rows = rng.choice(n_ref, size=n_side, replace=False)
        cur_rows = rng.choice(n_window, size=n_side, replace=False)
        ref_sub = {k: v[ref_rows] for k, v in ref_columns.items()}
        cur_sub = {k: v[cur_rows] for k, v in cur_columns.items()}
        scale, x_ref = self._reference_rows(reference, ref_sub, ref_rows, kinds)
        x_cur = self._encode(cur_sub, kinds, scale)
        half = n_side // 2
        train = [(x, False) for x in x_ref[:half]] + [(x, True) for x in x_cur[:half]]
        model = linear_model.LogisticRegression(optimizer=optim.SGD(self.learning_rate))
        for _ in range(self.epochs):
            for i in rng.permutation(len(train)):
                x, y = train[i]
                model.learn_one(x, y)
        score_ref = np.array([model.predict_proba_one(x)[True] for x in x_ref[half:]])
        score_cur = np.array([model.predict_proba_one(x)[True] for x in x_cur[half:]])
        res = stats.mannwhitneyu(score_cur, score_ref, alternative="greater")
        auc = float(res.statistic) / (score_cur.size * score_ref.size)
        importance: dict[str, float] = {}
        for key, weight in model.weights.items():
            feature = key.split("=", 1)[0] if "=" in key else key.removesuffix("__missing")
            importance[feature] = importance.get(feature, 0.0) + abs(weight)
        total = sum(importance.values()) or 1.0
        top = sorted(importance.items(), key=lambda kv: -kv[1])[: self.n_top]
        evidence.update(auc=auc, n_train=len(train), n_test=int(score_ref.size + score_cur.size),
                        top_features=[[k, v / total] for k, v in top])
        p_value = float(res.pvalue)
        return DriftResult(self.name, None, auc, p_value, self.alpha, "p_value", bool(p_value <= self.alpha),
                           effect_size=auc - 0.5, effect_name="auc_minus_half", evidence=json_safe(evidence))
