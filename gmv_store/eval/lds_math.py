"""The statistics of the counterfactual checks, as pure functions (checked by hand in tests).

LDS (linear datamodeling score; Ilyas et al. 2022, TRAK, D-TRAK): for a generated image j
with attribution scores tau_j over the training images and random training subsets S_1..S_s,
the Spearman correlation over the subsets between the predicted output sum_{i in S} tau_j(i)
and the actual output f_j(S) (here: log p(x_j | y_j) under a model retrained on S); the LDS is
its mean over the generated images.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from gmv_store.errors import BadInput


def row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of a with the same row of b (average ranks for ties);
    NaN for a row that is constant in a or b (no ranking to correlate)."""
    from scipy.stats import rankdata

    a, b = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape:
        raise BadInput(f"row_spearman: shapes {a.shape} and {b.shape} differ")
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1.0), np.nan)


def subset_masks(n: int, subsets: int, fraction: float, seed: int) -> np.ndarray:
    """(subsets, n) bool: each row a uniformly random subset of round(fraction * n) of n."""
    if not 0 < fraction < 1:
        raise BadInput(f"--fraction {fraction}: must lie strictly between 0 and 1")
    size = round(fraction * n)
    if not 1 <= size < n:
        raise BadInput(f"--fraction {fraction} of {n} training images keeps {size}; fix: a larger store or fraction")
    rng = np.random.default_rng(seed)
    masks = np.zeros((subsets, n), dtype=bool)
    for s in range(subsets):
        masks[s, rng.choice(n, size, replace=False)] = True
    return masks


def lds_scores(scores: np.ndarray, masks: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per generated image: Spearman over subsets of (scores @ mask) against actual.
    scores (m, n) attribution, masks (s, n) bool, actual (s, m) outputs."""
    predicted = np.asarray(scores, dtype=np.float64) @ masks.T.astype(np.float64)  # (m, s)
    return row_spearman(predicted, np.asarray(actual, dtype=np.float64).T)


def bootstrap_ci(values: ArrayLike, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (NaNs left out)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


def paired_greater(a: ArrayLike, b: ArrayLike) -> dict[str, float]:
    """One-sided paired tests that a > b: the t-test (p_value) and Wilcoxon's signed-rank test."""
    from scipy.stats import ttest_rel, wilcoxon

    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if xa.shape != xb.shape or xa.ndim != 1 or len(xa) < 2:
        raise BadInput(f"paired test: need two equal-length samples of at least 2, got {xa.shape} and {xb.shape}")
    d = xa - xb
    if np.all(d == d[0]):  # no spread: the t statistic is undefined
        return {"t": math.nan, "p_value": 0.0 if d[0] > 0 else 1.0, "p_wilcoxon": 0.0 if d[0] > 0 else 1.0}
    t = ttest_rel(xa, xb, alternative="greater")
    w = wilcoxon(xa, xb, alternative="greater") if np.any(d != 0) else None
    return {"t": float(t.statistic), "p_value": float(t.pvalue), "p_wilcoxon": float(w.pvalue) if w else 1.0}


def nanmean(v: ArrayLike) -> float:
    x = np.asarray(v, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else math.nan
