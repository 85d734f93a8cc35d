"""PNG plots of the criteria (matplotlib, Agg backend; imported only when a plot is made)."""
from __future__ import annotations

from pathlib import Path

from gmv_store.errors import MissingDependency


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency("plots need matplotlib; fix: pip install matplotlib") from None
    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def rho_vs_k(series: dict[str, list[dict]], path, title: str = "Identical-class ratio against k") -> Path:
    """series: label -> rows with 'k' and 'rho' (0..1)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, rows in series.items():
        ax.plot([r["k"] for r in rows], [100 * r["rho"] for r in rows], marker="o", ms=3, label=label)
    ax.set_xlabel("k (top-k contributors)")
    ax.set_ylabel("rho (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def rho_vs_m(series: dict[str, list[dict]], path, title: str = "rho against m (mean ± std over repeats)") -> Path:
    """series: label -> rows with 'm', 'rho_mean', 'rho_std'."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (label, rows) in enumerate(series.items()):
        xs = [r["m"] * (1 + 0.04 * i) for r in rows]  # small offsets so error bars do not overlap
        ax.errorbar(xs, [100 * r["rho_mean"] for r in rows], yerr=[100 * r["rho_std"] for r in rows], marker="o",
                    ms=4, capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("m (generated images)")
    ax.set_ylabel("rho (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def ood_ranks(rows: list[dict], path, title: str = "Value ranks of the foreign training images") -> Path:
    """rows: dicts with 'label' and 'foreign_rank_fractions' (0 = highest value, 1 = lowest).
    One strip per row; the box shows the quartiles."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 0.55 * len(rows) + 1.4))
    import numpy as np

    rng = np.random.default_rng(0)
    for i, r in enumerate(rows):
        x = np.asarray(r["foreign_rank_fractions"])
        ax.scatter(x, i + rng.uniform(-0.18, 0.18, len(x)), s=4, alpha=0.5)
        ax.boxplot([x], positions=[i], vert=False, widths=0.5, showfliers=False)
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=7)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("rank fraction by value among all training images (0 = most valuable, 1 = least)", fontsize=8)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def roc(curves: dict[str, tuple[list, list, float]], path, title: str) -> Path:
    """curves: label -> (fpr, tpr, auc)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    for label, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="gray", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def recall_vs_n(series: dict[str, list[dict]], path, title: str = "Two-stage recall@k against N") -> Path:
    """series: label -> rows with 'recall_N' and 'recall_at_k'."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for label, rows in series.items():
        ax.plot([r["recall_N"] for r in rows], [r["recall_at_k"] for r in rows], marker="o", ms=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("N (candidates recalled before re-ranking)")
    ax.set_ylabel("recall@k against the exact re-rank top-k")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
