"""Write a batch of training images: vectors to Qdrant, rows to the ledger, journaled by
`Store.adding` so the two never disagree. Payloads repeat the ledger row."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from gmv_store.errors import BadInput, param
from gmv_store.ledger import insert_columns
from gmv_store.ledger.origins import record_origins
from gmv_store.ledger.records import training_payload
from gmv_store.sources import Decoded
from gmv_store.sources.location import to_record
from gmv_store.store import TRAINING, Store
from gmv_store.vectors import point_id

# payload field: when a training point was written (µs). Refresh finds the points waiting to
# be matched by a range on it (one small indexed condition) rather than by their ids.
SEQ = "ingest_seq"


def image_meta(d: Decoded, meta: dict) -> dict:
    """An image's own metadata (its Parquet columns, its .json) with `--meta` on top: what
    the user states on the command line wins."""
    return {**d.meta, **meta} if d.meta else meta


def row_owners(batch: list[Decoded], owner: str | None, column: str | None) -> list[str | None]:
    """Each image's owner: its metadata's `column` (a Parquet column, a WebDataset .json key),
    else `owner`. A column that no image of the batch has is a mistake, not a default."""
    if column is None:
        return [owner] * len(batch)
    got = [(d.meta or {}).get(column) for d in batch]
    if all(v is None for v in got):
        keys = sorted({k for d in batch for k in (d.meta or {})})
        raise BadInput(f"{param('owner_column')} {column!r}: no image from {batch[0].source} on has it; their "
                       f"metadata keys: {', '.join(keys) or 'none'}; fix: name one of them")
    for d, v in zip(batch, got):
        if isinstance(v, (dict, list)):
            raise BadInput(f"{d.source}: owner {column!r} is a {type(v).__name__}; fix: a string or number per image")
    return [owner if v is None else str(v) for v in got]


def write_training(store: Store, batch: list[Decoded], vectors: dict, owner: str | None, meta: dict,
                   owner_column: str | None = None) -> None:
    if not batch:
        return
    owners = row_owners(batch, owner, owner_column)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    seq = time.time_ns() // 1000  # microseconds: exact as a float, which Qdrant's range filter takes
    ids = [point_id(d.sha256) for d in batch]
    metas = [image_meta(d, meta) for d in batch]
    sources = [to_record(d.source, store.root) for d in batch]  # inside the store: relative, so it can move
    payloads = [training_payload(d.short_id, d.sha256, src, who, d.label, m, now, d.pixels.shape) | {SEQ: seq}
                for d, m, src, who in zip(batch, metas, sources, owners)]
    shared = json.dumps(meta)
    cols = {
        "contributor_id": [d.short_id for d in batch], "point_id": ids, "sha256": [d.sha256 for d in batch],
        "source": sources, "owner": owners, "label": [d.label for d in batch],
        "meta": [json.dumps(m) if m is not meta else shared for m in metas], "height": [d.pixels.shape[0] for d in batch],
        "width": [d.pixels.shape[1] for d in batch], "channels": [d.pixels.shape[2] for d in batch],
        "ingested_at": [now] * len(batch),
    }
    with store.adding("ingest", TRAINING, ids, vectors, payloads) as con:
        insert_columns(con, "training_images", cols)
        record_origins(con, TRAINING, ids, batch)  # given vectors (--vectors): where gmv repair re-reads them
        # Generated images valued before may now have closer contributors: a refresh is due.
        if con.execute("SELECT count(*) FROM generated_images").fetchone()[0]:
            insert_columns(con, "pending_refresh", {"contributor_id": cols["contributor_id"], "point_id": ids,
                                                    "queued_at": [now] * len(ids), "seq": [seq] * len(ids)})
