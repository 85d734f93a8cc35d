"""One facade over the Qdrant engines gmv-store can use.

- `edge`   : Qdrant's own engine in-process (qdrant-edge-py), one shard folder per
             collection inside the store. The embedded default: WAL, exact or HNSW search.
- `local`  : qdrant-client's local mode (numpy brute force, same client API as a server).
             Slow beyond ~20k points; kept because it runs the exact client code path that
             server mode uses, so tests can check both engines agree.
- `server` : a Qdrant server or cluster at a URL (docker-compose.yml), API key from
             GMV_QDRANT_API_KEY only.

The pipeline sees only this interface: named vectors, 64-bit integer ids, payload dicts, and
a two-stage query (prefetch N on one named vector, re-score to k on another).
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import diskspace
from .errors import GmvError, MissingDependency, StoreMismatch

ENGINES = ("edge", "local", "server")


@dataclass(frozen=True)
class VectorSpec:
    dim: int
    metric: str  # "cosine" | "euclid"


@dataclass(frozen=True)
class Query:
    """Find the `limit` nearest points to `vectors[using]`; if `prefetch_using` is set,
    first keep `prefetch_limit` candidates by `vectors[prefetch_using]` and re-score those."""

    vectors: dict[str, np.ndarray]
    using: str
    limit: int
    prefetch_using: str | None = None
    prefetch_limit: int = 0
    exclude_ids: tuple[int, ...] = ()
    only_ids: tuple[int, ...] | None = None
    score_threshold: float | None = None  # cosine: minimum similarity; euclid: maximum distance


Hit = tuple[int, float]  # (point id, Qdrant score: cosine similarity or euclidean distance)


def point_id(key: str) -> int:
    """A Qdrant point id (unsigned 64-bit) from the first 16 hex digits of a digest.

    Integer ids, not UUIDs: the contributor id is the same 16 hex digits, and ints cross
    from Qdrant to Python without per-hit string conversions."""
    try:
        return int(key[:16], 16)
    except ValueError:
        import hashlib

        return int(hashlib.sha256(key.encode()).hexdigest()[:16], 16)


class VectorStore:
    """What the pipeline needs from Qdrant. Every write waits until it is durable."""

    engine: str

    def ensure_collection(self, name: str, spec: dict[str, VectorSpec]) -> None: ...
    def upsert(self, name: str, ids: Sequence[str], vectors: dict[str, np.ndarray], payloads: Sequence[dict]) -> None: ...
    def delete(self, name: str, ids: Sequence[str]) -> None: ...
    def ids(self, name: str) -> set[str]: ...
    def count(self, name: str) -> int: ...
    def query(self, name: str, queries: Sequence[Query]) -> list[list[Hit]]: ...
    def vectors(self, name: str, ids: Sequence[str], using: str) -> np.ndarray: ...
    def payloads(self, name: str, ids: Sequence[str]) -> dict[str, dict]: ...
    def close(self) -> None: ...


def _check_spec(name: str, want: dict[str, VectorSpec], have: dict[str, VectorSpec]) -> None:
    if want != have:
        raise StoreMismatch(
            f"collection '{name}' holds vectors {_fmt(have)} but this store's backends make {_fmt(want)}; "
            "fix: use a new store (or another --collection-prefix) for other backends"
        )


def _fmt(spec: dict[str, VectorSpec]) -> str:
    return "{" + ", ".join(f"{k}: {v.dim}-d {v.metric}" for k, v in sorted(spec.items())) + "}"


# --------------------------------------------------------------------------- edge


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
            if not path.exists():
                raise GmvError(f"vector collection '{name}' missing under {self.root}; fix: run `gmv init`")
            # Opening maps the shard's files; on tmpfs that allocates its vector chunks in full
            # (see gmv_store/diskspace.py): without room, a page fault kills the process (SIGBUS).
            diskspace.require_room_to_open(path, name)
            self._shards[name] = self._qe.EdgeShard.load(str(path))
        return self._shards[name]

    def ensure_collection(self, name, spec):
        qe = self._qe
        path = self.root / name
        if path.exists() and any(path.iterdir()):
            shard = self._shard(name)
            have = {}
            for vname, params in shard_config_vectors(path).items():
                have[vname] = VectorSpec(params["size"], params["distance"])
            if have:
                _check_spec(name, spec, have)
            return
        cfg = qe.EdgeConfig(vectors={k: qe.EdgeVectorParams(size=v.dim, distance=self._metric(v.metric)) for k, v in spec.items()})
        self._shards[name] = qe.EdgeShard.create(str(path), cfg)
        write_shard_spec(path, spec)

    def upsert(self, name, ids, vectors, payloads):
        qe = self._qe
        lists = {k: np.asarray(v, dtype=np.float32).tolist() for k, v in vectors.items()}
        points = [
            qe.Point(id=pid, vector={k: lists[k][i] for k in lists}, payload=payloads[i])
            for i, pid in enumerate(ids)
        ]
        # Durable once update() returns: the shard's WAL is on (flushing per batch costs
        # a segment write that grows with the collection). Its files grow through memory
        # maps, where a full disk is SIGBUS, not an error: check the room first.
        diskspace.require_free(self.root, diskspace.vectors_need(vectors, payloads), f"writing {len(points):,} points to '{name}'")
        self._shard(name).update(qe.UpdateOperation.upsert_points(points))

    def delete(self, name, ids):
        if not ids:
            return
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

    def count(self, name):
        return self._shard(name).count(self._qe.CountRequest(exact=True))

    def _filter(self, q: Query):
        qe = self._qe
        must, must_not = [], []
        if q.exclude_ids:
            must_not.append(qe.HasIdCondition(set(q.exclude_ids)))
        if q.only_ids is not None:
            must.append(qe.HasIdCondition(set(q.only_ids)))
        if not must and not must_not:
            return None
        return qe.Filter(must=must or None, must_not=must_not or None)

    def query(self, name, queries):
        qe = self._qe
        reqs = []
        for q in queries:
            flt = self._filter(q)
            main = qe.Query.Nearest(np.asarray(q.vectors[q.using], np.float32).tolist(), using=q.using)
            prefetches = None
            if q.prefetch_using:
                pv = np.asarray(q.vectors[q.prefetch_using], np.float32).tolist()
                prefetches = [qe.Prefetch(limit=q.prefetch_limit, query=qe.Query.Nearest(pv, using=q.prefetch_using), filter=flt)]
            reqs.append(qe.QueryRequest(limit=q.limit, query=main, prefetches=prefetches, filter=flt if not prefetches else None,
                                        score_threshold=q.score_threshold, with_payload=False, with_vector=False))
        if not reqs:
            return []
        res = self._shard(name).query_batch(qe.QueryBatchRequest(reqs))
        return [[(int(p.id), float(p.score)) for p in hits] for hits in res]

    def vectors(self, name, ids, using):
        recs = self._shard(name).retrieve(list(ids), with_payload=False, with_vector=[using])
        by_id = {int(r.id): r.vector[using] for r in recs}
        return np.asarray([by_id[i] for i in ids], dtype=np.float32)

    def payloads(self, name, ids):
        recs = self._shard(name).retrieve(list(ids), with_payload=True, with_vector=False)
        return {int(r.id): dict(r.payload or {}) for r in recs}

    def close(self):
        for shard in self._shards.values():
            shard.flush()
            shard.close()
        self._shards.clear()


def write_shard_spec(path: Path, spec: dict[str, VectorSpec]) -> None:
    import json

    (path / "gmv-vectors.json").write_text(json.dumps({k: {"size": v.dim, "distance": v.metric} for k, v in spec.items()}))


def shard_config_vectors(path: Path) -> dict:
    import json

    f = path / "gmv-vectors.json"
    return json.loads(f.read_text()) if f.exists() else {}


# --------------------------------------------------------------------------- qdrant-client


class ClientVectorStore(VectorStore):
    """qdrant-client: local mode (path) or a server (url)."""

    def __init__(self, *, path: Path | None = None, url: str | None = None, prefix: str = "gmv", timeout: int = 30):
        try:
            from qdrant_client import QdrantClient, models
        except ImportError:  # pragma: no cover - a core dependency
            raise MissingDependency("qdrant-client is not installed; fix: pip install qdrant-client") from None
        self.models = models
        self.prefix = prefix
        if url:
            self.engine = "server"
            # The key is read here and handed to the client only; it is never stored or printed.
            self.client = QdrantClient(url=url, api_key=os.environ.get("GMV_QDRANT_API_KEY") or None, timeout=timeout)
        else:
            import warnings

            self.engine = "local"
            warnings.filterwarnings("ignore", message="Local mode is not recommended")
            try:
                self.client = QdrantClient(path=str(path))
            except RuntimeError as e:
                from .errors import StoreLocked

                raise StoreLocked(f"{path}: {e}") from None

    def _c(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    def _metric(self, metric):
        return {"cosine": self.models.Distance.COSINE, "euclid": self.models.Distance.EUCLID}[metric]

    def ensure_collection(self, name, spec):
        m = self.models
        c = self._c(name)
        if self.client.collection_exists(c):
            info = self.client.get_collection(c)
            vecs = info.config.params.vectors or {}
            inv = {m.Distance.COSINE: "cosine", m.Distance.EUCLID: "euclid"}
            have = {k: VectorSpec(v.size, inv.get(v.distance, str(v.distance))) for k, v in vecs.items()}
            _check_spec(c, spec, have)
            return
        self.client.create_collection(
            c, vectors_config={k: m.VectorParams(size=v.dim, distance=self._metric(v.metric)) for k, v in spec.items()}
        )

    def upsert(self, name, ids, vectors, payloads):
        m = self.models
        lists = {k: np.asarray(v, dtype=np.float32).tolist() for k, v in vectors.items()}
        self.client.upsert(self._c(name), points=m.Batch(ids=list(ids), vectors=lists, payloads=list(payloads)), wait=True)

    def delete(self, name, ids):
        if ids:
            self.client.delete(self._c(name), points_selector=self.models.PointIdsList(points=list(ids)), wait=True)

    def ids(self, name):
        out: set[int] = set()
        offset = None
        while True:
            pts, offset = self.client.scroll(self._c(name), limit=10_000, offset=offset, with_payload=False, with_vectors=False)
            out.update(int(p.id) for p in pts)
            if offset is None:
                return out

    def count(self, name):
        return self.client.count(self._c(name), exact=True).count

    def _filter(self, q):
        m = self.models
        must = [m.HasIdCondition(has_id=list(q.only_ids))] if q.only_ids is not None else None
        must_not = [m.HasIdCondition(has_id=list(q.exclude_ids))] if q.exclude_ids else None
        return m.Filter(must=must, must_not=must_not) if (must or must_not) else None

    def query(self, name, queries):
        m = self.models
        reqs = []
        for q in queries:
            flt = self._filter(q)
            prefetch = None
            if q.prefetch_using:
                prefetch = m.Prefetch(query=np.asarray(q.vectors[q.prefetch_using], np.float32).tolist(),
                                      using=q.prefetch_using, limit=q.prefetch_limit, filter=flt)
            reqs.append(m.QueryRequest(query=np.asarray(q.vectors[q.using], np.float32).tolist(), using=q.using,
                                       limit=q.limit, prefetch=prefetch, filter=None if prefetch else flt,
                                       score_threshold=q.score_threshold, with_payload=False, with_vector=False))
        if not reqs:
            return []
        res = self.client.query_batch_points(self._c(name), requests=reqs)
        return [[(int(p.id), float(p.score)) for p in r.points] for r in res]

    def vectors(self, name, ids, using):
        recs = self.client.retrieve(self._c(name), ids=list(ids), with_payload=False, with_vectors=[using])
        by_id = {int(r.id): r.vector[using] for r in recs}
        return np.asarray([by_id[i] for i in ids], dtype=np.float32)

    def payloads(self, name, ids):
        recs = self.client.retrieve(self._c(name), ids=list(ids), with_payload=True, with_vectors=False)
        return {int(r.id): dict(r.payload or {}) for r in recs}

    def close(self):
        self.client.close()


def open_vector_store(engine: str, store_dir: Path, url: str | None = None, prefix: str = "gmv") -> VectorStore:
    if engine == "edge":
        return EdgeVectorStore(store_dir / "qdrant-edge")
    if engine == "local":
        return ClientVectorStore(path=store_dir / "qdrant-local", prefix=prefix)
    if engine == "server":
        return ClientVectorStore(url=url, prefix=prefix)
    raise GmvError(f"unknown vector engine {engine!r}; choose one of {', '.join(ENGINES)}")


def iter_chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
