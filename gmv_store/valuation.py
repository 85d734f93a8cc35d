"""The GMValuator math as pure functions (method.md, paper Eq. 5 and 6)."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt


def credits(distances: npt.ArrayLike, quality: float) -> npt.NDArray[np.float64]:
    """V(x_i, x^_j) for the top-k contributors P_j of one generated image (Eq. 6):
    q_j * exp(-d_ij) / sum_{i' in P_j} exp(-d_i'j).

    Computed as a softmax shifted by the minimum distance: exp(-d) itself underflows for
    large distances, the shift cancels in the ratio. The credits sum to q_j.
    """
    d: npt.NDArray[np.float64] = np.asarray(distances, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError(f"distances must be 1-d, got shape {d.shape}")
    if d.size == 0:
        return np.zeros(0, dtype=np.float64)
    if not (np.isfinite(quality) and quality > 0):
        raise ValueError(f"quality must be a finite number > 0, got {quality!r}")
    return _eq6(d, quality)


def credits_rows(distances: npt.ArrayLike, quality: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """`credits` for m generated images with k contributors each at once: row i of the
    (m, k) result is credits(distances[i], quality[i]), bit for bit (the same operations
    along each row; numpy sums a contiguous row the same way as a 1-d array)."""
    d: npt.NDArray[np.float64] = np.ascontiguousarray(distances, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if d.ndim != 2 or q.shape != (d.shape[0],):
        raise ValueError(f"distances must be (m, k) and quality (m,), got {d.shape} and {q.shape}")
    if d.size == 0:
        return np.zeros(d.shape, dtype=np.float64)
    if not (np.isfinite(q).all() and (q > 0).all()):
        raise ValueError(f"quality must be finite numbers > 0, got {q[~(np.isfinite(q) & (q > 0))][:3].tolist()!r}")
    return _eq6(d, q[:, None])


def _eq6(d: npt.NDArray[np.float64], quality: float | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    if not np.isfinite(d).all():
        raise ValueError("distances must be finite")
    w = np.exp(-(d - d.min(axis=-1, keepdims=True)))
    out: npt.NDArray[np.float64] = quality * w / w.sum(axis=-1, keepdims=True)
    return out


def average_value(value_sum: float, m: int) -> float:
    """phi_i = (1/m) * sum_j V(x_i, x^_j) (Eq. 5); m = generated images valued in the set."""
    if m <= 0:
        raise ValueError("m must be positive")
    return value_sum / m


def identical_class_ratio(labels_of_contributors: Iterable[object], label: object) -> float:
    """rho for one generated image: the fraction of its top-k contributors with its class (C1)."""
    labels = list(labels_of_contributors)
    if not labels:
        return float("nan")
    return sum(1 for x in labels if x == label) / len(labels)
