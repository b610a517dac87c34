"""Multivariate drift: can a classifier tell reference rows from window rows?"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy import linalg, special, stats
from threadpoolctl import ThreadpoolController

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.profile import ReferenceProfile, WindowColumn, infer_kind, to_column

__all__ = ["DomainClassifier", "fit_logistic"]


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float, steps: int, tol: float = 1e-8) -> tuple[np.ndarray, int]:
    """Ridge-penalised logistic regression by Newton's method (IRLS); column 0 of ``x`` is the
    intercept, left unpenalised. Returns the weights and the Newton steps taken.

    Minimises ``sum(log(1 + exp(x w)) - y x w) + ridge / 2 * |w[1:]|^2``; the penalty keeps the
    Hessian positive definite, so each step is one Cholesky solve (a column that only one side
    has, an unseen category, gets a finite weight).

    >>> rng = np.random.default_rng(0)
    >>> x = np.column_stack([np.ones(400), rng.normal(size=400)])
    >>> y = (rng.random(400) < special.expit(2 * x[:, 1])).astype(float)
    >>> w, steps = fit_logistic(x, y, ridge=0.0, steps=25)
    >>> round(float(w[1]), 2), steps < 10   # the true slope is 2
    (2.04, True)
    >>> bool(np.abs(x.T @ (special.expit(x @ w) - y)).max() < 1e-9)   # the likelihood's gradient is 0 there
    True
    """
    penalty = np.full(x.shape[1], float(ridge))
    penalty[0] = 0.0
    w = np.zeros(x.shape[1])
    for step in range(1, steps + 1):
        p = special.expit(x @ w)
        gradient = x.T @ (p - y) + penalty * w
        hessian = (x.T * (p * (1.0 - p))) @ x
        hessian[np.diag_indices_from(hessian)] += penalty + 1e-9
        delta = linalg.solve(hessian, gradient, assume_a="pos")
        w -= delta
        if np.max(np.abs(delta)) < tol:
            return w, step
    return w, steps


class DomainClassifier(Estimator):
    """Domain-classifier test: ridge logistic regression fitted in batch, held-out AUC, Mann-Whitney p-value.

    Reference rows (label 0, from ``ReferenceProfile.joint_sample``, whose categorical
    features are :class:`~detectors.category_codes.CategoryCodes`, or raw columns) and window rows (label 1) are subsampled to at most ``max_rows``
    each (seeded; the same number from both sides), split in half per side, and
    a logistic regression with an L2 penalty ``ridge`` (intercept unpenalised)
    is fitted on one half by Newton's method (IRLS, at most ``newton_steps``
    steps: a few matrix products, not one update per row). Numeric features are
    standardised with the reference subsample's mean/std, missing values become
    0 plus a ``<feature>__missing`` indicator column (when the feature has a
    missing value on either side); categorical features are one-hot over the
    categories of both sides (missing is its own category, an unseen window
    category its own column). On the held-out half the AUC of the fitted logits
    is ``U / (n_0 n_1)`` from
    ``scipy.stats.mannwhitneyu(window_scores, reference_scores, alternative="greater")``,
    whose p-value is the test: the held-out scores come from a model that never
    saw those rows, so under no drift the labels are exchangeable and the
    Mann-Whitney null holds.

    Feature importance is what each feature contributes to telling the held-out
    sides apart: the mean of its part of the logit (its encoded columns times
    their weights) over held-out window rows minus the same over held-out
    reference rows, clipped at 0 and normalised to 1. A feature the model gave
    noise weights to contributes about as much on both held-out sides, so it does
    not rank above the features that moved (summed absolute weights, the former
    measure, ranked many-levelled categorical features first whatever moved).
    Cost is bounded by ``max_rows``, independent of window size.

    Parameters
    ----------
    alpha
        Drift when ``p_value <= alpha``.
    max_rows
        At most this many rows per side.
    ridge
        L2 penalty on the (standardised, one-hot) weights.
    newton_steps
        At most this many Newton steps (it stops earlier when converged).
    n_top
        Features listed in ``evidence["top_features"]``.
    seed
        Subsampling seed.

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

    def __init__(self, alpha: float = 0.01, max_rows: int = 1000, ridge: float = 10.0, newton_steps: int = 8,
                 n_top: int = 5, seed: int = 42):
        self.alpha = alpha
        self.max_rows = max_rows
        self.ridge = ridge
        self.newton_steps = newton_steps
        self.n_top = n_top
        self.seed = seed
        self._blas: ThreadpoolController | None = None
        self._reference_cache: tuple | None = None

    def __getstate__(self) -> dict:
        """The BLAS controller and the reference encoding are rebuilt after a restore, not checkpointed."""
        return {**self.__dict__, "_blas": None, "_reference_cache": None}

    def __setstate__(self, state: dict) -> None:
        """Checkpoints of the river-trained classifier (epochs, learning_rate) restore with the defaults."""
        state = {k: v for k, v in state.items() if k not in ("epochs", "learning_rate", "_reference_cache")}
        state.setdefault("ridge", 10.0)
        state.setdefault("newton_steps", 8)
        state["_blas"] = state["_reference_cache"] = None
        self.__dict__.update(state)

    def _one_blas_thread(self):
        """A context with BLAS on one thread: the products here are small (a few hundred rows by a
        hundred columns), and OpenBLAS's threads cost more CPU spinning than they save (4x the
        process time on a shared 2-core machine)."""
        if self._blas is None:
            self._blas = ThreadpoolController()
        return self._blas.limit(limits=1, user_api="blas")

    @staticmethod
    def _reference_columns(reference) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        if isinstance(reference, ReferenceProfile):
            if reference.joint_sample is None:
                raise ValueError("the reference profile has no joint_sample; build it with joint_sample_size > 0")
            return dict(reference.joint_sample), reference.kinds
        kinds = {name: infer_kind(values) for name, values in reference.items()}
        return {name: to_column(values, kinds[name]) for name, values in reference.items()}, kinds

    @staticmethod
    def reference_encoding(ref_sub: dict[str, np.ndarray], kinds: dict[str, str]) -> dict:
        """What the reference side contributes to the design: per numeric feature its
        standardised values, missing mask and scale; per categorical feature its codes and
        categories (first appearance order)."""
        encoding = {}
        for name, kind in kinds.items():
            column = ref_sub[name]
            if kind == "numeric":
                missing = np.isnan(column)
                x = column[~missing]
                mean = float(x.mean()) if x.size else 0.0
                std = float(x.std()) if x.size > 1 else 0.0
                std = std if std > 0 else 1.0
                encoding[name] = (mean, std, missing, np.where(missing, 0.0, (np.nan_to_num(column) - mean) / std))
            else:
                labels = column.tolist()
                code_of = {value: code for code, value in enumerate(dict.fromkeys(labels))}   # first appearance
                encoding[name] = (code_of, np.fromiter(map(code_of.__getitem__, labels), dtype=np.intp, count=len(labels)))
        return encoding

    @staticmethod
    def design(encoding: dict, cur_sub: dict[str, np.ndarray], kinds: dict[str, str]) -> tuple[np.ndarray, list[str]]:
        """The design matrix of both sides (reference rows first, from :meth:`reference_encoding`),
        intercept in column 0, and the feature each column belongs to (``""`` for the intercept)."""
        n_cur = len(next(iter(cur_sub.values())))
        n_ref = None
        blocks, owners = [], [""]
        for name, kind in kinds.items():
            column = cur_sub[name]
            if kind == "numeric":
                mean, std, ref_missing, ref_z = encoding[name]
                missing = np.isnan(column)
                z = np.concatenate([ref_z, np.where(missing, 0.0, (np.nan_to_num(column) - mean) / std)])
                blocks.append(z[:, None])
                owners.append(name)
                if missing.any() or ref_missing.any():
                    blocks.append(np.concatenate([ref_missing, missing]).astype(np.float64)[:, None])
                    owners.append(name)
                n_ref = ref_z.size
            else:
                ref_code_of, ref_codes = encoding[name]
                labels = column.tolist()
                code_of = dict(ref_code_of)   # window categories the reference lacks get the next codes
                for value in dict.fromkeys(labels):
                    if value not in code_of:
                        code_of[value] = len(code_of)
                codes = np.concatenate([ref_codes, np.fromiter(map(code_of.__getitem__, labels), dtype=np.intp,
                                                               count=len(labels))])
                one_hot = np.zeros((codes.size, len(code_of)))
                one_hot[np.arange(codes.size), codes] = 1.0
                blocks.append(one_hot)
                owners.extend([name] * len(code_of))
                n_ref = ref_codes.size
        return np.hstack([np.ones((n_ref + n_cur, 1)), *blocks]), owners

    def _reference_encoding(self, reference, ref_sub: dict, rows: np.ndarray, kinds: dict) -> dict:
        """The reference subsample is the same every window (same profile, same seeded draw):
        its encoding is computed once per profile and kept (not checkpointed)."""
        cached = self._reference_cache
        if cached is not None and cached[0] is reference and np.array_equal(cached[1], rows):
            return cached[2]
        encoding = self.reference_encoding(ref_sub, kinds)
        if isinstance(reference, ReferenceProfile):  # immutable; raw reference columns could change
            self._reference_cache = (reference, rows, encoding)
        return encoding

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
        encoding = self._reference_encoding(reference, {k: v[ref_rows] for k, v in ref_columns.items()}, ref_rows, kinds)
        x, owners = self.design(encoding, {k: v[cur_rows] for k, v in cur_columns.items()}, kinds)
        half = n_side // 2
        is_train = np.zeros(2 * n_side, dtype=bool)
        is_train[:half] = is_train[n_side:n_side + half] = True
        y = np.repeat([0.0, 1.0], n_side)
        with self._one_blas_thread():
            weights, steps = fit_logistic(x[is_train], y[is_train], self.ridge, self.newton_steps)
        held_out = x[~is_train]
        scores = held_out @ weights
        n_test_ref = n_side - half
        score_ref, score_cur = scores[:n_test_ref], scores[n_test_ref:]
        res = stats.mannwhitneyu(score_cur, score_ref, alternative="greater")
        auc = float(res.statistic) / (score_cur.size * score_ref.size)
        # each feature's share of the held-out separation: mean logit part, window minus reference
        part = held_out * weights
        separation = part[n_test_ref:].mean(axis=0) - part[:n_test_ref].mean(axis=0)
        importance: dict[str, float] = {}
        for owner, value in zip(owners[1:], separation[1:].tolist()):
            importance[owner] = importance.get(owner, 0.0) + value
        importance = {k: max(v, 0.0) for k, v in importance.items()}
        total = sum(importance.values()) or 1.0
        top = sorted(importance.items(), key=lambda kv: -kv[1])[: self.n_top]
        evidence.update(auc=auc, n_train=int(is_train.sum()), n_test=int(score_ref.size + score_cur.size),
                        newton_steps=steps, top_features=[[k, v / total] for k, v in top])
        p_value = float(res.pvalue)
        return DriftResult(self.name, None, auc, p_value, self.alpha, "p_value", bool(p_value <= self.alpha),
                           effect_size=auc - 0.5, effect_name="auc_minus_half", evidence=json_safe(evidence))
