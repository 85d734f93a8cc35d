"""The embedded engine: Qdrant's own engine in-process (qdrant-edge-py), one shard folder
per collection inside the store. WAL, payload, exact or HNSW search; one writer per shard."""
from __future__ import annotations

import json
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import diskspace
from ..errors import GmvError, MissingDependency, StoreDamaged
from .base import (
    Hit,
    PreparedUpsert,
    Query,
    VectorSpec,
    VectorStore,
    as_list,
    check_spec,
    scroll_pages,
    shared_filters,
    threshold_kb_for,
)

if TYPE_CHECKING:
    from ..config import IndexConfig

SPEC_FILE = "gmv-vectors.json"    # the vector sizes/metrics a shard was created with
STATE_FILE = "gmv-index-state.json"  # points / indexed vectors / segments at the last close, for readers
GRAPHLESS_FULL_SCAN_KB = 1 << 30    # a vector without a graph: every search scans it
OVERSAMPLING = 3.0  # int8 candidates rescored per hit kept: recall 0.99 at 1M (docs: scale-facts)


class EdgeVectorStore(VectorStore):
    engine = "edge"

    def __init__(self, root: Path) -> None:
        try:
            import qdrant_edge as qe
        except ImportError:  # pragma: no cover - a core dependency
            raise MissingDependency("qdrant-edge-py is not installed; fix: pip install qdrant-edge-py") from None
        self._qe = qe
        self.root = Path(root)
        self._shards: dict[str, Any] = {}

    def _metric(self, metric: str) -> Any:  # qdrant_edge's Distance (the engine ships no types)
        return {"cosine": self._qe.Distance.Cosine, "euclid": self._qe.Distance.Euclid, "dot": self._qe.Distance.Dot}[metric]

    def _shard(self, name: str) -> Any:  # an open qdrant_edge.EdgeShard
        if name not in self._shards:
            path = self.root / name
            if not self.has_collection(name):
                raise GmvError(f"vector collection '{name}' missing under {self.root}; "
                               "fix: restore the store folder from a backup, or run `gmv repair`")
            # Opening maps the shard's files; on tmpfs that allocates its vector chunks in full
            # (see gmv_store/diskspace.py): without room, a page fault kills the process (SIGBUS).
            diskspace.require_room_to_open(path, name)
            try:
                self._shards[name] = self._qe.EdgeShard.load(str(path))
            except Exception as e:  # noqa: BLE001 - the engine's one error type: its files are damaged
                raise _damaged(name, self.root, "cannot be opened", e) from None
        return self._shards[name]

    def release(self, name: str) -> None:
        """Close one collection's shard if open (before `gmv repair` moves its damaged folder
        aside); the engine's errors in closing damaged files are what repair expects."""
        shard = self._shards.pop(name, None)
        if shard is not None:
            try:
                shard.close()
            except Exception:  # noqa: BLE001 - its files are being set aside as damaged
                pass

    def has_collection(self, name: str) -> bool:
        path = self.root / name
        return path.is_dir() and any(path.iterdir())

    def ensure_collection(self, name: str, spec: dict[str, VectorSpec], index: IndexConfig | None = None) -> None:
        path = self.root / name
        if self.has_collection(name):
            self._shard(name)
            have = {k: VectorSpec(v["size"], v["distance"]) for k, v in read_shard_spec(path).items()}
            if have:
                check_spec(name, spec, have)
            return
        self._shards[name] = self._qe.EdgeShard.create(str(path), self._config(spec, index))
        (path / SPEC_FILE).write_text(json.dumps({k: {"size": v.dim, "distance": v.metric} for k, v in spec.items()}))

    def _config(self, spec: dict[str, VectorSpec], index: IndexConfig | None) -> Any:
        """The shard's configuration: without `index` (or mode exact) no segment is ever indexed;
        otherwise the recall vector gets an HNSW graph (int8-quantized if asked) once a
        segment passes the threshold, and every other vector none."""
        qe = self._qe
        graphless = qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=GRAPHLESS_FULL_SCAN_KB)
        # on-disk originals: memory-mapped without pre-warming (Qdrant's Cold tier), so memory
        # holds what searches touch, not the collection; the recall originals only when an
        # int8 copy in RAM does the searching
        cold = qe.Memory.Cold if index is not None and index.on_disk_vectors else None
        if index is None or index.mode == "exact":
            params: dict[str, Any] = {k: qe.EdgeVectorParams(size=v.dim, distance=self._metric(v.metric),
                                                          memory=None if k == "recall" else cold) for k, v in spec.items()}
            return qe.EdgeConfig(vectors=params)
        params = {}
        for k, v in spec.items():
            if k == "recall":
                quant = None
                if index.quantization == "int8":
                    quant = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True)
                params[k] = qe.EdgeVectorParams(size=v.dim, distance=self._metric(v.metric), quantization_config=quant,
                                                memory=cold if quant is not None else None)
            else:
                params[k] = qe.EdgeVectorParams(size=v.dim, distance=self._metric(v.metric), hnsw_config=graphless,
                                                memory=cold)
        points = index.auto_points if index.mode == "auto" else 1
        threshold_kb = threshold_kb_for(points, spec)
        # full_scan_threshold (KB): below it a filtered search scans instead of walking the
        # graph; the same size as the indexing threshold keeps small segments exact.
        return qe.EdgeConfig(vectors=params,
                             hnsw_config=qe.HnswIndexConfig(m=index.hnsw_m, ef_construct=index.hnsw_ef_construct,
                                                            full_scan_threshold=threshold_kb),
                             optimizers=qe.EdgeOptimizersConfig(indexing_threshold=threshold_kb))

    def reconfigure(self, name: str, spec: dict[str, VectorSpec], index: IndexConfig) -> None:
        # loading with a config checks it against the shard and persists it; the optimizer
        # then rebuilds every segment whose index or quantization no longer matches
        if name in self._shards:
            self._shards.pop(name).close()
        path = self.root / name
        diskspace.require_room_to_open(path, name)
        self._shards[name] = self._qe.EdgeShard.load(str(path), self._config(spec, index))

    def build_index(self, name: str) -> bool:
        changed = self._shard(name).optimize()
        self._write_state(name)
        return bool(changed)

    def index_state(self, name: str) -> dict[str, Any]:
        info = self._shard(name).info()
        # the engine counts indexed vectors over every named vector (the graphless re-rank
        # vector of an indexed segment too): per point, that is the count over the names
        n_names = max(1, len(read_shard_spec(self.root / name)))
        return {"points": info.points_count, "indexed_points": info.indexed_vectors_count // n_names,
                "segments": info.segments_count}

    def _write_state(self, name: str) -> None:
        path = self.root / name / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.index_state(name)))
        tmp.replace(path)

    def upsert(self, name: str, ids: Sequence[int], vectors: dict[str, np.ndarray],
               payloads: Sequence[dict[str, Any]]) -> None:
        """Prepare and write, after checking the room: the shard's files grow through memory
        maps, where a full disk is SIGBUS, not an error (diskspace.py). Journaled writes go
        through `Store.adding`, which checks the room once for the ledger and the vectors and
        calls `write_prepared`."""
        up = self.prepare_upsert(name, ids, vectors, payloads)
        diskspace.require_free(self.root, diskspace.upsert_need(up), f"writing {len(up.ids):,} points to '{name}'")
        self.write_prepared(up)

    def prepare_upsert(self, name: str, ids: Sequence[int], vectors: dict[str, np.ndarray],
                       payloads: Sequence[dict[str, Any]], payload_bytes: int | None = None) -> PreparedUpsert:
        """The engine takes only `Point` objects (qdrant-edge-py 0.9 has no batch or array
        form), and making them dominates an upsert (~60 µs a 768-d vector, ~20 µs a payload
        key; the GIL is held throughout, while `update` releases it). Two measured savings:
        each vector is a float32 `array.array` (`_rows`; no Python float per element), and
        payload keys equal in every point of the batch (owner, time, shape, --meta) are set
        once by a `set_payload` on all ids (benchmarks/ingest_shards.py times the forms side
        by side). Touches no shard: ingest runs it on its preparing thread."""
        qe = self._qe
        rows = {k: _rows(v) for k, v in vectors.items()}
        shared, own = split_shared(payloads)
        ids = list(ids)
        points = [qe.Point(pid, {k: r[i] for k, r in rows.items()}, own[i]) for i, pid in enumerate(ids)]
        return PreparedUpsert(name, ids, vectors, payloads, payload_bytes, (points, shared))

    def write_prepared(self, up: PreparedUpsert) -> None:
        """Durable once update() returns: the shard's WAL is on (flushing per batch costs a
        segment write that grows with the collection). A kill between the two operations
        leaves points that are journaled and have no ledger rows: recovery deletes them."""
        qe = self._qe
        points, shared = up.engine_form
        shard = self._shard(up.name)
        shard.update(qe.UpdateOperation.upsert_points(points))
        if shared and points:
            shard.update(qe.UpdateOperation.set_payload(list(up.ids), shared))

    def set_payloads(self, name: str, ids: Sequence[int], payloads: Sequence[dict[str, Any]]) -> None:
        shard, op = self._shard(name), self._qe.UpdateOperation.set_payload
        for pid, p in zip(ids, payloads):
            shard.update(op([pid], p))

    def delete(self, name: str, ids: Sequence[int]) -> None:
        if len(ids):
            diskspace.require_free(self.root, diskspace.SLACK, f"deleting {len(ids):,} points from '{name}'")
            self._shard(name).update(self._qe.UpdateOperation.delete_points(list(ids)))

    def ids(self, name: str) -> set[int]:
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

    def scroll(self, name: str, batch: int = 10_000) -> Iterator[list[tuple[int, dict[str, Any]]]]:
        qe = self._qe
        yield from scroll_pages(lambda offset: self._shard(name).scroll(
            qe.ScrollRequest(offset=offset, limit=batch, with_payload=True, with_vector=False)))

    def count(self, name: str, payload_from: tuple[str, int] | None = None) -> int:
        f = self._filter(Query({}, "", 0, payload_from=payload_from)) if payload_from else None
        n: int = self._shard(name).count(self._qe.CountRequest(exact=True, filter=f))
        return n

    def ensure_payload_index(self, name: str, field: str) -> None:
        qe = self._qe
        shard = self._shard(name)
        if field not in (shard.info().payload_schema or {}):
            shard.update(qe.UpdateOperation.create_field_index(
                field, qe.IntegerIndexParams(lookup=False, range=True, enable_hnsw=False)))

    def _filter(self, q: Query) -> Any:  # a qdrant_edge.Filter or None
        qe = self._qe
        must = [qe.HasIdCondition(set(q.only_ids))] if q.only_ids is not None else []
        if q.payload_from is not None:
            must.append(qe.FieldCondition(key=q.payload_from[0], range=qe.RangeFloat(gte=float(q.payload_from[1]))))
        must_not = [qe.HasIdCondition(set(q.exclude_ids))] if q.exclude_ids else None
        return qe.Filter(must=must or None, must_not=must_not) if (must or must_not) else None

    def query(self, name: str, queries: Sequence[Query]) -> list[list[Hit]]:
        return [[(p.id, p.score) for p in hits] for hits in self._query(name, queries)]  # already int and float

    def query_arrays(self, name: str, queries: Sequence[Query]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        res = self._query(name, queries)
        count = np.fromiter((len(h) for h in res), np.int64, len(res))
        total = int(count.sum())
        return (np.fromiter((p.id for h in res for p in h), np.uint64, total),
                np.fromiter((p.score for h in res for p in h), np.float64, total), count)

    def _query(self, name: str, queries: Sequence[Query]) -> list[Any]:  # the engine's ScoredPoint lists
        qe = self._qe
        params: dict[tuple[bool, int | None], Any] = {}  # one SearchParams per kind in a batch, not one per query
        reqs = [qe.QueryRequest(limit=q.limit, query=qe.Query.Nearest(as_list(q.vectors[q.using]), using=q.using),
                                filter=f, score_threshold=q.score_threshold,
                                params=params.get((q.exact, q.ef)) or params.setdefault((q.exact, q.ef), self._params(q)),
                                with_payload=False, with_vector=False)
                for q, f in zip(queries, shared_filters(queries, self._filter))]
        if not reqs:
            return []
        try:
            res: list[Any] = self._shard(name).query_batch(qe.QueryBatchRequest(reqs))
        except Exception as e:  # noqa: BLE001 - the engine raises one type for everything
            raise _damage(e, name, self.root) from None
        return res

    def _params(self, q: Query) -> Any:  # a qdrant_edge.SearchParams
        qe = self._qe
        if q.exact:
            return qe.SearchParams(exact=True)
        # Rescoring makes every returned score the exact float32 one (quantized or not), so a
        # score never depends on the path that found the point.
        return qe.SearchParams(hnsw_ef=q.ef, quantization=qe.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING))

    def vectors(self, name: str, ids: Sequence[int], using: str) -> np.ndarray:
        return np.asarray(self.vector_lists(name, ids, using), dtype=np.float32)

    def vector_lists(self, name: str, ids: Sequence[int], using: str) -> list[list[float]]:
        try:
            recs = self._shard(name).retrieve(list(ids), with_payload=False, with_vector=[using])
        except Exception as e:  # noqa: BLE001 - the engine raises one type for everything
            raise _damage(e, name, self.root) from None
        by_id = {int(r.id): r.vector[using] for r in recs}
        return [by_id[i] for i in ids]

    def close(self) -> None:
        for name, shard in self._shards.items():
            shard.flush()
            try:
                self._write_state(name)
            except OSError:  # only a hint for readers; never fail a close over it
                pass
            shard.close()
        self._shards.clear()


def _damaged(name: str, root: Path, what: str, e: Exception) -> StoreDamaged:
    return StoreDamaged(
        f"vector collection '{name}' {what}: its files are damaged ({str(e).splitlines()[0][:90]}...); fix: run "
        f"`gmv repair --store {root.parent}` (keeps them aside, re-embeds the images from their sources)")


def _damage(e: Exception, name: str, root: Path) -> Exception:
    """The engine's error as StoreDamaged when it says a file cannot be read; else as it is."""
    text = str(e)
    if any(w in text for w in ("not readable", "Failed to read", "deserialize", "No such file", "corrupt", "out of bounds")):
        return _damaged(name, root, "cannot be read", e)
    return e


def _rows(v: np.ndarray) -> list[array[float]]:
    """One float32 `array.array` per row: the engine reads a vector from it without a Python
    float object per element (an upsert of 1,000 basic-profile points: 118 ms, against 158 ms
    with memoryview slices and 197 ms with lists; benchmarks/ingest_shards.py)."""
    a = np.ascontiguousarray(v, dtype=np.float32)
    width = 4 * (a.shape[1] if a.ndim == 2 else 0)
    raw = a.reshape(-1).data.cast("B")  # the array's own memoryview
    out: list[array[float]] = []
    for i in range(len(a)):
        row = array("f")
        row.frombytes(raw[i * width:(i + 1) * width])
        out.append(row)
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values: 1, 1.0 and True are three different payload values."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    equal: bool = a == b
    return equal


def split_shared(payloads: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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


def read_index_state(path: Path) -> dict[str, Any] | None:
    """What the last writer recorded of a shard (readers cannot open a shard a writer holds)."""
    f = path / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(f.read_text())
        return state
    except (OSError, ValueError):
        return None


def read_shard_spec(path: Path) -> dict[str, Any]:
    f = path / SPEC_FILE
    spec: dict[str, Any] = json.loads(f.read_text()) if f.exists() else {}
    return spec
