"""The store's record of its backends and Qdrant location (store.json in the store folder).

Secrets never appear here: a server's API key is read from GMV_QDRANT_API_KEY at connect time.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from .errors import StoreMismatch, StoreNotFound
from .options import IndexMode, IndexOptions, Quantization

CONFIG_FILE = "store.json"
LEDGER_FILE = "ledger.duckdb"
DEFAULT_STORE = "gmv-store-data"


class BackendSpec(BaseModel):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    weights_sha256: str | None = None


class IndexConfig(BaseModel):
    """How the training collection's recall vector is searched, and how collections are laid
    out on a server. Only the recall vector gets a graph: the re-rank vector is searched among
    the recalled ids, where a graph would never be used."""

    mode: IndexMode = IndexOptions.mode  # auto: HNSW once a segment holds auto_points
    # Where HNSW starts to beat exact search on the embedded engine, which splits a collection
    # into two segments: exact / index 0.95-1.05 at 40k-60k points, 1.41 at 90k, 1.5 at 100k
    # (benchmarks/index_crossing.py, N 500). So a segment is indexed from 50,000 points (a
    # ~100,000-point store); below, a build (and the re-check of stored matches it queues)
    # gains nothing. Qdrant's own threshold is 20,000.
    auto_points: int = 50_000
    hnsw_m: int = IndexOptions.hnsw_m  # defaults and limits: gmv_store/options.py
    hnsw_ef_construct: int = IndexOptions.hnsw_ef_construct
    quantization: Quantization = IndexOptions.quantization  # int8 scalar, searched with rescoring and oversampling
    ef_factor: float = IndexOptions.ef_factor                         # search ef = max(ef_min, ef_factor * limit)
    ef_min: int = 256
    # server / cluster layout (docker-compose.cluster.yml); ignored by the embedded engines
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    on_disk_vectors: bool = False  # originals memory-mapped, read when touched (re-rank; recall with int8)
    on_disk_payload: bool = True

    def search_ef(self, limit: int) -> int:
        """HNSW ef for a search keeping `limit` hits: never below the limit (Qdrant would raise
        it anyway), and enough above it for ~0.99 recall (docs/scale-facts: ef 1000 for 500)."""
        return max(self.ef_min, int(self.ef_factor * limit), limit)


STORE_FORMAT = 1  # store.json's layout; a newer one is refused, not misread


class StoreConfig(BaseModel):
    format: int = STORE_FORMAT
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    embedder: BackendSpec
    rerank: BackendSpec
    quality: BackendSpec
    engine: Literal["edge", "local", "server"] = "edge"
    qdrant_url: str | None = None
    collection_prefix: str = "gmv"
    index: IndexConfig = Field(default_factory=IndexConfig)
    # training rows came without images or re-rank vectors (ingest --vectors --id-column): the
    # re-rank falls back to the recall distance for every set (docs/precomputed.md)
    rerank_fallback: bool = False

    def backends_equal(self, other: StoreConfig) -> bool:
        return (self.embedder, self.rerank, self.quality) == (other.embedder, other.rerank, other.quality)


def default_store_path(path: str | os.PathLike[str] | None) -> Path:
    return Path(path or os.environ.get("GMV_STORE") or DEFAULT_STORE)


def read_config(store: Path) -> StoreConfig:
    f = store / CONFIG_FILE
    if not f.is_file():
        raise StoreNotFound(f"{store}: no gmv store here; fix: run `gmv init --store {store}` or pass --store / set GMV_STORE")
    try:
        config = StoreConfig.model_validate_json(f.read_text())
    except ValueError as e:
        raise StoreMismatch(f"{f}: unreadable store config ({str(e).splitlines()[0]}); fix: restore it from a backup") from None
    if config.format > STORE_FORMAT:
        raise StoreMismatch(f"{f} has format {config.format}, this gmv-store reads format {STORE_FORMAT} and earlier: a "
                            "newer version wrote it; fix: upgrade gmv-store (pip install -U gmv-store)")
    return config


def write_config(store: Path, config: StoreConfig) -> None:
    tmp = store / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(config.model_dump(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, store / CONFIG_FILE)


def describe_backend(spec: BackendSpec) -> str:
    params = ",".join(f"{k}={v}" for k, v in sorted(spec.params.items()))
    return f"{spec.name}({params})" if params else spec.name
