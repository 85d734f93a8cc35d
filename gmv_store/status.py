"""What `gmv status` says about a store's parts beyond the ledger's counts: each vector
collection's points and index, and parts that are missing."""
from __future__ import annotations

from pathlib import Path


def collections(root: Path, info: dict) -> dict:
    """Per collection: points, indexed points, index and quantization. The embedded engine's
    counts are those its last writer recorded (a reader cannot open a shard a writer holds);
    a server is asked."""
    from .config import read_config
    from .vectors import ENGINE_DIRS

    cfg = read_config(root)
    ledger_points = {"training": info["training_images"], "generated": sum(s["generated"] for s in info["sets"])}
    out = {}
    for name in ("training", "generated"):
        mode = cfg.index.mode if name == "training" else "exact"
        state = None
        if cfg.engine == "edge":
            from .vectors.edge import read_index_state

            state = read_index_state(root / ENGINE_DIRS["edge"] / name)
        elif cfg.engine == "server":
            from .vectors import open_vector_store

            vs = open_vector_store("server", root, url=cfg.qdrant_url, prefix=cfg.collection_prefix)
            try:
                state = vs.index_state(name)
            finally:
                vs.close()
        points = state["points"] if state else ledger_points[name]
        indexed = None if state is None else (state["indexed_points"] if mode != "exact" else 0)
        out[name] = {"points": points, "indexed_points": indexed,
                     "index": {"exact": "none", "hnsw": "hnsw", "auto": f"hnsw (auto, segments of {cfg.index.auto_points:,}+ points)"}[mode],
                     "quantization": cfg.index.quantization if name == "training" and mode != "exact" else "none"}
    return out


def missing_parts(root: Path) -> list[str]:
    from .config import read_config
    from .vectors import ENGINE_DIRS

    cfg = read_config(root)
    if cfg.engine == "server":
        return []  # checked by every writer when it opens the collections
    base = root / ENGINE_DIRS[cfg.engine]
    out = []
    if cfg.engine == "edge":
        for name in ("training", "generated"):
            d = base / name
            if not (d.is_dir() and any(d.iterdir())):
                out.append(f"vector collection '{name}' is missing ({d}); writers will refuse the store until it is "
                           f"restored from a backup or rebuilt with `gmv repair --store {root}`")
    elif not base.is_dir():
        out.append(f"vector store folder {base} is missing; restore it from a backup or run `gmv repair --store {root}`")
    return out
