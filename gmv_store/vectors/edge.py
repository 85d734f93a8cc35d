"""The embedded engine: Qdrant's own engine in-process (qdrant-edge-py), one shard folder
per collection inside the store. WAL, payload, exact or HNSW search; one writer per shard."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import diskspace
from ..errors import GmvError, MissingDependency
from .base import Query, VectorSpec, VectorStore, check_spec, shared_filters

SPEC_FILE = "gmv-vectors.json"  # the vector sizes/metrics a shard was created with


class EdgeVectorStore(VectorStore):
    engine = "edge"

    def __init__(self, root: Path):
        try:
            import qdrant_edge as qe
        except ImportError:  # pragma: no cover - a core dependency
            raise MissingDependency("qdrant-edge-py is not installed; fix: pip install qdrant-edge-py") from None
        self._qe = qe
        self.root = Path(root)
        self._shards: dict[str, object] = {}

    def _metric(self, metric: str):
        return {"cosine": self._qe.Distance.Cosine, "euclid": self._qe.Distance.Euclid}[metric]

    def _shard(self, name: str):
        if name not in self._shards:
            path = self.root / name
            if not self.has_collection(name):
                raise GmvError(f"vector collection '{name}' missing under {self.root}; "
                               "fix: restore the store folder from a backup, or run `gmv repair`")
            # Opening maps the shard's files; on tmpfs that allocates its vector chunks in full
            # (see gmv_store/diskspace.py): without room, a page fault kills the process (SIGBUS).
            diskspace.require_room_to_open(path, name)
            self._shards[name] = self._qe.EdgeShard.load(str(path))
        return self._shards[name]

    def has_collection(self, name):
        path = self.root / name
        return path.is_dir() and any(path.iterdir())

    def ensure_collection(self, name, spec):
        qe = self._qe
        path = self.root / name
        if self.has_collection(name):
            self._shard(name)
            have = {k: VectorSpec(v["size"], v["distance"]) for k, v in read_shard_spec(path).items()}
            if have:
                check_spec(name, spec, have)
            return
        cfg = qe.EdgeConfig(vectors={k: qe.EdgeVectorParams(size=v.dim, distance=self._metric(v.metric)) for k, v in spec.items()})
        self._shards[name] = qe.EdgeShard.create(str(path), cfg)
        (path / SPEC_FILE).write_text(json.dumps({k: {"size": v.dim, "distance": v.metric} for k, v in spec.items()}))

    def upsert(self, name, ids, vectors, payloads):
        """The engine takes only `Point` objects (qdrant-edge-py 0.9 has no batch or array
        form), and converting their contents dominates an upsert. Two measured savings: each
        vector is a memoryview slice of one float32 buffer (the engine reads its floats from
        the buffer; no Python list of floats), and payload keys equal in every point of the
        batch (owner, time, shape, --meta) are set once by a `set_payload` on all ids, as
        payload conversion costs per key per point. 1,000 basic-profile points: 207 ms,
        against 332 ms as lists with full payloads (benchmarks/ingest_shards.py). A kill
        between the two operations leaves points that are journaled and have no ledger
        rows: recovery deletes them."""
        qe = self._qe
        rows = {k: _rows(v) for k, v in vectors.items()}
        shared, own = split_shared(payloads)
        points = [qe.Point(pid, {k: r[i] for k, r in rows.items()}, own[i]) for i, pid in enumerate(ids)]
        # Durable once update() returns: the shard's WAL is on (flushing per batch costs
        # a segment write that grows with the collection). Its files grow through memory
        # maps, where a full disk is SIGBUS, not an error: check the room first.
        diskspace.require_free(self.root, diskspace.vectors_need(vectors, payloads),
                               f"writing {len(points):,} points to '{name}'")
        shard = self._shard(name)
        shard.update(qe.UpdateOperation.upsert_points(points))
        if shared and points:
            shard.update(qe.UpdateOperation.set_payload(list(ids), shared))

    def delete(self, name, ids):
        if len(ids):
            diskspace.require_free(self.root, diskspace.SLACK, f"deleting {len(ids):,} points from '{name}'")
            self._shard(name).update(self._qe.UpdateOperation.delete_points(list(ids)))

    def ids(self, name):
        qe = self._qe
        out: set[int] = set()
        offset = None
        while True:
            pts, offset = self._shard(name).scroll(
                qe.ScrollRequest(offset=offset, limit=10_000, with_payload=False, with_vector=False)
            )
            out.update(int(p.id) for p in pts)
            if offset is None:
                return out

    def scroll(self, name, batch=10_000):
        qe = self._qe
        offset = None
        while True:
            pts, offset = self._shard(name).scroll(
                qe.ScrollRequest(offset=offset, limit=batch, with_payload=True, with_vector=False))
            if pts:
                yield [(int(p.id), dict(p.payload or {})) for p in pts]
            if offset is None:
                return

    def count(self, name):
        return self._shard(name).count(self._qe.CountRequest(exact=True))

    def _filter(self, q: Query):
        qe = self._qe
        must = [qe.HasIdCondition(set(q.only_ids))] if q.only_ids is not None else None
        must_not = [qe.HasIdCondition(set(q.exclude_ids))] if q.exclude_ids else None
        return qe.Filter(must=must, must_not=must_not) if (must or must_not) else None

    def query(self, name, queries):
        qe = self._qe
        reqs = [qe.QueryRequest(limit=q.limit, query=qe.Query.Nearest(np.asarray(q.vectors[q.using], np.float32).tolist(),
                                                                       using=q.using),
                                filter=f, score_threshold=q.score_threshold, with_payload=False, with_vector=False)
                for q, f in zip(queries, shared_filters(queries, self._filter))]
        if not reqs:
            return []
        res = self._shard(name).query_batch(qe.QueryBatchRequest(reqs))
        return [[(int(p.id), float(p.score)) for p in hits] for hits in res]

    def vectors(self, name, ids, using):
        recs = self._shard(name).retrieve(list(ids), with_payload=False, with_vector=[using])
        by_id = {int(r.id): r.vector[using] for r in recs}
        return np.asarray([by_id[i] for i in ids], dtype=np.float32)

    def close(self):
        for shard in self._shards.values():
            shard.flush()
            shard.close()
        self._shards.clear()


def _rows(v) -> list[memoryview]:
    """One float32 memoryview per row: the engine reads a vector from it item by item,
    as from a list, without a Python float object per element kept alive."""
    a = np.ascontiguousarray(v, dtype=np.float32)
    d = a.shape[1] if a.ndim == 2 else 0
    flat = memoryview(a.reshape(-1))
    return [flat[i * d:(i + 1) * d] for i in range(len(a))]


def _same(a, b) -> bool:
    """Equal as JSON values: 1, 1.0 and True are three different payload values."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def split_shared(payloads) -> tuple[dict, list[dict]]:
    """(keys with the same value in every payload, each payload without them). A None stays
    in each point: `set_payload` drops top-level nulls (measured), a point keeps them."""
    if len(payloads) < 2:
        return {}, list(payloads)
    first = payloads[0]
    shared = {k: v for k, v in first.items()
              if v is not None and all(k in p and _same(p[k], v) for p in payloads[1:])}
    if not shared:
        return {}, list(payloads)
    return shared, [{k: v for k, v in p.items() if k not in shared} for p in payloads]


def read_shard_spec(path: Path) -> dict:
    f = path / SPEC_FILE
    return json.loads(f.read_text()) if f.exists() else {}
