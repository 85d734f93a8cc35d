"""What the pipelines need from Qdrant, whichever engine holds the vectors.

Named vectors ("recall", "rerank"), unsigned 64-bit integer ids, payload dicts, and batched
nearest-neighbour queries that may be restricted to or exclude given ids. Every write
returns once it is durable.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..errors import StoreMismatch

if TYPE_CHECKING:
    from ..config import IndexConfig


@dataclass(frozen=True)
class VectorSpec:
    dim: int
    metric: str  # "cosine" | "euclid" | "dot"


@dataclass(frozen=True)
class Query:
    """The `limit` nearest points to `vectors[using]`, optionally only among `only_ids`, never
    `exclude_ids`, and no worse than `score_threshold`."""

    vectors: dict[str, np.ndarray | list[float]]
    using: str
    limit: int
    exclude_ids: tuple[int, ...] = ()
    only_ids: tuple[int, ...] | None = None
    score_threshold: float | None = None  # cosine: minimum similarity; euclid: maximum distance
    exact: bool = False                   # force exact search where an index exists
    ef: int | None = None                 # HNSW search breadth (None: the engine's default)
    # only points whose integer payload field is at least this (field, value): a few points
    # picked by a small indexed condition, where a filter on their ids is copied per query
    payload_from: tuple[str, int] | None = None


Hit = tuple[int, float]  # (point id, Qdrant score: cosine similarity or euclidean distance)


@dataclass
class PreparedUpsert:
    """A batch of points made ready for one engine (`VectorStore.prepare_upsert`), so that the
    costly conversion can run off the thread that writes (`write_prepared`). `payload_bytes`:
    the payloads' size as JSON where the caller knows it (diskspace estimates the write from
    it instead of serialising them again); `engine_form`: what the engine takes."""

    name: str
    ids: list[int]
    vectors: dict[str, np.ndarray]
    payloads: Sequence[dict[str, Any]]
    payload_bytes: int | None = None
    engine_form: Any = None

    def vector_bytes(self) -> int:
        return sum(int(np.asarray(v).size) * 4 for v in self.vectors.values())


class VectorStore(ABC):
    """The facade every engine implements: an engine that lacks a method cannot be made
    (TypeError naming it), rather than returning None from the missing call."""

    engine: str

    @abstractmethod
    def ensure_collection(self, name: str, spec: dict[str, VectorSpec], index: IndexConfig | None = None) -> None:
        """Create the collection (with an HNSW graph on "recall" as `index` says; None: exact
        search only) or check that the existing one holds vectors of `spec`."""
        ...
    @abstractmethod
    def has_collection(self, name: str) -> bool: ...
    @abstractmethod
    def upsert(self, name: str, ids: Sequence[int], vectors: dict[str, np.ndarray], payloads: Sequence[dict[str, Any]]) -> None:
        """Write the points (durable on return), after checking the disk has room for them."""
        ...
    def prepare_upsert(self, name: str, ids: Sequence[int], vectors: dict[str, np.ndarray],
                       payloads: Sequence[dict[str, Any]], payload_bytes: int | None = None) -> PreparedUpsert:
        """The points in the form this engine writes, made without touching the collection
        (safe on another thread than the writer's); an engine with nothing to convert keeps them as given."""
        return PreparedUpsert(name, list(ids), vectors, payloads, payload_bytes)

    def write_prepared(self, up: PreparedUpsert) -> None:
        """Write a prepared batch (durable on return). The caller has checked the disk's room
        (Store.adding, diskspace.check_write): this does not check it again."""
        self.upsert(up.name, up.ids, up.vectors, up.payloads)

    @abstractmethod
    def delete(self, name: str, ids: Sequence[int]) -> None: ...
    @abstractmethod
    def set_payloads(self, name: str, ids: Sequence[int], payloads: Sequence[dict[str, Any]]) -> None:
        """Set these keys of each point's payload (other keys kept): `gmv relocate`."""
        ...
    @abstractmethod
    def ids(self, name: str) -> set[int]: ...
    @abstractmethod
    def count(self, name: str, payload_from: tuple[str, int] | None = None) -> int:
        """Points in the collection (with `payload_from`: only those, as in `Query`)."""
        ...
    @abstractmethod
    def ensure_payload_index(self, name: str, field: str) -> None:
        """An index on an integer payload field, for range conditions only (no HNSW links
        of its own: it must not slow down building the recall graph)."""
        ...
    @abstractmethod
    def scroll(self, name: str, batch: int = 10_000) -> Iterator[list[tuple[int, dict[str, Any]]]]:
        """Every point's (id, payload), a batch at a time."""
        ...
    @abstractmethod
    def query(self, name: str, queries: Sequence[Query]) -> list[list[Hit]]: ...
    def query_arrays(self, name: str, queries: Sequence[Query]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`query`'s hits laid end to end, query after query: (ids uint64, scores float64,
        hits per query). An engine that can fill the arrays straight from its results
        skips a tuple per hit (a refresh takes ~40,000 hits at once)."""
        return flat_hits(self.query(name, queries))
    @abstractmethod
    def vectors(self, name: str, ids: Sequence[int], using: str) -> np.ndarray: ...
    @abstractmethod
    def vector_lists(self, name: str, ids: Sequence[int], using: str) -> list[list[float]]:
        """The stored vectors as the engine hands them over, for use as query vectors (a
        Query takes them as they are): no round trip through numpy."""
        ...
    @abstractmethod
    def reconfigure(self, name: str, spec: dict[str, VectorSpec], index: IndexConfig) -> None:
        """Apply other index settings to an existing collection; `build_index` then rebuilds
        the segments they change."""
        ...
    @abstractmethod
    def build_index(self, name: str) -> bool:
        """Bring the collection's index up to date now; True if any segment changed."""
        ...
    @abstractmethod
    def index_state(self, name: str) -> dict[str, Any]:
        """{"points", "indexed_points", "segments"} as the engine reports them."""
        ...
    @abstractmethod
    def close(self) -> None: ...


F = TypeVar("F")
T = TypeVar("T")


def shared_filters(queries: Sequence[Query], build: Callable[[Query], F]) -> list[F]:
    """build(q) for each query, built once per distinct (only_ids, exclude_ids, payload_from): the
    queries of a batch often share one long id list, and building its filter is not free."""
    built: dict[tuple[int, int, tuple[str, int] | None], F] = {}
    out = []
    for q in queries:
        key = (id(q.only_ids), id(q.exclude_ids), q.payload_from)
        if key not in built:
            built[key] = build(q)
        out.append(built[key])
    return out


def threshold_kb_for(points: int, spec: dict[str, VectorSpec]) -> int:
    """Qdrant's indexing threshold (KB) for a segment of `points` points: it measures a
    segment by all its float32 vectors, every named vector counted."""
    return max(1, points * sum(v.dim for v in spec.values()) * 4 // 1024)


def scroll_pages(fetch: Callable[[Any], tuple[Sequence[Any], Any]]) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """Every point as (id, payload), a page at a time: `fetch(offset)` returns a page of points
    and the next page's offset, None after the last page (both engines' scroll)."""
    offset = None
    while True:
        pts, offset = fetch(offset)
        if pts:
            yield [(int(p.id), dict(p.payload or {})) for p in pts]
        if offset is None:
            return


def flat_hits(hits: Sequence[Sequence[Hit]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hits laid end to end: (ids uint64, scores float64, hits per query)."""
    count = np.fromiter((len(h) for h in hits), np.int64, len(hits))
    total = int(count.sum())
    return (np.fromiter((p for h in hits for p, _ in h), np.uint64, total),
            np.fromiter((s for h in hits for _, s in h), np.float64, total), count)


def as_list(vector: np.ndarray | list[float]) -> list[float]:
    """A query vector as the engines take it: float32 values in a list (lists from
    `vector_lists` pass as they are)."""
    return vector if isinstance(vector, list) else np.asarray(vector, np.float32).tolist()


def check_spec(name: str, want: dict[str, VectorSpec], have: dict[str, VectorSpec]) -> None:
    if want != have:
        raise StoreMismatch(
            f"collection '{name}' holds vectors {_fmt(have)} but this store's backends make {_fmt(want)}; "
            "fix: use a new store (or another --collection-prefix) for other backends"
        )


def _fmt(spec: dict[str, VectorSpec]) -> str:
    return "{" + ", ".join(f"{k}: {v.dim}-d {v.metric}" for k, v in sorted(spec.items())) + "}"


def iter_chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
