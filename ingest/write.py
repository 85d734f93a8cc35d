"""Step 4: write vectors, then ledger rows — journaled so the two never disagree.

Order: journal row (committed) -> Qdrant upsert (durable) -> one ledger transaction that
inserts the rows and deletes the journal row. A crash before the ledger commit leaves
journaled points with no rows; `Store.recover` deletes them on the next open.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from gmv_store.diskspace import check_write
from gmv_store.ledger import insert_columns, transaction
from gmv_store.store import TRAINING, Store
from gmv_store.vectors import point_id

from .decode import Decoded


def write_training(store: Store, batch: list[Decoded], vectors: dict, owner: str | None, meta: dict) -> None:
    if not batch:
        return
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    ids = [point_id(d.sha256) for d in batch]
    payloads = [
        {"contributor_id": d.short_id, "sha256": d.sha256, "source": d.source, "owner": owner,
         "label": d.label, "meta": meta, "ingested_at": now.isoformat(timespec="seconds")}
        for d in batch
    ]
    check_write(store, f"writing {len(batch):,} training images", vectors=vectors, payloads=payloads, rows=2 * len(batch))
    op = store.journal_begin("ingest", TRAINING, ids)
    store.vectors.upsert(TRAINING, ids, vectors, payloads)
    cols = {
        "contributor_id": [d.short_id for d in batch], "point_id": ids, "sha256": [d.sha256 for d in batch],
        "source": [d.source for d in batch], "owner": [owner] * len(batch), "label": [d.label for d in batch],
        "meta": [json.dumps(meta)] * len(batch), "height": [d.pixels.shape[0] for d in batch],
        "width": [d.pixels.shape[1] for d in batch], "channels": [d.pixels.shape[2] for d in batch],
        "ingested_at": [now] * len(batch),
    }
    with transaction(store.ledger) as con:
        insert_columns(con, "training_images", cols)
        # Generated images valued before may now have closer contributors: queue a refresh.
        if con.execute("SELECT count(*) FROM generated_images").fetchone()[0]:
            insert_columns(con, "pending_refresh", {"contributor_id": cols["contributor_id"], "point_id": ids,
                                                    "queued_at": [now] * len(ids)})
        con.execute("DELETE FROM journal WHERE op_id = ?", [op])
