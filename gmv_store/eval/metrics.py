"""Small statistics the criteria share: ROC AUC with ties, ROC curve, ranks, one-sided t-test.

Plain numpy/scipy so that each number can be checked by hand in tests.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from gmv_store.errors import BadInput


def _scores_and_labels(scores: ArrayLike, positive: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(positive, dtype=bool).ravel()
    if s.shape != y.shape:
        raise BadInput(f"scores ({s.size}) and labels ({y.size}) differ in length")
    if not np.isfinite(s).all():
        raise BadInput("scores must be finite")
    return s, y


def roc_auc(scores: ArrayLike, positive: ArrayLike) -> float:
    """Area under the ROC curve of "higher score => positive":
    P(score of a positive > score of a negative) + 0.5 * P(tie) (the Mann-Whitney U / (n+ n-)).
    NaN when either class is empty."""
    from scipy.stats import rankdata

    s, y = _scores_and_labels(scores, positive)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)  # average ranks: ties count one half
    u = r[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(scores: ArrayLike, positive: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to
    (1, 1); tied scores move both rates at once (a diagonal step)."""
    s, y = _scores_and_labels(scores, positive)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = np.cumsum(y)[last_of_group]
    fp = np.cumsum(~y)[last_of_group]
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def descending_ranks(values: ArrayLike) -> np.ndarray:
    """Rank 1 = the highest value; ties share their average rank."""
    from scipy.stats import rankdata

    v = np.asarray(values, dtype=np.float64)
    ranks: np.ndarray = rankdata(-v)
    return ranks


def one_sided_ttest(a: ArrayLike, b: ArrayLike) -> dict[str, float]:
    """Welch's t-test of mean(a) > mean(b) (unequal variances). Returns t, p, dof."""
    from scipy.stats import ttest_ind

    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if len(xa) < 2 or len(xb) < 2:
        raise BadInput(f"t-test needs at least 2 values per group, got {len(xa)} and {len(xb)}")
    r = ttest_ind(xa, xb, equal_var=False, alternative="greater")
    dof = getattr(r, "df", float("nan"))
    return {"t": float(r.statistic), "p": float(r.pvalue), "dof": float(dof)}


def mean_std(xs: ArrayLike) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    x = np.asarray(xs, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0


def fmt_p(p: float | None) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-300 else "<1e-300"
