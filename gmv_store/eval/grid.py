"""Generated images beside their top contributors (the paper's Fig. 6 style), from any store
whose generated and training sources can be read back (files, .npz/.npy entries, mnist:...)."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gmv_store.errors import BadInput
from gmv_store.ledger import evaluation as ledger

from .ledger_read import set_info

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection


def pick_generated(con: Connection, set_name: str, rows: int, one_per_label: bool = True) -> list[str]:
    """Generated ids to show: the first of each label (in id order) when labelled, else the first ones."""
    got = ledger.generated_labels(con, set_name)
    if not got:
        raise BadInput(f"set '{set_name}' has no generated images")
    if one_per_label and any(lab is not None for _, lab in got):
        seen: set[str | None] = set()
        out: list[str] = []
        for g, lab in got:
            if lab not in seen:
                seen.add(lab)
                out.append(g)
        got_ids = out
    else:
        got_ids = [g for g, _ in got]
    return got_ids[:rows]


def contributor_grid(con: Connection, set_name: str, path: str | Path, *, rows: int = 6, top: int = 8,
                     generated_ids: Iterable[str] | None = None, title: str | None = None) -> Path:
    """A PNG: one row per generated image: the image, then its `top` contributors with their
    label and credit (label in green when it matches the generated image's label, else red)."""
    from gmv_store.sources import load_source
    from gmv_store.sources.location import root_of

    from .plots import _plt, _save

    set_info(con, set_name)
    root = root_of(con)
    ids = list(generated_ids) if generated_ids else pick_generated(con, set_name, rows)
    plt = _plt()
    fig, axes = plt.subplots(len(ids), top + 1, figsize=(1.05 * (top + 1), 1.2 * len(ids) + 0.5), squeeze=False)
    for i, g in enumerate(ids):
        row = ledger.generated_image(con, set_name, g)
        if row is None:
            raise BadInput(f"generated image {g} is not in set '{set_name}'")
        src, glab, q = row
        contribs = ledger.top_contributors(con, set_name, g, top)
        _show(axes[i][0], load_source(src, root), f"gen {glab}\nq={q:.2f}", "black")
        for j in range(top):
            ax = axes[i][j + 1]
            if j < len(contribs):
                _, csrc, clab, credit = contribs[j]
                color = "green" if (glab is None or clab == glab) else "red"
                _show(ax, load_source(csrc, root), f"{clab} · {credit:.3f}", color)
            else:
                ax.axis("off")
    fig.suptitle(title or f"set {set_name}: generated image, then its top-{top} contributors (label · credit)",
                 fontsize=8)
    return _save(fig, path)


def _show(ax: Any, pixels: np.ndarray, text: str, color: str) -> None:
    img = pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
    ax.set_title(text, fontsize=6, color=color)
    ax.set_xticks([])
    ax.set_yticks([])
