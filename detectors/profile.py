"""Reference profiles: what the drift tests need to know about the reference data.

A :class:`ReferenceProfile` is built once from the reference (training or
baseline) data and stored as JSON; every window is then tested against it
without touching the raw reference again. Per feature it keeps the kind, the
row count, the missing rate, a summary, and the precomputed inputs of the tests:

* numeric: the sorted non-missing sample: the whole reference up to
  ``max_sample`` (100,000) values, so KS p-values are scipy's on the full data;
  larger references are thinned deterministically to ``max_sample`` evenly
  spaced order statistics, which keeps every quantile to 1/100,000 but counts
  the reference as 100,000 values, so the KS p-value is then somewhat
  conservative (it is scipy's for a 100,000-value reference);
  quantile bin edges fixed on the full reference (for PSI and Jensen-Shannon)
  and the reference standard deviation (for the normalised Wasserstein distance);
* categorical: the category counts.

Values are typed as :mod:`detectors.values` says (booleans in any spelling,
bools as 0/1 in numeric features). Missing values are None or float NaN.
Numeric features treat anything else that is not a finite real number
(strings, infinities) as missing; the data quality checks
(:mod:`detectors.quality`) count those as type mismatches. A *boolean* feature
is a categorical one (categories ``"true"``/``"false"``) with
``extra["type"] == "boolean"``: its windows read 1/0 as true/false.

A profile may also hold one sub-profile per segment value (``segments``, keyed
``"attribute=value"``): the reference rows of that segment value alone, which is
what segment drift compares a segment's window with.
"""

from __future__ import annotations

import math
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from detectors.base import json_safe
from detectors.category_codes import CategoryCodes
from detectors.summary import summarize, summarize_present
from detectors.values import TYPES, BOOL_TEXT, as_boolean, bool_text, infer_type

__all__ = ["FeatureProfile", "ReferenceProfile", "WindowColumn", "to_column", "infer_kind", "KINDS"]

KINDS = ("numeric", "categorical")
MAX_SAMPLE = 100_000  # KS is exact against the full reference up to this many values
N_BINS = 10


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


def infer_kind(values) -> str:
    """``"numeric"`` when most non-missing values are real numbers, else ``"categorical"``.

    Bools and strings are categorical; a numeric column with a little junk in
    it stays numeric (the junk becomes a type mismatch, not a new kind).

    >>> infer_kind([1, 2.5, None]), infer_kind([True, False]), infer_kind(["a", 1]), infer_kind([1, 2, "x"])
    ('numeric', 'categorical', 'categorical', 'numeric')
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return "numeric"
    if isinstance(values, np.ndarray) and values.dtype.kind in "bUS":
        return "categorical"
    present = [v for v in values if not _is_missing(v)]
    if not present:
        return "numeric"
    numbers = sum(1 for v in present if _is_number(v))
    return "numeric" if numbers * 2 > len(present) else "categorical"


def _category(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return bool_text(v) or v
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return None
        # JSON producers send 3 and 3.0 interchangeably; both are category "3".
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    return str(v)


def _number(v) -> float:
    """``v`` as a float, NaN where it is none: missing, not a number, infinite, or an integer
    beyond a float's range (which ``float`` refuses with OverflowError)."""
    if isinstance(v, (bool, np.bool_)):
        return 1.0 if v else 0.0   # a bool where a number is expected is 1/0 (detectors.values)
    if not (type(v) is float or type(v) is int or _is_number(v)):
        return math.nan
    try:
        x = float(v)
    except OverflowError:
        return math.nan
    return x if math.isfinite(x) else math.nan


_PLAIN_NUMBERS = frozenset({float, int, type(None)})
_PLAIN_CATEGORIES = frozenset({str, type(None)})
_PLAIN_BOOLS = frozenset({bool, type(None)})


def to_column(values, kind: str) -> np.ndarray:
    """Convert raw values to the array a test works on.

    numeric -> float64 with NaN for missing and for anything that is not a finite
    real number (bools are 1/0); categorical -> object array of str with None for
    missing (bools and their spellings become ``"true"``/``"false"``, numbers their
    string form, integral floats without ``.0``); boolean -> as categorical, with
    1/0 read as ``"true"``/``"false"`` (:func:`detectors.values.as_boolean`).

    Examples
    --------
    >>> to_column([1, None, 2.5, "junk", True], "numeric")
    array([1. , nan, 2.5, nan, 1. ])
    >>> to_column([True, "a", 3, 3.0, 0.5, None, float("nan"), "False"], "categorical")
    array(['true', 'a', '3', '3', '0.5', None, None, 'false'], dtype=object)
    >>> to_column([True, "False", 1, 0.0, None], "boolean")
    array(['true', 'false', 'true', 'false', None], dtype=object)
    """
    if kind == "numeric":
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
            out = values.astype(np.float64, copy=True).ravel()
            out[~np.isfinite(out)] = np.nan
            return out
        seq = values.tolist() if isinstance(values, np.ndarray) else list(values)
        if _PLAIN_NUMBERS.issuperset(map(type, seq)):
            # Only float, int and None: numpy converts them as float() does (None -> NaN).
            out = np.array(seq, dtype=np.float64)
            out[~np.isfinite(out)] = np.nan
            return out
        return np.fromiter((_number(v) for v in seq), dtype=np.float64, count=len(seq))
    if kind == "categorical":
        seq = values.tolist() if isinstance(values, np.ndarray) else list(values)
        out = np.empty(len(seq), dtype=object)
        if _PLAIN_CATEGORIES.issuperset(map(type, seq)) and BOOL_TEXT.isdisjoint(seq):
            out[:] = seq
        else:
            out[:] = [_category(v) for v in seq]
        return out
    if kind == "boolean":
        seq = values.tolist() if isinstance(values, np.ndarray) else list(values)
        out = np.empty(len(seq), dtype=object)
        if _PLAIN_BOOLS.issuperset(map(type, seq)):   # bools and None: what as_boolean gives them
            out[:] = [None if v is None else ("true" if v else "false") for v in seq]
        else:
            out[:] = [as_boolean(v) for v in seq]
        return out
    raise ValueError(f"unknown kind {kind!r}; expected one of {TYPES}")


def _joint_column(column: np.ndarray, kind: str):
    """A converted column as the joint sample keeps it: categorical as codes (2 bytes a value)."""
    return column if kind == "numeric" else CategoryCodes.of(column)


def _present_counts(column: np.ndarray) -> Counter:
    """Counter of the non-missing categories, in order of first appearance."""
    counts = Counter(column.tolist())
    counts.pop(None, None)
    return counts


def _by_frequency(counts: Counter) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def category_counts(column: np.ndarray) -> dict[str, int]:
    """Counts of the non-missing categories of a converted column, most frequent first."""
    return _by_frequency(_present_counts(column))


class WindowColumn:
    """One window column, converted once, with what several tests derive from it.

    Every window test accepts a ``WindowColumn`` wherever it accepts raw values,
    so :func:`~detectors.suite.evaluate_window` converts, counts, sorts and bins
    each column once per window instead of once per test. Derived values are
    computed on first use and shared: treat them as read-only.

    Examples
    --------
    >>> column = WindowColumn(["b", "a", None, "b"], "categorical")
    >>> column.values.tolist(), column.n_missing, column.category_counts
    (['b', 'a', None, 'b'], 1, {'b': 2, 'a': 1})
    >>> WindowColumn([3.0, None, 1.0], "numeric").sorted_present.tolist()
    [1.0, 3.0]
    """

    __slots__ = ("kind", "type", "raw", "values", "_present", "_sorted_present", "_counts", "_category_counts", "_summary",
                 "_safe_summary", "_shared")

    def __init__(self, values, kind: str):
        self.type = kind   # "boolean" converts 1/0 too, and is a categorical column for every test
        self.kind = "categorical" if kind == "boolean" else kind
        self.raw = values  # as given: the data-quality checks look at the types the conversion hides
        self.values = to_column(values, kind)
        self._present = self._sorted_present = self._counts = self._category_counts = self._summary = None
        self._safe_summary = None
        self._shared: dict = {}  # (name, id(owner)) -> (owner, value)

    @classmethod
    def of(cls, values, kind: str) -> "WindowColumn":
        """``values`` itself when it is already a converted column of this kind, else a new one."""
        if isinstance(values, WindowColumn):
            return values if kind in (values.type, values.kind) else cls(values.raw, kind)
        return cls(values, kind)

    def __len__(self) -> int:
        return int(self.values.size)

    def shared(self, name: str, owner, compute):
        """``compute()`` once per window for each ``(name, owner)``, e.g. the histograms
        against one feature profile, which PSI and Jensen-Shannon both need."""
        key = (name, id(owner))
        hit = self._shared.get(key)
        if hit is None or hit[0] is not owner:  # the owner is kept, so its id cannot be reused meanwhile
            hit = self._shared[key] = (owner, compute())
        return hit[1]

    @property
    def present(self) -> np.ndarray:
        """Numeric: the non-missing values, in window order."""
        if self._present is None:
            self._present = self.values[~np.isnan(self.values)]
        return self._present

    @property
    def sorted_present(self) -> np.ndarray:
        """Numeric: the non-missing values, sorted."""
        if self._sorted_present is None:
            self._sorted_present = np.sort(self.present)
        return self._sorted_present

    @property
    def counts(self) -> Counter:
        """Categorical: counts of the non-missing categories, in order of first appearance."""
        if self._counts is None:
            self._counts = _present_counts(self.values)
        return self._counts

    @property
    def category_counts(self) -> dict[str, int]:
        """Categorical: as :func:`category_counts`, most frequent first."""
        if self._category_counts is None:
            self._category_counts = _by_frequency(self.counts)
        return self._category_counts

    @property
    def n_missing(self) -> int:
        if self.kind == "numeric":
            return int(self.values.size - self.present.size)
        return int(self.values.size - sum(self.counts.values()))

    @property
    def summary(self) -> dict:
        """As :func:`~detectors.summary.summarize` of the column."""
        if self._summary is None:
            n = int(self.values.size)
            if self.kind == "numeric":
                self._summary = summarize_present(n, self.present, "numeric")
            else:
                self._summary = summarize_present(n, self.counts, "categorical")
        return self._summary

    @property
    def safe_summary(self) -> dict:
        """``json_safe(self.summary)``, once per window: every test's evidence carries it (read-only)."""
        if self._safe_summary is None:
            self._safe_summary = json_safe(self.summary)
        return self._safe_summary


# json_safe of each profile's summary, computed once: the evidence of every window's tests carries it.
_SAFE_SUMMARIES: "weakref.WeakKeyDictionary[FeatureProfile, tuple]" = weakref.WeakKeyDictionary()


def safe_summary(feature_profile: "FeatureProfile") -> dict:
    """``json_safe(feature_profile.summary)``, kept per profile while it keeps that summary (read-only)."""
    summary = feature_profile.summary
    hit = _SAFE_SUMMARIES.get(feature_profile)
    if hit is None or hit[0] is not summary:
        hit = _SAFE_SUMMARIES[feature_profile] = (summary, json_safe(summary))
    return hit[1]


def safe_evidence(evidence: dict, feature_profile: "FeatureProfile", column: WindowColumn) -> dict:
    """``json_safe(evidence)`` (str keys, in order), with the profile's and the column's summaries
    (``"reference"``/``"current"``, when they are those objects) taken from their caches instead of
    walked again for every test.

    >>> fp = FeatureProfile.from_values("x", [1.0, 2.0, float("nan")])
    >>> column = WindowColumn([np.float64(3.0), None], "numeric")
    >>> evidence = {"n": np.int64(2), "reference": fp.summary, "current": column.summary, "p": np.float64("nan")}
    >>> safe_evidence(evidence, fp, column) == json_safe(evidence)
    True
    """
    out = {}
    for key, value in evidence.items():
        if key == "reference" and value is feature_profile.summary:
            out[key] = safe_summary(feature_profile)
        elif key == "current" and value is column.summary:
            out[key] = column.safe_summary
        else:
            out[key if type(key) is str else str(key)] = json_safe(value)
    return out


@dataclass(eq=False)
class FeatureProfile:
    """What the tests need to know about one reference feature.

    Build it with :meth:`from_values`; the array fields are None for the other kind.

    Examples
    --------
    >>> fp = FeatureProfile.from_values("x", [3.0, 1.0, None, 2.0], n_bins=2)
    >>> fp.kind, fp.n, fp.missing_rate, fp.sample.tolist(), fp.bin_edges.tolist()
    ('numeric', 4, 0.25, [1.0, 2.0, 3.0], [2.0])
    >>> FeatureProfile.from_dict(fp.to_dict()).sample.tolist()
    [1.0, 2.0, 3.0]
    >>> FeatureProfile.from_values("c", ["a", "b", "a"]).category_counts
    {'a': 2, 'b': 1}
    """

    name: str
    kind: str
    n: int
    missing_rate: float
    summary: dict
    n_present: int = 0
    sample: np.ndarray | None = None
    bin_edges: np.ndarray | None = None
    std: float | None = None
    category_counts: dict[str, int] | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_values(
        cls,
        name: str,
        values: Sequence | np.ndarray,
        kind: str | None = None,
        n_bins: int = N_BINS,
        max_sample: int = MAX_SAMPLE,
    ) -> "FeatureProfile":
        value_type = kind or infer_type(values)
        column = to_column(values, value_type)
        kind = "categorical" if value_type == "boolean" else value_type
        summary = summarize(column, kind)
        profile = cls(name=name, kind=kind, n=summary["n"], missing_rate=summary["missing_rate"], summary=summary)
        if value_type == "boolean":
            profile.extra["type"] = "boolean"
        if kind == "numeric":
            present = np.sort(column[~np.isnan(column)])
            profile.n_present = int(present.size)
            if present.size > max_sample:
                # Evenly spaced order statistics: deterministic, keeps the quantiles.
                idx = np.round(np.linspace(0, present.size - 1, max_sample)).astype(np.int64)
                profile.sample = present[idx]
            else:
                profile.sample = present
            if present.size:
                qs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
                profile.bin_edges = np.unique(np.quantile(present, qs))
            else:
                profile.bin_edges = np.empty(0)
            profile.std = summary["std"]
        else:
            profile.category_counts = category_counts(column)
            profile.n_present = int(sum(profile.category_counts.values()))
        return profile

    def to_dict(self) -> dict:
        """JSON-safe dict (floats survive a JSON round trip exactly)."""
        return json_safe(
            {
                "name": self.name,
                "kind": self.kind,
                "n": self.n,
                "missing_rate": self.missing_rate,
                "summary": self.summary,
                "n_present": self.n_present,
                "sample": None if self.sample is None else self.sample.tolist(),
                "bin_edges": None if self.bin_edges is None else self.bin_edges.tolist(),
                "std": self.std,
                "category_counts": self.category_counts,
                "extra": self.extra,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping) -> "FeatureProfile":
        def arr(x):
            return None if x is None else np.asarray(x, dtype=np.float64)

        return cls(
            name=d["name"],
            kind=d["kind"],
            n=int(d["n"]),
            missing_rate=float(d["missing_rate"]),
            summary=dict(d["summary"]),
            n_present=int(d.get("n_present", 0)),
            sample=arr(d.get("sample")),
            bin_edges=arr(d.get("bin_edges")),
            std=d.get("std"),
            category_counts=None if d.get("category_counts") is None else {str(k): int(v) for k, v in d["category_counts"].items()},
            extra=dict(d.get("extra") or {}),
        )

    @property
    def value_type(self) -> str:
        """``kind``, or ``"boolean"`` for a categorical feature of booleans: how its windows are converted."""
        return self.extra.get("type", self.kind)

    def __repr__(self) -> str:
        return f"FeatureProfile(name={self.name!r}, kind={self.kind!r}, n={self.n}, missing_rate={self.missing_rate:.4g})"


@dataclass(eq=False)
class ReferenceProfile:
    """Profiles of every reference feature, stored as JSON next to the model.

    Examples
    --------
    >>> ref = ReferenceProfile.from_columns({"age": [30, 40, None, 50], "plan": ["a", "b", "a", None]},
    ...                                     reference_id="model-v3")
    >>> ref.n, sorted(ref.features), ref.features["plan"].kind
    (4, ['age', 'plan'], 'categorical')
    >>> import json
    >>> again = ReferenceProfile.from_dict(json.loads(json.dumps(ref.to_dict())))
    >>> again.reference_id, again.features["age"].sample.tolist()
    ('model-v3', [30.0, 40.0, 50.0])
    """

    features: dict[str, FeatureProfile]
    reference_id: str = ""
    n: int = 0
    n_bins: int = N_BINS
    max_sample: int = MAX_SAMPLE
    # same rows for every feature (multivariate tests): numeric float64, categorical as codes
    joint_sample: dict[str, np.ndarray | CategoryCodes] | None = None
    # "attribute=value" -> the profile of that segment value's reference rows (those with enough rows)
    segments: dict | None = None
    segment_sizes: dict | None = None  # "attribute=value" -> reference rows, for every value seen

    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, Sequence | np.ndarray],
        kinds: Mapping[str, str] | None = None,
        reference_id: str = "",
        n_bins: int = N_BINS,
        max_sample: int = MAX_SAMPLE,
        joint_sample_size: int = 1000,
        segments: Sequence[Mapping | None] | None = None,
        segment_min_size: int = 200,
        max_segment_values: int = 50,
    ) -> "ReferenceProfile":
        """Profile every column; ``joint_sample_size`` rows (seeded, 0 = none) are kept whole for
        multivariate tests such as :class:`~detectors.domain_classifier.DomainClassifier`.

        ``segments`` gives each row's segment attributes (``{"region": "us"}`` or None): every
        segment value with at least ``segment_min_size`` rows (the ``max_segment_values``
        largest) also gets a profile of its own rows, with the same types.

        >>> ref = ReferenceProfile.from_columns({"x": list(range(300))}, segments=[{"r": "a"}] * 250 + [{"r": "b"}] * 50)
        >>> sorted(ref.segments), ref.segment_sizes, ref.segments["r=a"].n
        (['r=a'], {'r=a': 250, 'r=b': 50}, 250)
        """
        kinds = dict(kinds or {})
        unknown = set(kinds.values()) - set(TYPES)
        if unknown:
            raise ValueError(f"unknown kinds {sorted(unknown)}; expected one of {TYPES}")
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"reference columns have different lengths: {sorted(lengths)}")
        features = {
            name: FeatureProfile.from_values(name, values, kinds.get(name), n_bins=n_bins, max_sample=max_sample)
            for name, values in columns.items()
        }
        n = lengths.pop() if lengths else 0
        joint = None
        if joint_sample_size and n:
            rows = np.random.default_rng(0).permutation(n)[:joint_sample_size]
            rows.sort()
            joint = {name: _joint_column(to_column(values, fp.value_type)[rows], fp.kind)
                     for (name, values), fp in zip(columns.items(), features.values())}
        profile = cls(features=features, reference_id=reference_id, n=n, n_bins=n_bins, max_sample=max_sample,
                      joint_sample=joint)
        if segments is not None:
            if len(segments) != n:
                raise ValueError(f"{len(segments)} segment rows for {n} reference rows")
            groups: dict[str, list[int]] = {}
            for index, segment in enumerate(segments):
                for attr, value in (segment or {}).items():
                    groups.setdefault(f"{attr}={value}", []).append(index)
            profile.segment_sizes = {key: len(rows) for key, rows in sorted(groups.items())}
            large = sorted((item for item in groups.items() if len(item[1]) >= segment_min_size),
                           key=lambda item: -len(item[1]))[:max_segment_values]
            types = {name: fp.value_type for name, fp in features.items()}
            profile.segments = {}
            for key, rows in sorted(large):
                take = np.asarray(rows)
                subset = {name: (values[take] if isinstance(values, np.ndarray) else [values[i] for i in rows])
                          for name, values in columns.items()}
                profile.segments[key] = cls.from_columns(subset, kinds=types, reference_id=f"{reference_id}[{key}]",
                                                         n_bins=n_bins, max_sample=max_sample, joint_sample_size=0)
        return profile

    def to_dict(self) -> dict:
        return {
            "version": 1,
            "reference_id": self.reference_id,
            "n": int(self.n),
            "n_bins": int(self.n_bins),
            "max_sample": int(self.max_sample),
            "features": {name: fp.to_dict() for name, fp in self.features.items()},
            "joint_sample": None if self.joint_sample is None else json_safe(
                {name: column.tolist() if isinstance(column, CategoryCodes) else column
                 for name, column in self.joint_sample.items()}),
            "segments": None if self.segments is None else {k: v.to_dict() for k, v in self.segments.items()},
            "segment_sizes": self.segment_sizes,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "ReferenceProfile":
        return cls(
            features={name: FeatureProfile.from_dict(fp) for name, fp in d["features"].items()},
            reference_id=d.get("reference_id", ""),
            n=int(d.get("n", 0)),
            n_bins=int(d.get("n_bins", N_BINS)),
            max_sample=int(d.get("max_sample", MAX_SAMPLE)),
            joint_sample=None if d.get("joint_sample") is None else {
                name: _joint_column(to_column(values, d["features"][name]["kind"]), d["features"][name]["kind"])
                for name, values in d["joint_sample"].items()},
            segments=None if d.get("segments") is None else {
                key: cls.from_dict(sub) for key, sub in d["segments"].items()},
            segment_sizes=None if d.get("segment_sizes") is None else {
                str(k): int(v) for k, v in d["segment_sizes"].items()},
        )

    @property
    def kinds(self) -> dict[str, str]:
        return {name: fp.kind for name, fp in self.features.items()}

    @property
    def types(self) -> dict[str, str]:
        """Per feature ``"numeric"``, ``"categorical"`` or ``"boolean"`` (see :mod:`detectors.values`)."""
        return {name: fp.value_type for name, fp in self.features.items()}

    def __repr__(self) -> str:
        return f"ReferenceProfile(reference_id={self.reference_id!r}, n={self.n}, features={list(self.features)})"
