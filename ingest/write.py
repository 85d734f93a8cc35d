"""Write a batch of training images: vectors to Qdrant, rows to the ledger, journaled by
`Store.adding` so the two never disagree. Payloads repeat the ledger row.

In two steps, so that ingest can run the first off the writing thread (ingest/overlap.py):
`prepare_training` makes everything a write needs from the batch (ids, payloads, ledger
columns, the engine's points) and touches neither the ledger nor the collection;
`journal_prepared` journals it, the writer upserts its points, and `commit_prepared` (on the
ledger thread, ingest/overlap.py `write_staged`) inserts its rows and closes the journal op.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gmv_store.errors import BadInput, param
from gmv_store.ids import short_id
from gmv_store.ledger.origins import OriginGroups, origin_groups, record_origins
from gmv_store.ledger.records import meta_json, payload_time, training_payload
from gmv_store.ledger.training import insert_training, queue_new_training
from gmv_store.sources import Decoded
from gmv_store.sources.location import to_record
from gmv_store.store import TRAINING, Store
from gmv_store.vectors import PreparedUpsert, point_id

# payload field: when a training point was written (µs). Refresh finds the points waiting to
# be matched by a range on it (one small indexed condition) rather than by their ids.
SEQ = "ingest_seq"
# JSON bytes of a training payload besides its meta and source (keys, sha256, id, time,
# shape, owner, label; measured ~330 with a short owner and label): with the meta JSON the
# ledger column needs anyway, the disk-room check needs no second serialisation
PAYLOAD_FIXED_BYTES = 1024


@dataclass
class TrainingRows:
    """A batch's rows ready for the ledger and the engine, made from the batch alone (no
    store): ledger columns (all but ingested_at, which is `now` for every row), payloads,
    their JSON size, and where given vectors were read (`origins`, by (vector name, file,
    column): point ids, rows, digests). Made in another process by the vectors' reader
    (ingest/vectors_reader.py), so it pickles."""

    columns: dict[str, list[Any]]
    payloads: list[dict[str, Any]]
    payload_bytes: int
    now: datetime
    seq: int
    origins: OriginGroups


@dataclass
class PreparedBatch:
    """A batch ready to be written: its rows (after dedupe; empty where another process
    prepared them), ledger columns and origins (`TrainingRows`), and points."""

    rows: list[Decoded]
    columns: dict[str, list[Any]]
    upsert: PreparedUpsert
    now: datetime
    seq: int
    origins: OriginGroups

    @property
    def sha256(self) -> list[str]:
        return self.columns["sha256"]

    @property
    def size(self) -> int:
        return len(self.columns["point_id"])


def image_meta(d: Decoded, meta: dict[str, Any]) -> dict[str, Any]:
    """An image's own metadata (its Parquet columns, its .json) with `--meta` on top: what
    the user states on the command line wins."""
    if not meta:
        return d.meta or meta
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


def prepare_training(store: Store, batch: list[Decoded], vectors: dict[str, np.ndarray], owner: str | None,
                     meta: dict[str, Any], owner_column: str | None = None) -> PreparedBatch:
    """Everything a write of these rows needs, made from the batch alone: safe on a thread
    other than the writer's (it reads the store's root and vector engine, changes nothing)."""
    t = training_rows(Path(store.root), batch, owner, meta, owner_column)
    return with_points(store, t, vectors, batch)


def with_points(store: Store, t: TrainingRows, vectors: dict[str, np.ndarray], batch: list[Decoded]) -> PreparedBatch:
    """The engine's points of prepared rows (`VectorStore.prepare_upsert`)."""
    up = store.vectors.prepare_upsert(TRAINING, t.columns["point_id"], vectors, t.payloads, t.payload_bytes)
    return PreparedBatch(batch, t.columns, up, t.now, t.seq, t.origins)


def training_rows(root: Path, batch: list[Decoded], owner: str | None, meta: dict[str, Any],
                  owner_column: str | None = None) -> TrainingRows:
    """The ledger columns and payloads of these rows (a store at `root`). Each row's meta is
    serialised to JSON once, for its ledger column and the room check."""
    owners = row_owners(batch, owner, owner_column)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    seq = time.time_ns() // 1000  # microseconds: exact as a float, which Qdrant's range filter takes
    shared = json.dumps(meta)
    stamp = payload_time(now)
    names = ("contributor_id", "point_id", "sha256", "source", "owner", "label", "meta", "height", "width", "channels")
    columns: dict[str, list[Any]] = {c: [] for c in names}
    cid, pid, sha, src_c, own_c, lab_c, meta_c, h_c, w_c, c_c = (columns[c] for c in names)
    payloads = []
    payload_bytes = PAYLOAD_FIXED_BYTES * len(batch)
    for d, who in zip(batch, owners):  # one pass: this runs for every row ingested
        m = image_meta(d, meta)
        mj = meta_json(m) if m is not meta else shared
        src = to_record(d.source, root)  # inside the store: relative, so it can move
        shape = d.pixels.shape
        short = short_id(d.sha256)
        payload = training_payload(short, d.sha256, src, who, d.label, m, stamp, shape)
        payload[SEQ] = seq
        payloads.append(payload)
        cid.append(short)
        pid.append(point_id(d.sha256))
        sha.append(d.sha256)
        src_c.append(src)
        own_c.append(who)
        lab_c.append(d.label)
        meta_c.append(mj)
        h_c.append(shape[0])
        w_c.append(shape[1])
        c_c.append(shape[2])
        payload_bytes += len(mj) + len(src) + len(who or "") + len(d.label or "")
    # given vectors (--vectors): where gmv repair re-reads them
    return TrainingRows(columns, payloads, payload_bytes, now, seq, origin_groups(pid, batch))


def journal_prepared(store: Store, p: PreparedBatch) -> int:
    """A prepared batch's journal row alone (Store.journaling): its points are written next
    (`store.vectors.write_prepared(p.upsert)`), then `commit_prepared` closes the op."""
    return store.journaling("ingest", TRAINING, p.columns["point_id"], p.upsert)


def check_room_prepared(store: Store, p: PreparedBatch) -> None:
    """Room for a prepared batch (Store.check_room), before `commit_prepared(journal_next=p)`."""
    store.check_room(TRAINING, p.columns["point_id"], p.upsert)


def commit_prepared(store: Store, con: Any, p: PreparedBatch, op: int, generated_exist: bool | None = None,
                    journal_next: PreparedBatch | None = None) -> int | None:
    """A batch's ledger rows and the end of its journal op `op`, in one transaction on `con`
    (the ledger or a cursor of it). `generated_exist`: whether the store has valued images
    (new rows then wait for a refresh), when the caller knows it; else the ledger is asked.
    `journal_next`: a later batch whose journal row opens in the same transaction (its room
    checked by the caller, `Store.check_room`); returns that row's op."""
    cols = p.columns
    with store.committing(con, op) as c:
        insert_training(c, cols, p.now)
        record_origins(c, TRAINING, p.origins)  # given vectors (--vectors): where gmv repair re-reads them
        # Generated images valued before may now have closer contributors: a refresh is due.
        queue_new_training(c, cols["contributor_id"], cols["point_id"], p.now, p.seq, generated_exist)
        if journal_next is None:
            return None
        return store.journal_in(c, "ingest", TRAINING, journal_next.columns["point_id"])
