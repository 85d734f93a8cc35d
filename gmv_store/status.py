"""What `gmv status` says about a store's parts beyond the ledger's counts: each vector
collection's points (counted, not cached, when no writer holds the store) and index, and
parts that are missing, damaged or disagree with the ledger."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import StoreConfig


def collections(root: Path, info: dict[str, Any], count: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Per collection: points, indexed points, index and quantization; and the collections
    whose points were counted. With `count`, the embedded engines' collections are opened
    (under the writer lock, when it is free) and their points counted; otherwise, or while a
    writer holds them, their counts are those the last writer recorded. A server is always
    asked. A collection that cannot be opened adds its line to info["warnings"]."""
    from .config import read_config
    from .vectors import ENGINE_DIRS

    cfg = read_config(root)
    ledger_points = {"training": info["training_images"], "generated": sum(s["generated"] for s in info["sets"])}
    states = _count(root, cfg) if (count or cfg.engine == "server") else None
    out: dict[str, Any] = {}
    counted_names: list[str] = []
    for name in ("training", "generated"):
        mode = cfg.index.mode if name == "training" else "exact"
        state = states.get(name) if states is not None else None
        damaged = state.pop("error", None) if state else None
        state = state or None
        counted = state is not None
        if state is None and cfg.engine == "edge":
            from .vectors.edge import read_index_state

            state = read_index_state(root / ENGINE_DIRS["edge"] / name)
        points = state["points"] if state else ledger_points[name]
        indexed = None if state is None else (state["indexed_points"] if mode != "exact" else 0)
        if counted:
            counted_names.append(name)
        if damaged:
            info.setdefault("warnings", []).append(damaged)
        out[name] = {"points": points, "indexed_points": indexed,
                     "index": {"exact": "none", "hnsw": "hnsw", "auto": f"hnsw (auto, segments of {cfg.index.auto_points:,}+ points)"}[mode],
                     "quantization": cfg.index.quantization if name == "training" and mode != "exact" else "none"}
    return out, counted_names


def _count(root: Path, cfg: StoreConfig) -> dict[str, dict[str, Any]] | None:
    """{collection: index state with the exact point count}, or None while a writer holds the
    store (an embedded engine lets one process open a collection). A collection that cannot
    be opened is left out: `damaged_parts` names it."""
    from .errors import GmvError, StoreLocked
    from .lock import WriterLock
    from .vectors import open_vector_store

    lock = None
    if cfg.engine != "server":
        try:
            lock = WriterLock(root, wait=0)
        except StoreLocked:
            return None
    try:
        vs = open_vector_store(cfg.engine, root, url=cfg.qdrant_url, prefix=cfg.collection_prefix)
        out: dict[str, dict[str, Any]] = {}
        try:
            for name in ("training", "generated"):
                try:
                    if vs.has_collection(name):
                        out[name] = {**vs.index_state(name), "points": vs.count(name)}
                except GmvError as e:
                    out[name] = {"error": str(e)}
        finally:
            vs.close()
        return out
    finally:
        if lock is not None:
            lock.release()


def disagreements(root: Path, info: dict[str, Any]) -> list[str]:
    """Counted points that differ from the ledger's rows, each with its fix (none while the
    journal holds unfinished writes: the next writer finishes them first)."""
    if info.get("pending_journal"):
        return []
    rows = {"training": info["training_images"], "generated": sum(s["generated"] for s in info["sets"])}
    out = []
    for name, c in info["collections"].items():
        if name in info["points_counted"] and c["points"] != rows[name]:
            out.append(f"vector collection '{name}' holds {c['points']:,} points but the ledger {rows[name]:,} "
                       f"{name} images; values read from this store are wrong until it is repaired; "
                       f"fix: run `gmv repair --store {root}`")
    return out


def missing_parts(root: Path) -> list[str]:
    from .config import read_config
    from .integrity import describe_unfinished, unfinished_repair
    from .vectors import ENGINE_DIRS

    cfg = read_config(root)
    marker = unfinished_repair(root)
    out = [describe_unfinished(root, marker)] if marker else []
    if cfg.engine == "server":
        return out  # checked by every writer when it opens the collections
    base = root / ENGINE_DIRS[cfg.engine]
    if cfg.engine == "edge":
        for name in ("training", "generated"):
            d = base / name
            if not (d.is_dir() and any(d.iterdir())):
                out.append(f"vector collection '{name}' is missing ({d}); writers will refuse the store until it is "
                           f"restored from a backup or rebuilt with `gmv repair --store {root}`")
    elif not base.is_dir():
        out.append(f"vector store folder {base} is missing; restore it from a backup or run `gmv repair --store {root}`")
    return out
