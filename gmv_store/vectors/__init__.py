"""One facade over the Qdrant engines gmv-store can use.

- `edge`   : Qdrant's own engine in-process (qdrant-edge-py): the embedded default.
- `local`  : qdrant-client's local mode (numpy brute force, same client API as a server).
             Slow beyond ~20k points; kept because it runs the client code path that server
             mode uses, so tests can check both engines agree.
- `server` : a Qdrant server or cluster at a URL (docker-compose.yml), API key from
             GMV_QDRANT_API_KEY only.

The pipelines see only `VectorStore` (base.py).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import GmvError
from ..ids import point_id  # the id rule (gmv_store/ids.py), here for the facade's callers
from .base import Hit, PreparedUpsert, Query, VectorSpec, VectorStore, flat_hits, iter_chunks

ENGINES = ("edge", "local", "server")
ENGINE_DIRS = {"edge": "qdrant-edge", "local": "qdrant-local"}


def open_vector_store(engine: str, store_dir: Path, url: str | None = None, prefix: str = "gmv") -> VectorStore:
    if engine == "edge":
        from .edge import EdgeVectorStore

        return EdgeVectorStore(store_dir / ENGINE_DIRS["edge"])
    if engine in ("local", "server"):
        from .client import ClientVectorStore

        return ClientVectorStore(path=store_dir / ENGINE_DIRS["local"], prefix=prefix) if engine == "local" \
            else ClientVectorStore(url=url, prefix=prefix)
    raise GmvError(f"unknown vector engine {engine!r}; choose one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "ENGINE_DIRS", "Hit", "PreparedUpsert", "Query", "VectorSpec", "VectorStore", "flat_hits", "iter_chunks", "open_vector_store",
           "point_id"]
