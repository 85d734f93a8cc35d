"""Rows without images read and prepared in a second process (ingest/vectors_reader.py, used
from READER_PROCESS_ROWS rows on; here from 0): the same report, ledger rows, origins and
points as the in-process path, bad rows and files reported the same way, dedupe against
what the store held, re-rank vectors given or a placeholder, and the reader's death said in
one line."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gmv_store.ingest.vectors_reader as vectors_reader
from gmv_store import api
from gmv_store.errors import GmvError
from gmv_store.sources.parallel import HELPER_NICE
from gmv_store.store import Store


def clip_layout(folder, vectors, rows, files=2):
    (folder / "img_emb").mkdir(parents=True)
    (folder / "metadata").mkdir()
    for n, idx in enumerate(np.array_split(np.arange(len(vectors)), files)):
        np.save(folder / "img_emb" / f"img_emb_{n}.npy", np.asarray(vectors)[idx])
        pq.write_table(pa.Table.from_pylist([rows[i] for i in idx]), folder / "metadata" / f"metadata_{n}.parquet")
    return folder


def contents(store) -> tuple:
    """Everything a write leaves: ledger rows (but their time), origins, point count."""
    _, rows = api.sql(store, "SELECT contributor_id, point_id, sha256, source, owner, label, meta, height, width, "
                             "channels FROM training_images ORDER BY point_id")
    _, origins = api.sql(store, "SELECT collection, point_id, vector, file, col, row_index, digest FROM vector_origins "
                                "ORDER BY point_id, vector")
    with Store.open(store) as s:
        n = s.vectors.count("training")
    return rows, origins, n


def ingest_both_ways(tmp_path, monkeypatch, make_store, vectors_opts):
    """The same ingest into two fresh stores, in-process and through the reader process."""
    out = []
    for name, threshold in (("inproc", 10 ** 12), ("reader", 0)):
        monkeypatch.setattr(vectors_reader, "READER_PROCESS_ROWS", threshold)
        store = make_store(tmp_path / name)
        r = api.ingest(store, [], vectors=vectors_opts, refresh=False, index=False)
        out.append((store, r))
    return out


def test_the_reader_process_writes_what_the_in_process_path_writes(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((60, 8)).astype(np.float16)
    v[3, 2] = np.nan
    v[5] = 0.0
    rows = [{"url": f"id-{i}", "caption": f"c{i}", "n": i} for i in range(60)]
    rows[7] = {"url": "id-6", "caption": "again", "n": 7}  # the same id twice in one call
    d = clip_layout(tmp_path / "emb", v, rows, files=3)
    np.save(d / "img_emb" / "img_emb_3.npy", rng.standard_normal((5, 7)).astype(np.float32))  # wrong dimension
    pq.write_table(pa.Table.from_pylist([{"url": f"x{i}"} for i in range(5)]), d / "metadata" / "metadata_3.parquet")

    def make(path):
        api.init_store(path, "basic", embedder="precomputed", rerank="none", params={"embedder": {"dim": 8, "name": "m"}})
        return path

    opts = {"path": str(d), "id_column": "url"}
    (a, ra), (b, rb) = ingest_both_ways(tmp_path, monkeypatch, make, opts)
    assert (rb.added, rb.duplicates, rb.without_images) == (ra.added, ra.duplicates, ra.without_images) == (57, 0, 57)
    assert [(p.where, p.reason) for p in rb.problems] == [(p.where, p.reason) for p in ra.problems]
    assert len(rb.problems) == 4  # NaN, all-zero, the repeated id, the 7-d file
    assert rb.notes == ra.notes
    assert contents(b) == contents(a)
    assert api.verify(b, full=True).ok
    # again through the reader: everything it reads is stored already
    again = api.ingest(b, [], vectors=opts, refresh=False, index=False)
    assert (again.added, again.duplicates) == (0, 57)
    assert contents(b) == contents(a)


def test_the_reader_dedupes_against_the_store_and_fills_rerank_vectors(tmp_path, monkeypatch):
    """A store re-ranking by pixel l2 (it keeps a re-rank vector): rows given with
    --rerank-vectors keep theirs; a later call without them, after rows are stored, adds only
    the new ones, with the placeholder of a store that falls back to the recall distance."""
    rng = np.random.default_rng(1)

    def make(path):
        api.init_store(path, "offline", embedder="precomputed", rerank="l2", quality="none", params={"embedder": {"dim": 8}})
        return path

    with Store.open(make(tmp_path / "probe")) as s:
        rdim = s.stored_reranker.vector_embedder().dim
    v = rng.standard_normal((30, 8)).astype(np.float32)
    rows = [{"url": f"u{i}"} for i in range(30)]
    emb = clip_layout(tmp_path / "emb", v, rows)
    remb = clip_layout(tmp_path / "remb", rng.standard_normal((30, rdim)).astype(np.float32), [{} for _ in rows])
    given = {"path": str(emb), "id_column": "url", "rerank_vectors": str(remb)}
    (a, ra), (b, rb) = ingest_both_ways(tmp_path, monkeypatch, make, given)
    assert ra.added == rb.added == 30
    assert contents(b) == contents(a)
    more = clip_layout(tmp_path / "more", np.concatenate([v, rng.standard_normal((10, 8)).astype(np.float32)]),
                       rows + [{"url": f"u{i}"} for i in range(30, 40)])
    for store in (a, b):
        monkeypatch.setattr(vectors_reader, "READER_PROCESS_ROWS", 0 if store == b else 10 ** 12)
        r = api.ingest(store, [], vectors={"path": str(more), "id_column": "url"}, refresh=False, index=False)
        assert (r.added, r.duplicates) == (10, 30)
    assert contents(b) == contents(a)
    assert api.verify(b, full=True).ok


def test_the_readers_death_is_one_line(tmp_path, monkeypatch):
    """A reader killed (out of memory, by hand) ends the ingest with GmvError, and what was
    committed stays consistent."""
    import multiprocessing as mp
    import os
    import signal

    d = clip_layout(tmp_path / "emb", np.random.default_rng(2).standard_normal((40, 8)).astype(np.float32),
                    [{"url": f"u{i}"} for i in range(40)])
    store = tmp_path / "S"
    api.init_store(store, "basic", embedder="precomputed", rerank="none", params={"embedder": {"dim": 8}})
    monkeypatch.setattr(vectors_reader, "READER_PROCESS_ROWS", 0)
    real = vectors_reader._next

    nice = []

    def killed(out, proc):
        if not nice:  # once the first batch came, the reader has set itself up
            got = real(out, proc)
            nice.append(int(open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[16]))  # field 19: nice
            return got
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        while True:  # what it sent before it died is lost with it, as when the kernel kills it
            try:
                out.get(timeout=0.2)
            except Exception:
                break
        return real(out, proc)

    monkeypatch.setattr(vectors_reader, "_next", killed)
    with pytest.raises(GmvError, match=r"the process reading --vectors died \(exit code -9\); fix:"):
        api.ingest(store, [], vectors={"path": str(d), "id_column": "url"}, refresh=False, index=False, batch_size=8)
    assert mp.active_children() == []
    assert api.verify(store).ok
    assert nice == [min(os.nice(0) + HELPER_NICE, 19)]  # the reader yields the CPU to the writer's engine calls
