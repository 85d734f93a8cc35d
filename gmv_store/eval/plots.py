"""PNG plots of the criteria (matplotlib, Agg backend; imported only when a plot is made)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from gmv_store.errors import MissingDependency


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency("plots need matplotlib; fix: pip install matplotlib") from None
    return plt


def _save(fig: Any, path: str | Path, tight: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _finish(fig: Any, ax: Any, path: str | Path, title: str, xlabel: str, ylabel: str, log_x: bool = False) -> Path:
    """The common tail of a one-panel line plot: log axis, labels, grid, legend, saved PNG."""
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def rho_vs_k(panels: dict[str, dict[str, list[dict[str, Any]]]], path: str | Path, title: str = "Identical-class ratio against k") -> Path:
    """panels: panel title (e.g. generator) -> line label -> rows with 'k' and 'rho' (0..1).
    One panel per key; a line label keeps its colour across panels; labels starting with
    "sub" are dashed."""
    plt = _plt()
    labels = list(dict.fromkeys(lab for lines in panels.values() for lab in lines))
    colors = {lab: plt.get_cmap("tab10")(i % 10) for i, lab in enumerate(labels)}
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.0), sharey=True, squeeze=False)
    for ax, (panel, lines) in zip(axes[0], panels.items()):
        for lab, rows in lines.items():
            ax.plot([r["k"] for r in rows], [100 * r["rho"] for r in rows], marker="o", ms=3, color=colors[lab],
                    ls="--" if lab.startswith("sub") else "-", label=lab)
        ax.set_title(panel)
        ax.set_xlabel("k (top-k contributors)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("rho (%)")
    handles, labs = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labs:
                handles.append(h)
                labs.append(lab)
    fig.legend(handles, labs, loc="lower center", ncol=min(4, len(labs)), fontsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * ((len(labs) - 1) // 4), 1, 1))
    return _save(fig, path, tight=False)


def rho_vs_m(series: dict[str, list[dict[str, Any]]], path: str | Path, title: str = "rho against m (mean ± std over repeats)") -> Path:
    """series: label -> rows with 'm', 'rho_mean', 'rho_std'."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (label, rows) in enumerate(series.items()):
        xs = [r["m"] * (1 + 0.04 * i) for r in rows]  # small offsets so error bars do not overlap
        ax.errorbar(xs, [100 * r["rho_mean"] for r in rows], yerr=[100 * r["rho_std"] for r in rows], marker="o",
                    ms=4, capsize=3, label=label)
    lo = min((100 * (r["rho_mean"] - r["rho_std"]) for rows in series.values() for r in rows), default=0.0)
    ax.set_ylim(max(0.0, lo - 2), 101)  # rho cannot exceed 100 %; the bars are symmetric
    return _finish(fig, ax, path, title, "m (generated images)", "rho (%)", log_x=True)


def ood_ranks(rows: list[dict[str, Any]], path: str | Path, title: str = "Value ranks of the foreign training images") -> Path:
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


def roc(curves: dict[str, tuple[list[float], list[float], float]], path: str | Path, title: str) -> Path:
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


def recall_vs_n(series: dict[str, list[dict[str, Any]]], path: str | Path, title: str = "Two-stage recall@k against N") -> Path:
    """series: label -> rows with 'recall_N' and 'recall_at_k'."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for label, rows in series.items():
        ax.plot([r["recall_N"] for r in rows], [r["recall_at_k"] for r in rows], marker="o", ms=3, label=label)
    return _finish(fig, ax, path, title, "N (candidates recalled before re-ranking)",
                   "recall@k against the exact re-rank top-k", log_x=True)
