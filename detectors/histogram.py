"""Reference vs window histograms shared by PSI and Jensen-Shannon.

Numeric features use the quantile bin edges fixed on the reference (outer bins
open to +-inf, a value equal to an edge goes to the bin above); categorical
features use the union of reference and window categories.
"""

from __future__ import annotations

import weakref

import numpy as np

from detectors.profile import FeatureProfile, WindowColumn

__all__ = ["histograms", "bin_counts"]


def bin_counts(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Counts of non-missing ``values`` in the ``len(edges) + 1`` bins cut by ``edges``."""
    values = values[~np.isnan(values)]
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)


def histograms(feature_profile: FeatureProfile, values) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Bin labels, reference counts and window counts (missing values excluded).

    ``values`` may be a :class:`~detectors.profile.WindowColumn`; its histograms
    are then computed once per feature profile and shared (read-only) by the
    tests that ask again.

    >>> fp = FeatureProfile.from_values("x", [1.0, 2.0, 3.0, 4.0], n_bins=2)
    >>> histograms(fp, [0.0, 2.5, 3.0, None])
    (['< 2.5', '>= 2.5'], array([2, 2]), array([1, 2]))
    """
    column = WindowColumn.of(values, feature_profile.kind)
    return column.shared("histograms", feature_profile, lambda: _histograms(feature_profile, column))


# Reference side of the numeric histograms, per profile: it is the same for every window.
_REFERENCE_BINS: "weakref.WeakKeyDictionary[FeatureProfile, tuple]" = weakref.WeakKeyDictionary()


def _reference_bins(feature_profile: FeatureProfile) -> tuple[list[str], np.ndarray]:
    edges, sample = feature_profile.bin_edges, feature_profile.sample
    hit = _REFERENCE_BINS.get(feature_profile)
    if hit is not None and hit[0] is edges and hit[1] is sample:  # kept only while the profile keeps these arrays
        return hit[2], hit[3]
    if edges.size == 0:
        labels = ["all"]
    else:
        labels = [f"< {edges[0]:.6g}"] + [f"[{a:.6g}, {b:.6g})" for a, b in zip(edges[:-1], edges[1:])] + [f">= {edges[-1]:.6g}"]
    ref = bin_counts(edges, sample)
    ref.flags.writeable = False
    _REFERENCE_BINS[feature_profile] = (edges, sample, labels, ref)
    return labels, ref


def _histograms(feature_profile: FeatureProfile, column: WindowColumn) -> tuple[list[str], np.ndarray, np.ndarray]:
    if feature_profile.kind == "numeric":
        labels, ref = _reference_bins(feature_profile)
        edges = feature_profile.bin_edges
        cur = np.bincount(np.searchsorted(edges, column.present, side="right"), minlength=edges.size + 1)
        return list(labels), ref.copy(), cur
    ref_counts = feature_profile.category_counts
    cur_counts = column.counts
    labels = list(ref_counts) + sorted(c for c in cur_counts if c not in ref_counts)
    ref = np.array([ref_counts.get(c, 0) for c in labels], dtype=np.int64)
    cur = np.array([cur_counts.get(c, 0) for c in labels], dtype=np.int64)
    return labels, ref, cur
