"""`gmv repair` of lost points whose vectors came with the data (`--vectors`,
docs/precomputed.md): such vectors cannot be computed from the images, so they are read
again from the files the ledger records (`vector_origins`), each checked against the digest
recorded of the vector stored. A re-rank vector that was not given is made as ingest made it
(`gmv_store.ingest.vectors_in.complete`: from the image, checked against its sha256, or the placeholder
of a row without one)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gmv_store.ingest.vectors_in import complete

from .backends.named import batch_vectors
from .errors import BadInput, GmvError, SourceChanged
from .ledger.origins import Origin
from .ledger.rebuild import StoredGenerated, StoredTraining
from .sources.checked import load_checked
from .sources.items import Decoded
from .sources.vector_arrays import vector_digests
from .sources.vector_rows import read_rows
from .sources.vectors import NO_PIXELS, id_sha256
from .store import Store

BATCH = 256
Stored = StoredTraining | StoredGenerated


def reread_given(store: Store, collection: str, rows: Sequence[Stored],
                 given: dict[int, dict[str, Origin]]) -> list[tuple[Stored, str]]:
    """Write these points again under their old ids from their recorded vector files; the rows
    that cannot be, with why: "vectors: <file> is missing" (or cannot be read, or now holds
    another vector), "unreadable"/"changed" for an image a re-rank vector is computed from."""
    spec = store.vector_spec()
    found, failed = _read_all(rows, given, {name: s.dim for name, s in spec.items()})
    bad: list[tuple[Stored, str]] = [(r, "vectors: " + failed[r.point_id]) for r in rows if r.point_id in failed]
    ok = [r for r in rows if r.point_id not in failed]
    for i in range(0, len(ok), BATCH):
        batch: list[tuple[Stored, Decoded]] = []
        for r in ok[i:i + BATCH]:
            d = Decoded(r.source, r.label, NO_PIXELS, r.sha256,
                        vectors={name: got[r.point_id] for name, got in found.items() if r.point_id in got})
            if "rerank" in spec and "rerank" not in (d.vectors or {}) and r.sha256 != id_sha256(r.source):
                try:  # the re-rank vector was computed from the image at ingest: again from it
                    d.pixels = load_checked(r.source, r.sha256, store.root)
                except SourceChanged:
                    bad.append((r, "changed"))
                    continue
                except (GmvError, OSError, ValueError):
                    bad.append((r, "unreadable"))
                    continue
            batch.append((r, d))
        if batch:
            decoded = complete(store, [d for _, d in batch])
            store.vectors.upsert(collection, [r.point_id for r, _ in batch], batch_vectors(decoded, store.embed),
                                 [r.payload() for r, _ in batch])
    return bad


def _read_all(rows: Sequence[Stored], given: dict[int, dict[str, Origin]],
              dims: dict[str, int]) -> tuple[dict[str, dict[int, np.ndarray]], dict[int, str]]:
    """({vector name: {point id: vector}}, {point id: why it cannot be read}), each file read once."""
    by_file: dict[tuple[str, str | None, str], list[tuple[int, Origin]]] = {}
    for r in rows:
        for name, o in given.get(r.point_id, {}).items():
            if name in dims:
                by_file.setdefault((o.file, o.column, name), []).append((r.point_id, o))
    found: dict[str, dict[int, np.ndarray]] = {name: {} for name in dims}
    failed: dict[int, str] = {}
    for (file, column, name), items in by_file.items():
        where = file if column is None else f"{file} (column {column})"
        try:
            got = read_rows(file, column, [o.row for _, o in items], dims[name])
        except FileNotFoundError:
            reason = f"{where} is missing"
        except (BadInput, OSError, ValueError) as e:
            reason = f"{where} cannot be read ({(str(e).splitlines() or [type(e).__name__])[0][:160]})"
        else:
            for (pid, o), v, digest in zip(items, got, vector_digests(got).tolist()):
                if digest == o.digest:
                    found[name][pid] = v
                else:
                    failed.setdefault(pid, f"{where} row {o.row} now holds another vector than the one stored")
            continue
        for pid, _ in items:
            failed.setdefault(pid, reason)
    return found, failed
