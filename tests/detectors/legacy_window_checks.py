"""The domain classifier's and the data-quality checks' code as of main 26ed33c, before they were made
cheaper: the oracle that tests/detectors/test_domain_quality_fast.py compares today's results with.
Test-only; copied verbatim but for names and docstrings."""
from __future__ import annotations

import functools
import math
from typing import Mapping, Sequence

import numpy as np
from scipy import linalg, special, stats
from scipy.optimize import minimize_scalar
from scipy.special import gammaln
from scipy.stats import betabinom
from threadpoolctl import ThreadpoolController

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.profile import (_PLAIN_NUMBERS, ReferenceProfile, WindowColumn, _is_missing, _is_number, infer_kind,
                               to_column)

MAX_EXAMPLES = 5


def legacy_fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float, steps: int, tol: float = 1e-8) -> tuple[np.ndarray, int]:
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



class LegacyDomainClassifier(Estimator):
    """``DomainClassifier`` as of main 26ed33c (one-hot by Python dict per value, design by hstack)."""

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
            weights, steps = legacy_fit_logistic(x[is_train], y[is_train], self.ridge, self.newton_steps)
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


def legacy_type_mismatch_count(values) -> tuple[int, list]:
    if isinstance(values, WindowColumn):
        values = values.raw
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        bad = values[np.isinf(values)] if values.dtype.kind == "f" else values[:0]
        return int(bad.size), bad[:MAX_EXAMPLES].tolist()
    seq = values.tolist() if isinstance(values, np.ndarray) else values
    if _PLAIN_NUMBERS.issuperset(map(type, seq)) and math.inf not in seq and -math.inf not in seq:
        return 0, []  # the usual window, checked at C speed: only floats, ints and None, none infinite
    bad = [v for v in seq if not _is_missing(v) and not isinstance(v, (bool, np.bool_))
           and not (_is_number(v) and math.isfinite(v))]
    return len(bad), bad[:MAX_EXAMPLES]


def legacy_out_of_range_p_value(n_outside: int, n_window: int, n_reference: int) -> float:
    if n_outside <= 0:
        return 1.0
    if n_outside > n_window:
        return 0.0
    return float(legacy_out_of_range_tail(n_window, n_reference)[n_outside])


@functools.lru_cache(maxsize=1024)
def legacy_out_of_range_tail(n_window: int, n_reference: int) -> np.ndarray:
    tail = betabinom.sf(np.arange(-1, n_window), n_window, 2, max(1, n_reference - 1))
    tail.flags.writeable = False
    return tail


def legacy_unseen_p_value_bound(n_unseen: int, reference_counts, window_counts) -> float:
    if n_unseen <= 0:
        return 1.0
    pooled: dict = dict(reference_counts)
    for value, count in window_counts.items():
        pooled[value] = pooled.get(value, 0) + count
    n = sum(reference_counts.values())
    m = sum(window_counts.values())
    total = n + m
    if n == 0 or m == 0:
        return 1.0      # no reference values to have missed, or nothing in the window
    c, groups = np.unique(np.fromiter(pooled.values(), dtype=np.int64), return_counts=True)
    c, groups = c[c <= m], groups[c <= m]
    if not c.size:
        return 1.0
    # log q_c = log C(m, c) - log C(N, c)
    log_q = (gammaln(m + 1) - gammaln(m - c + 1)) - (gammaln(total + 1) - gammaln(total - c + 1))
    log_stay = np.log1p(-np.exp(log_q))

    def log_bound(t: float) -> float:
        return float(-t * n_unseen + (groups * np.logaddexp(log_stay, log_q + t * c)).sum())

    best = minimize_scalar(log_bound, bounds=(0.0, 50.0), method="bounded", options={"xatol": 1e-6})
    return float(min(1.0, math.exp(min(best.fun, 0.0))))


class LegacyDataQuality(Estimator):
    """``DataQuality`` as of main 26ed33c (a scipy beta-binomial call per window size, a type scan per numeric column)."""

    out_of_range_alpha = 1e-4    # what a checkpoint pickled before these parameters existed restores with
    unseen_alpha = 1e-4

    def __init__(self, max_out_of_range_rate: float = 0.01, max_type_mismatch_rate: float = 0.0,
                 max_unseen_rate: float = 0.01, out_of_range_alpha: float = 1e-4, unseen_alpha: float = 1e-4):
        self.max_out_of_range_rate = max_out_of_range_rate
        self.out_of_range_alpha = out_of_range_alpha
        self.max_type_mismatch_rate = max_type_mismatch_rate
        self.max_unseen_rate = max_unseen_rate
        self.unseen_alpha = unseen_alpha

    def _result(self, check: str, feature: str, statistic: float, threshold: float, evidence: dict,
                p_value: float | None = None) -> DriftResult:
        return DriftResult(f"data_quality.{check}", feature, float(statistic), p_value, float(threshold), "statistic",
                           bool(statistic > threshold), evidence=json_safe(evidence))

    def _allowed_outside(self, n_window: int, n_reference: int) -> int:
        """The largest count of values outside the range that does not alert: the count whose
        p-value is above ``out_of_range_alpha``, or the rate tolerance, whichever is larger."""
        by_rate = math.floor(self.max_out_of_range_rate * n_window)
        tail = legacy_out_of_range_tail(n_window, n_reference)
        by_chance = int((tail[1:] > self.out_of_range_alpha).sum())   # tail decreases: the last k above alpha
        return max(by_rate, by_chance)

    def check(self, reference: ReferenceProfile, window: Mapping[str, Sequence | np.ndarray]) -> list[DriftResult]:
        """All checks for every feature; results in reference feature order, then new features."""
        results: list[DriftResult] = []
        for name, fp in reference.features.items():
            raw = window.get(name)
            if raw is None:
                results.append(self._result("missing_feature", name, 1.0, 0.0, {"reason": "feature absent from window"}))
                continue
            n = len(raw)
            column = WindowColumn.of(raw, fp.value_type)  # shared with the drift tests when the caller built it
            if fp.kind == "numeric":
                present = column.present
                lo, hi = fp.summary.get("min"), fp.summary.get("max")
                if lo is not None and present.size:
                    below, above = int((present < lo).sum()), int((present > hi).sum())
                    m, outside = int(present.size), below + above
                    # allowed as a rate, so that "statistic > threshold" is "outside > allowed"
                    allowed = (self._allowed_outside(m, fp.n_present) + 0.5) / m
                    results.append(self._result("out_of_range", name, outside / m, allowed, {
                        "expected_rate": 2.0 / (fp.n_present + 1), "n_reference": fp.n_present,
                        "alpha": self.out_of_range_alpha, "max_rate": self.max_out_of_range_rate,
                        "n_outside": outside, "n_present": m,
                        "reference_range": [lo, hi], "current_range": [float(present.min()), float(present.max())],
                        "below": below, "above": above},
                        p_value=legacy_out_of_range_p_value(outside, m, fp.n_present)))
                bad, examples = legacy_type_mismatch_count(column.raw)
                results.append(self._result("type_mismatch", name, bad / n if n else 0.0, self.max_type_mismatch_rate,
                                            {"n_mismatch": bad, "n": n, "examples": [repr(v) for v in examples]}))
            else:
                # per distinct category (counted once per window), not per value
                counts = {v: c for v, c in column.counts.items() if v not in fp.category_counts}
                n_present = int(sum(column.counts.values()))
                unseen = sum(counts.values())
                top = sorted(counts.items(), key=lambda kv: -kv[1])[:MAX_EXAMPLES]
                rate = unseen / n_present if n_present else 0.0
                p_bound = None
                if rate > self.max_unseen_rate:   # the bound only matters past the rate tolerance
                    p_bound = legacy_unseen_p_value_bound(unseen, fp.category_counts, column.counts)
                allowed = self.max_unseen_rate if p_bound is None or p_bound <= self.unseen_alpha else 1.0
                results.append(self._result("unseen_categories", name, rate, allowed, {
                    "n_unseen": unseen, "n_present": n_present, "n_unseen_categories": len(counts), "top_unseen": top,
                    "alpha": self.unseen_alpha, "max_rate": self.max_unseen_rate}, p_value=p_bound))
        for name in window:
            if name not in reference.features:
                results.append(self._result("new_feature", name, 1.0, 0.0, {"reason": "feature absent from reference",
                                                                           "n": len(window[name])}))
        return results
