"""Rules with one owner (issue 18, item 4): the id rule, the re-ranker's kind, the vector
store interface that both engines are checked against."""
import hashlib
import inspect

import numpy as np
import pyarrow as pa
import pytest

from gmv_store.backends.base import ImageReranker
from gmv_store.backends.registry import create
from gmv_store.ids import id_bytes_of_points, id_of_point, point_id, points_of_id_bytes, short_id
from gmv_store.ledger.credits import id_column, point_ids_of_column
from gmv_store.vectors import VectorStore
from gmv_store.vectors import point_id as facade_point_id
from gmv_store.vectors.client import ClientVectorStore
from gmv_store.vectors.edge import EdgeVectorStore


def test_the_id_rule_both_ways():
    sha = hashlib.sha256(b"an image").hexdigest()
    assert short_id(sha) == sha[:16] and point_id(sha) == int(sha[:16], 16) < 2**64
    assert id_of_point(point_id(sha)) == short_id(sha) and point_id(short_id(sha)) == point_id(sha)
    assert id_of_point(5) == "0000000000000005" and facade_point_id is point_id
    # a key that is no digest is hashed first, so it still maps to one 64-bit id
    assert point_id("set\0not hex") == int(hashlib.sha256(b"set\0not hex").hexdigest()[:16], 16)


def test_the_id_rule_for_arrays_is_the_same_rule():
    rng = np.random.default_rng(1)
    points = np.concatenate([np.array([0, 5, 2**64 - 1, 2**63, 0x0123456789ABCDEF], dtype=np.uint64),
                             rng.integers(0, 2**64 - 1, 500, dtype=np.uint64, endpoint=True)])
    digits = id_bytes_of_points(points)
    assert [bytes(r).decode() for r in digits] == [id_of_point(int(p)) for p in points]
    assert (points_of_id_bytes(digits) == points).all()
    col = id_column(points)
    assert col.to_pylist() == [id_of_point(int(p)) for p in points]
    assert (point_ids_of_column(pa.chunked_array([col[:3], col[3:]])) == points).all()
    upper = pa.array([id_of_point(int(p)).upper() for p in points])
    assert (point_ids_of_column(upper) == points).all()
    # not the 16-digit form (never written by the id rule): still each one's point_id
    assert point_ids_of_column(pa.array(["5", "ff"])).tolist() == [5, 255]
    assert len(id_column(np.zeros(0, np.uint64))) == 0 and len(point_ids_of_column(pa.array([], pa.string()))) == 0


def test_the_rerank_kind_is_a_method():
    assert create("rerank", "none").rerank_kind() == "none"
    assert create("rerank", "l2").rerank_kind() == "vector"
    assert create("rerank", "embedding", {"embedder": "pixels"}).rerank_kind() == "vector"

    class Pairs(ImageReranker):
        name, defaults = "pairs", {}

        def pairwise(self, generated, candidates):
            return np.zeros(len(candidates))

    assert Pairs().rerank_kind() == "pairwise" and Pairs().vector_embedder() is None


@pytest.mark.parametrize("engine", [EdgeVectorStore, ClientVectorStore])
def test_each_engine_implements_the_facade_with_its_signatures(engine):
    assert issubclass(engine, VectorStore) and not engine.__abstractmethods__
    for name in VectorStore.__abstractmethods__:
        want = list(inspect.signature(getattr(VectorStore, name)).parameters)
        assert list(inspect.signature(getattr(engine, name)).parameters) == want, (engine.__name__, name)


def test_an_engine_missing_a_method_cannot_be_made():
    with pytest.raises(TypeError, match="abstract"):
        VectorStore()

    class Partial(VectorStore):
        def close(self):
            pass

    with pytest.raises(TypeError, match="ensure_collection"):
        Partial()
