"""The store's record of its backends and Qdrant location (store.json in the store folder).

Secrets never appear here: a server's API key is read from GMV_QDRANT_API_KEY at connect time.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, Field

from .errors import StoreMismatch, StoreNotFound

CONFIG_FILE = "store.json"
LEDGER_FILE = "ledger.duckdb"
DEFAULT_STORE = "gmv-store-data"


class BackendSpec(BaseModel):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    weights_sha256: Optional[str] = None


class StoreConfig(BaseModel):
    format: int = 1
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    embedder: BackendSpec
    rerank: BackendSpec
    quality: BackendSpec
    engine: Literal["edge", "local", "server"] = "edge"
    qdrant_url: Optional[str] = None
    collection_prefix: str = "gmv"

    def backends_equal(self, other: "StoreConfig") -> bool:
        return (self.embedder, self.rerank, self.quality) == (other.embedder, other.rerank, other.quality)


def default_store_path(path: str | os.PathLike | None) -> Path:
    return Path(path or os.environ.get("GMV_STORE") or DEFAULT_STORE)


def read_config(store: Path) -> StoreConfig:
    f = store / CONFIG_FILE
    if not f.is_file():
        raise StoreNotFound(f"{store}: no gmv store here; fix: run `gmv init --store {store}` or pass --store / set GMV_STORE")
    try:
        return StoreConfig.model_validate_json(f.read_text())
    except ValueError as e:
        raise StoreMismatch(f"{f}: unreadable store config ({str(e).splitlines()[0]}); fix: restore it from a backup") from None


def write_config(store: Path, config: StoreConfig) -> None:
    tmp = store / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(config.model_dump(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, store / CONFIG_FILE)


def describe_backend(spec: BackendSpec) -> str:
    params = ",".join(f"{k}={v}" for k, v in sorted(spec.params.items()))
    return f"{spec.name}({params})" if params else spec.name
