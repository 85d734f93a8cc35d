"""qdrant-client engines: a Qdrant server or cluster at a URL, or qdrant-client's local mode
(numpy brute force, same client API; kept so tests run the server's code path).

Server errors become one line naming the URL, what failed and the fix. Transient ones
(refused or reset connections, timeouts, 502/503/504) are retried with backoff first, so a
server restarting mid-command costs a pause, not the command. The API key is read from
GMV_QDRANT_API_KEY here and handed to the client only: never stored, never printed.
"""
from __future__ import annotations

import os
import ssl
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from ..errors import MissingDependency, StoreLocked, VectorStoreUnavailable
from .base import (
    Hit,
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
    from qdrant_client import models

    from ..config import IndexConfig

T = TypeVar("T")

API_KEY_ENV = "GMV_QDRANT_API_KEY"
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)  # seconds between attempts for transient failures
TRANSIENT_STATUS = (502, 503, 504)
UPLOAD_PART, UPLOAD_PARALLEL = 128, 4  # points per request, requests in flight (server mode)
RETRIES_ENV = "GMV_QDRANT_RETRIES"  # how many of the retries above to make (default: all)


def describe_failure(url: str, e: BaseException) -> tuple[str, bool]:
    """(one-line reason with its fix, transient?) for an exception from qdrant-client."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(e, UnexpectedResponse):
        code = e.status_code
        if code in (401, 403):
            return (f"Qdrant server {url} refused the request (HTTP {code} {e.reason_phrase}); "
                    f"fix: check {API_KEY_ENV}"), False
        text = (e.content or b"")[:160].decode("utf-8", "replace").replace("\n", " ")
        return (f"Qdrant server {url} answered HTTP {code} {e.reason_phrase} ({text}); "
                "fix: check the server's log and version (docker-compose.yml pins the tested one)"), code in TRANSIENT_STATUS
    src = e.source if isinstance(e, ResponseHandlingException) else e
    name = type(src).__name__
    text = str(src) or name
    chain = [src, getattr(src, "__cause__", None), getattr(src, "__context__", None)]
    if any(isinstance(x, ssl.SSLError) for x in chain) or "SSL" in text or "TLS" in text:
        return (f"Qdrant server {url}: TLS handshake failed ({text[:120]}); "
                "fix: check http:// versus https:// in the URL and the server's certificate"), False
    if "Timeout" in name or "timed out" in text.lower():
        return (f"Qdrant server {url}: no answer in time ({name}); "
                "fix: check the server is up and reachable, or raise its resources"), True
    if "refused" in text.lower():
        return (f"Qdrant server {url}: connection refused; "
                "fix: start the server (docker compose up -d) or correct --qdrant-url / GMV_QDRANT_URL"), True
    if "Connect" in name or "Network" in name or "Remote" in name or "reset" in text.lower():
        return (f"Qdrant server {url}: cannot connect ({text[:120]}); "
                "fix: check the host name, port and network, or correct --qdrant-url / GMV_QDRANT_URL"), True
    return f"Qdrant server {url}: request failed ({name}: {text[:120]}); fix: check the server", False


class ClientVectorStore(VectorStore):
    """qdrant-client: local mode (path) or a server (url)."""

    def __init__(self, *, path: Path | None = None, url: str | None = None, prefix: str = "gmv", timeout: int = 30,
                 retry_delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        try:
            from qdrant_client import QdrantClient, models
        except ImportError:  # pragma: no cover - a core dependency
            raise MissingDependency("qdrant-client is not installed; fix: pip install qdrant-client") from None
        self.models = models
        self.prefix = prefix
        self.url = url
        retries = os.environ.get(RETRIES_ENV)
        self.retry_delays = retry_delays[: int(retries)] if retries and retries.isdigit() else retry_delays
        self._answered = False
        if url:
            self.engine = "server"
            self.client = QdrantClient(url=url, api_key=os.environ.get(API_KEY_ENV) or None, timeout=timeout,
                                       check_compatibility=False)
        else:
            self.engine = "local"
            warnings.filterwarnings("ignore", message="Local mode is not recommended")
            try:
                self.client = QdrantClient(path=str(path))
            except RuntimeError as e:
                raise StoreLocked(f"{path}: {e}") from None

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one client call. Once the server has answered, transient failures (it restarts,
        a connection drops) are retried with backoff; a server that never answered fails at
        once. Either way the end is one line naming the URL and the fix."""
        if self.engine != "server":
            return fn(*args, **kwargs)
        from qdrant_client.http.exceptions import ApiException

        delays = self.retry_delays if self._answered else ()
        for attempt in range(len(delays) + 1):
            try:
                out = fn(*args, **kwargs)
                self._answered = True
                return out
            except (ApiException, OSError) as e:
                reason, transient = describe_failure(self.url or "", e)  # a server always has its URL
                if not transient or attempt == len(delays):
                    if transient and attempt:
                        reason += f" (gave up after {attempt + 1} attempts)"
                    raise VectorStoreUnavailable(reason) from None
                time.sleep(delays[attempt])
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _c(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    def _metric(self, metric: str) -> models.Distance:
        return {"cosine": self.models.Distance.COSINE, "euclid": self.models.Distance.EUCLID,
                "dot": self.models.Distance.DOT}[metric]

    def has_collection(self, name: str) -> bool:
        return self._call(self.client.collection_exists, self._c(name))

    def ensure_collection(self, name: str, spec: dict[str, VectorSpec], index: IndexConfig | None = None) -> None:
        m = self.models
        c = self._c(name)
        if self.has_collection(name):
            info = self._call(self.client.get_collection, c)
            vecs = cast("dict[str, models.VectorParams]", info.config.params.vectors or {})  # named vectors, always
            inv = {m.Distance.COSINE: "cosine", m.Distance.EUCLID: "euclid", m.Distance.DOT: "dot"}
            have = {k: VectorSpec(v.size, inv.get(v.distance, str(v.distance))) for k, v in vecs.items()}
            check_spec(c, spec, have)
            return
        self._call(self.client.create_collection, c, **self._layout(spec, index))

    def _layout(self, spec: dict[str, VectorSpec], index: IndexConfig | None) -> dict[str, Any]:
        """create_collection arguments: the same index and quantization settings as the
        embedded engine, plus the cluster layout (shards, replicas, on-disk storage)."""
        m = self.models
        graphless = m.HnswConfigDiff(m=0)
        vectors: dict[str, models.VectorParams] = {}
        for k, v in spec.items():
            quant = None
            if k == "recall" and index is not None and index.quantization == "int8":
                quant = m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, quantile=0.99,
                                                                                always_ram=True))
            exact_only = k != "recall" or index is None or index.mode == "exact"
            vectors[k] = m.VectorParams(size=v.dim, distance=self._metric(v.metric),
                                        hnsw_config=graphless if exact_only else None, quantization_config=quant,
                                        on_disk=bool(index and index.on_disk_vectors) or None)
        out: dict[str, Any] = {"vectors_config": vectors}
        if index is not None:
            if index.mode != "exact":
                kb = threshold_kb_for(index.auto_points if index.mode == "auto" else 1, spec)
                out["hnsw_config"] = m.HnswConfigDiff(m=index.hnsw_m, ef_construct=index.hnsw_ef_construct,
                                                      full_scan_threshold=kb)
                out["optimizers_config"] = m.OptimizersConfigDiff(indexing_threshold=kb)
            out.update({k: getattr(index, k) for k in ("shard_number", "replication_factor", "write_consistency_factor")
                        if getattr(index, k) is not None})
            out["on_disk_payload"] = index.on_disk_payload
        return out

    def reconfigure(self, name: str, spec: dict[str, VectorSpec], index: IndexConfig) -> None:
        if self.engine != "server":
            return  # local mode searches by brute force whatever the settings
        layout = self._layout(spec, index)
        m = self.models
        vectors = {k: m.VectorParamsDiff(hnsw_config=v.hnsw_config, quantization_config=v.quantization_config,
                                         on_disk=v.on_disk) for k, v in layout["vectors_config"].items()}
        self._call(self.client.update_collection, self._c(name), vectors_config=vectors,
                   hnsw_config=layout.get("hnsw_config"), optimizers_config=layout.get("optimizers_config"))

    def build_index(self, name: str) -> bool:
        # a server indexes in the background by itself; nothing to start from here
        return False

    def index_state(self, name: str) -> dict[str, Any]:
        info = self._call(self.client.get_collection, self._c(name))
        n_names = max(1, len(cast("dict[str, models.VectorParams]", info.config.params.vectors or {})))
        return {"points": info.points_count or 0, "indexed_points": (info.indexed_vectors_count or 0) // n_names,
                "segments": info.segments_count or 0}

    def upsert(self, name: str, ids: Sequence[int], vectors: dict[str, np.ndarray],
               payloads: Sequence[dict[str, Any]]) -> None:
        """A server takes the batch in parallel parts (each retried on its own, as every call);
        the call returns once all are durable, so the journal order holds."""
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in vectors.items()}
        ids, payloads = list(ids), list(payloads)

        def part(lo: int, hi: int) -> None:
            batch = self.models.Batch(ids=ids[lo:hi], vectors={k: a[lo:hi].tolist() for k, a in arrays.items()},
                                      payloads=payloads[lo:hi])
            self._call(self.client.upsert, self._c(name), points=batch, wait=True)

        bounds = [(lo, min(lo + UPLOAD_PART, len(ids))) for lo in range(0, len(ids), UPLOAD_PART)]
        if self.engine != "server" or len(bounds) < 2:
            for lo, hi in bounds:
                part(lo, hi)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=UPLOAD_PARALLEL) as pool:
            for f in [pool.submit(part, lo, hi) for lo, hi in bounds]:
                f.result()  # the first failure (after its retries) is the command's error

    def set_payloads(self, name: str, ids: Sequence[int], payloads: Sequence[dict[str, Any]]) -> None:
        m = self.models
        ops = [m.SetPayloadOperation(set_payload=m.SetPayload(payload=p, points=[pid])) for pid, p in zip(ids, payloads)]
        for lo in range(0, len(ops), 1000):
            self._call(self.client.batch_update_points, self._c(name), update_operations=ops[lo:lo + 1000], wait=True)

    def delete(self, name: str, ids: Sequence[int]) -> None:
        if len(ids):
            self._call(self.client.delete, self._c(name), points_selector=self.models.PointIdsList(points=list(ids)),
                       wait=True)

    def ids(self, name: str) -> set[int]:
        out: set[int] = set()
        offset = None
        while True:
            pts, offset = self._call(self.client.scroll, self._c(name), limit=10_000, offset=offset,
                                     with_payload=False, with_vectors=False)
            out.update(int(p.id) for p in pts)
            if offset is None:
                return out

    def scroll(self, name: str, batch: int = 10_000) -> Iterator[list[tuple[int, dict[str, Any]]]]:
        yield from scroll_pages(lambda offset: self._call(self.client.scroll, self._c(name), limit=batch, offset=offset,
                                                          with_payload=True, with_vectors=False))

    def count(self, name: str, payload_from: tuple[str, int] | None = None) -> int:
        f = self._filter(Query({}, "", 0, payload_from=payload_from)) if payload_from else None
        return self._call(self.client.count, self._c(name), count_filter=f, exact=True).count

    def ensure_payload_index(self, name: str, field: str) -> None:
        m = self.models
        info = self._call(self.client.get_collection, self._c(name))
        if field not in (info.payload_schema or {}):
            self._call(self.client.create_payload_index, self._c(name), field_name=field,
                       field_schema=m.IntegerIndexParams(type=m.IntegerIndexType.INTEGER, lookup=False, range=True,
                                                         enable_hnsw=False), wait=True)

    def _filter(self, q: Query) -> models.Filter | None:
        m = self.models
        must: list[models.Condition] = [m.HasIdCondition(has_id=list(q.only_ids))] if q.only_ids is not None else []
        if q.payload_from is not None:
            must.append(m.FieldCondition(key=q.payload_from[0], range=m.Range(gte=q.payload_from[1])))
        must_not = [m.HasIdCondition(has_id=list(q.exclude_ids))] if q.exclude_ids else None
        return m.Filter(must=must or None, must_not=must_not) if (must or must_not) else None

    def query(self, name: str, queries: Sequence[Query]) -> list[list[Hit]]:
        m = self.models
        reqs = [m.QueryRequest(query=as_list(q.vectors[q.using]), using=q.using, limit=q.limit,
                               filter=f, score_threshold=q.score_threshold, params=self._params(q),
                               with_payload=False, with_vector=False)
                for q, f in zip(queries, shared_filters(queries, self._filter))]
        if not reqs:
            return []
        res = self._call(self.client.query_batch_points, self._c(name), requests=reqs)
        return [[(int(p.id), float(p.score)) for p in r.points] for r in res]

    def _params(self, q: Query) -> models.SearchParams | None:
        m = self.models
        if self.engine != "server":
            return None  # local mode is brute force whatever is asked, and says so on every search
        params: models.SearchParams
        if q.exact:
            params = m.SearchParams(exact=True)
        else:
            params = m.SearchParams(hnsw_ef=q.ef, quantization=m.QuantizationSearchParams(rescore=True, oversampling=3.0))
        return params

    def vectors(self, name: str, ids: Sequence[int], using: str) -> np.ndarray:
        recs = self._call(self.client.retrieve, self._c(name), ids=list(ids), with_payload=False, with_vectors=[using])
        by_id = {int(r.id): cast("dict[str, list[float]]", r.vector)[using] for r in recs}  # asked by name
        return np.asarray([by_id[i] for i in ids], dtype=np.float32)

    def vector_lists(self, name: str, ids: Sequence[int], using: str) -> list[list[float]]:
        # the same float32 values `vectors` gives (local mode and JSON hand over float64)
        out: list[list[float]] = self.vectors(name, ids, using).tolist()
        return out

    def close(self) -> None:
        self.client.close()
