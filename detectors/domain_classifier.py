"""Multivariate drift: can a classifier tell reference rows from window rows?"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import numpy as np
from scipy import linalg, special, stats
from threadpoolctl import ThreadpoolController

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.profile import ReferenceProfile, WindowColumn, infer_kind, to_column

__all__ = ["DomainClassifier", "fit_logistic"]

_EXACT_RANK_SUMS = 100_000   # samples up to this size: the tie term (at most n^3) is an exact float sum


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
    diagonal = penalty + 1e-9
    w = np.zeros(x.shape[1])
    for step in range(1, steps + 1):
        p = special.expit(x @ w)
        gradient = x.T @ (p - y) + penalty * w
        hessian = (x.T * (p * (1.0 - p))) @ x
        hessian.flat[::x.shape[1] + 1] += diagonal
        delta = _solve_positive_definite(hessian, gradient)
        w -= delta
        if np.max(np.abs(delta)) < tol:
            return w, step
    return w, steps


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """One controller of the process's thread pools for every classifier: building one walks the
    loaded libraries (~50 ms), which each model version's classifier did at its first window."""
    return ThreadpoolController()


def _solve_positive_definite(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``linalg.solve(a, b, assume_a="pos")``, bit for bit, without its condition estimate.

    That solve is LAPACK's ``posv`` on the upper triangle (Cholesky ``potrf``, then ``potrs``)
    followed by ``pocon``, whose estimate only decides a warning and costs about as much as the
    solve for the hundred columns here. ``cho_factor`` and ``cho_solve`` are the same two
    routines; when they fail (not positive definite, not finite) the solve runs and raises as it did.

    >>> a = np.array([[4.0, 1.0], [1.0, 3.0]]); b = np.array([1.0, 2.0])
    >>> bool(np.array_equal(_solve_positive_definite(a, b), linalg.solve(a, b, assume_a="pos")))
    True
    """
    try:
        return linalg.cho_solve(linalg.cho_factor(a, lower=False), b)
    except (linalg.LinAlgError, ValueError):
        return linalg.solve(a, b, assume_a="pos")


def _mann_whitney_greater(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``scipy.stats.mannwhitneyu(x, y, alternative="greater")``'s statistic and p-value, bit for bit,
    without its input handling (about 1 ms a call, as much as the rest of a window's test).

    scipy's asymptotic method (what it takes when both samples have more than 8 values):
    ``U = R_x - n_x (n_x + 1) / 2`` with average ranks for ties, the tie-corrected normal
    approximation with continuity correction, ``p = ndtr(-z)``. Ranks are half-integers and
    their sum and the tie term integers below 2^53 (up to ``_EXACT_RANK_SUMS`` values), so they are
    exact whatever the order of the sums; the rest is scipy's expression, operation for operation.
    Other sizes and NaN scores go to scipy itself.

    >>> rng = np.random.default_rng(1)
    >>> x, y = rng.normal(0.3, size=40).round(1), rng.normal(size=50).round(1)   # with ties
    >>> res = stats.mannwhitneyu(x, y, alternative="greater")
    >>> _mann_whitney_greater(x, y) == (float(res.statistic), float(res.pvalue))
    True
    """
    n1, n2 = int(x.size), int(y.size)
    xy = np.concatenate([x, y])
    if n1 <= 8 or n2 <= 8 or n1 + n2 > _EXACT_RANK_SUMS or np.isnan(xy).any():
        res = stats.mannwhitneyu(x, y, alternative="greater")
        return float(res.statistic), float(res.pvalue)
    _, inverse, counts = np.unique(xy, return_inverse=True, return_counts=True)
    average_rank = (np.cumsum(counts) - counts + 1) + (counts - 1) / 2
    r1 = average_rank[inverse[:n1]].sum()
    u1 = r1 - n1 * (n1 + 1) / 2
    tie_term = np.float64((counts ** 3 - counts).sum())
    n = n1 + n2
    with np.errstate(divide="ignore", invalid="ignore"):   # all scores tied: s = 0, z = -inf, p = 1
        s = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
        z = (u1 - n1 * n2 / 2 - 0.5) / s
    p = np.clip(special.ndtr(-z), 0.0, 1.0)
    return float(u1), float(p)


def _standardised(column: np.ndarray, missing: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``np.where(missing, 0.0, (np.nan_to_num(column) - mean) / std)``, bit for bit, with one
    temporary instead of four: ``nan_to_num`` leaves finite values as they are, and a converted
    numeric column holds no infinities (those are NaN), but one given that way is converted as before.

    >>> column = np.array([1.5, np.nan, -2.0, 0.25])
    >>> missing = np.isnan(column)
    >>> _standardised(column, missing, 0.5, 2.0).tolist()
    [0.5, 0.0, -1.25, -0.125]
    """
    if np.isinf(column).any():
        return np.where(missing, 0.0, (np.nan_to_num(column) - mean) / std)
    z = (column - mean) / std
    z[missing] = 0.0
    return z


class _Codes(dict):
    """Category -> design column: the reference's codes, and for a category the reference lacks the
    next code when first looked up, so one pass over a window's values codes it in order of first
    appearance (as a ``dict.fromkeys`` pass, then a look-up pass, did)."""

    def __missing__(self, value):
        code = self[value] = len(self)
        return code


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
            self._blas = _blas_controller()
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
        intercept in column 0, and the feature each column belongs to (``""`` for the intercept).

        Filled in place: numeric columns by slice, every one-hot 1 by one indexed assignment (not a
        block per feature stacked afterwards). A window's categories get codes by
        one dict look-up per value, those the reference lacks the next codes in order of first
        appearance."""
        n_cur = len(next(iter(cur_sub.values())))
        n_ref = 0
        numeric, categorical, owners = [], [], [""]   # (first column, reference side, window side)
        for name, kind in kinds.items():
            column = cur_sub[name]
            if kind == "numeric":
                mean, std, ref_missing, ref_z = encoding[name]
                missing = np.isnan(column)
                numeric.append((len(owners), ref_z, _standardised(column, missing, mean, std)))
                owners.append(name)
                if missing.any() or ref_missing.any():
                    numeric.append((len(owners), ref_missing, missing))   # bools: 1.0 where missing
                    owners.append(name)
                n_ref = ref_z.size
            else:
                ref_code_of, ref_codes = encoding[name]
                labels = column.tolist()
                code_of = _Codes(ref_code_of)
                codes = np.fromiter(map(code_of.__getitem__, labels), dtype=np.intp, count=len(labels))
                categorical.append((len(owners), ref_codes, codes))
                owners.extend([name] * len(code_of))
                n_ref = ref_codes.size
        x = np.zeros((n_ref + n_cur, len(owners)))
        x[:, 0] = 1.0
        for at, ref_side, cur_side in numeric:
            x[:n_ref, at] = ref_side
            x[n_ref:, at] = cur_side
        if categorical:   # every one-hot 1 at once: row * width + column, into the flat view
            columns = np.concatenate([np.concatenate([at + ref_codes, at + codes]) for at, ref_codes, codes in categorical])
            rows = np.tile(np.arange(0, x.size, x.shape[1]), len(categorical))
            x.reshape(-1)[rows + columns] = 1.0
        return x, owners

    def _reference_side(self, reference, ref_columns: dict, kinds: dict, n_ref: int, n_window: int,
                        n_side: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """The seeded rows of both sides and the reference subsample's encoding.

        For one profile and one window size these are the same every window (same seed, same
        draw), so they are computed once and kept (not checkpointed). Raw reference columns
        could change and a seed that is not an int could give other rows: those are drawn and
        encoded each time."""
        key = (self.seed, n_ref, n_window, n_side)
        cached = self._reference_cache
        if cached is not None and cached[0] is reference and cached[1] == key:
            return cached[2]
        rng = np.random.default_rng(self.seed)
        ref_rows = rng.choice(n_ref, size=n_side, replace=False)
        cur_rows = rng.choice(n_window, size=n_side, replace=False)
        side = (ref_rows, cur_rows, self.reference_encoding({k: v[ref_rows] for k, v in ref_columns.items()}, kinds))
        if isinstance(reference, ReferenceProfile) and type(self.seed) is int:   # the profile is immutable
            self._reference_cache = (reference, key, side)
        return side

    def test(self, reference: ReferenceProfile | Mapping[str, Sequence], window: Mapping[str, Sequence | np.ndarray]) -> DriftResult:
        ref_columns, kinds = self._reference_columns(reference)
        n_window = max((len(v) for v in window.values()), default=0)
        cur_columns = {name: WindowColumn.of(window[name], kind).values  # converted once when shared
                       for name, kind in kinds.items() if window.get(name) is not None}
        n_ref = len(next(iter(ref_columns.values()))) if ref_columns else 0
        n_side = min(self.max_rows, n_ref, n_window)
        evidence = {"n_reference": n_ref, "n_current": n_window, "n_per_side": n_side}
        if n_side < 20:
            return empty_result(self.name, None, self.alpha, "p_value", "fewer than 20 rows on a side", evidence)
        ref_rows, cur_rows, encoding = self._reference_side(reference, ref_columns, kinds, n_ref, n_window, n_side)
        cur_sub = {name: cur_columns[name][cur_rows] if name in cur_columns else
                   np.full(n_side, np.nan) if kind == "numeric" else np.full(n_side, None, dtype=object)
                   for name, kind in kinds.items()}
        x, owners = self.design(encoding, cur_sub, kinds)
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
        u_statistic, p_value = _mann_whitney_greater(score_cur, score_ref)
        auc = u_statistic / (score_cur.size * score_ref.size)
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
        return DriftResult(self.name, None, auc, p_value, self.alpha, "p_value", bool(p_value <= self.alpha),
                           effect_size=auc - 0.5, effect_name="auc_minus_half", evidence=json_safe(evidence))
