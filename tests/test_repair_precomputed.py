"""`gmv repair` of a store whose vectors came with the data (`--vectors`, docs/precomputed.md):
a lost vector collection is written again from the vector files the ledger records
(`vector_origins`), each vector checked against its recorded digest; a file that is missing
or now holds other vectors stops the repair with one line naming it and the fix."""
from __future__ import annotations

import io
import json
import os
import shutil

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import run
from PIL import Image
from sparse_copy import copy_store

from gmv_store import api

DIM = 16
N_TRAIN, N_GEN = 24, 4


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def clip_layout(folder, vectors: np.ndarray, rows: list[dict], files: int) -> None:
    """clip-retrieval's output: img_emb/img_emb_N.npy + metadata/metadata_N.parquet."""
    (folder / "img_emb").mkdir(parents=True)
    (folder / "metadata").mkdir()
    for n, idx in enumerate(np.array_split(np.arange(len(vectors)), files)):
        np.save(folder / "img_emb" / f"img_emb_{n}.npy", vectors[idx])
        pq.write_table(pa.Table.from_pylist([rows[i] for i in idx]), folder / "metadata" / f"metadata_{n}.parquet")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Two precomputed stores valued from vector files: `images` (clip-retrieval folders whose
    rows name PNGs; the re-rank vectors and quality come from the images) and `ids` (Parquet
    vector columns, rows identified by url, no images, re-rank and quality none)."""
    d = tmp_path_factory.mktemp("repair-pre")
    rng = np.random.default_rng(7)
    images = {}
    for kind, n in (("train", N_TRAIN), ("gen", N_GEN)):
        (d / kind).mkdir()
        images[kind] = []
        for i in range(n):
            p = d / kind / f"{i:02d}.png"
            p.write_bytes(png(rng.integers(0, 256, (12, 12), dtype=np.uint8)))
            images[kind].append(str(p))
    vt = rng.standard_normal((N_TRAIN, DIM)).astype(np.float16)
    vg = rng.standard_normal((N_GEN, DIM)).astype(np.float16)
    clip_layout(d / "emb", vt, [{"image_path": p} for p in images["train"]], files=2)
    clip_layout(d / "gen-emb", vg, [{"image_path": p} for p in images["gen"]], files=1)
    api.init_store(d / "images", params={"embedder": {"dim": DIM}, "rerank": {"size": 14}}, embedder="precomputed")
    assert api.ingest(d / "images", [], vectors=str(d / "emb")).added == N_TRAIN
    assert api.value(d / "images", [], "s", k=3, vectors=str(d / "gen-emb")).valued == N_GEN

    def table(vs, prefix):
        return pa.table({"url": [f"https://example.org/{prefix}{i}.jpg" for i in range(len(vs))],
                         "emb": pa.array(list(vs.astype(np.float32)), pa.list_(pa.float32()))})
    pq.write_table(table(vt, "t"), d / "train.parquet")
    pq.write_table(table(vg, "g"), d / "gen.parquet")
    api.init_store(d / "ids", params={"embedder": {"dim": DIM}}, embedder="precomputed", rerank="none", quality="none")
    parquet = {"vector_column": "emb", "id_column": "url"}
    assert api.ingest(d / "ids", [], vectors={"path": str(d / "train.parquet"), **parquet}).added == N_TRAIN
    assert api.value(d / "ids", [], "s", k=3, vectors={"path": str(d / "gen.parquet"), **parquet}).valued == N_GEN
    return d


def values(store) -> dict[str, float]:
    rows = json.loads(run("sql", "SELECT contributor_id, value_sum FROM contributor_values", "--store", store, "--json"))
    return {r["contributor_id"]: r["value_sum"] for r in rows}


def lose(base, tmp_path, which: str, collection: str):
    store = copy_store(base / which, tmp_path / which)
    shutil.rmtree(store / "qdrant-edge" / collection)
    return store


@pytest.mark.parametrize("collection", ["training", "generated"])
@pytest.mark.parametrize("which", ["images", "ids"])
def test_lost_collection_read_again_from_the_vector_files(base, tmp_path, which, collection):
    before = values(base / which)
    assert len(before) >= 3
    store = lose(base, tmp_path, which, collection)
    out = run("repair", "--store", store)
    n = N_TRAIN if collection == "training" else N_GEN
    assert f"read the given vectors of {n} missing {collection} points again from their recorded files" in out
    assert "re-embedded" not in out and "re-matched every generated image" in out
    assert run("verify", "--full", "--store", store).startswith("ok: ")
    after = values(store)
    assert after.keys() == before.keys() and all(after[k] == pytest.approx(before[k], abs=1e-9) for k in before)


def test_missing_vector_file_named_then_repaired_once_restored(base, tmp_path):
    store = lose(base, tmp_path, "images", "training")
    npy = base / "emb" / "img_emb" / "img_emb_1.npy"
    os.replace(npy, npy.with_suffix(".away"))
    try:
        out = run("repair", "--store", store, code=1)
    finally:
        os.replace(npy.with_suffix(".away"), npy)
    error = [line for line in out.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1, out
    assert f"the given vectors of {N_TRAIN // 2} images cannot be read again (first: {npy} is missing)" in error[0]
    assert "--drop-unreadable" in error[0] and "gmv ingest --vectors PATH" in error[0]
    assert f"read the given vectors of {N_TRAIN // 2} missing training points" in out  # the other file's
    assert "did not finish" in run("status", "--store", store)
    # the file back where it was: the next repair finishes the work
    assert f"read the given vectors of {N_TRAIN // 2} missing training points" in run("repair", "--store", store)
    assert run("verify", "--full", "--store", store).startswith("ok: ")
    assert values(store) == pytest.approx(values(base / "images"), abs=1e-9)


def test_changed_vector_named_not_used_and_dropped_on_request(base, tmp_path):
    store = lose(base, tmp_path, "ids", "training")
    table = pq.read_table(base / "train.parquet")
    emb = np.stack(table.column("emb").to_numpy(zero_copy_only=False))
    emb[3] += 1.0  # another vector in row 3 of the recorded file
    changed = table.set_column(1, "emb", pa.array(list(emb.astype(np.float32)), pa.list_(pa.float32())))
    pq.write_table(changed, tmp_path / "changed.parquet")
    original = (base / "train.parquet").read_bytes()
    shutil.copyfile(tmp_path / "changed.parquet", base / "train.parquet")
    try:
        msg = run("repair", "--store", store, code=1)
        assert f"{base / 'train.parquet'} (column emb) row 3 now holds another vector than the one stored" in msg
        out = run("repair", "--drop-unreadable", "--store", store)
    finally:
        (base / "train.parquet").write_bytes(original)
    assert "forgot 1 training images whose sources cannot be read (1 of them: their given vectors)" in out
    assert run("verify", "--full", "--store", store).startswith("ok: ")
    n = json.loads(run("sql", "SELECT count(*) AS n FROM contributors", "--store", store, "--json"))[0]["n"]
    assert n == N_TRAIN - 1


def test_vectors_whose_origin_was_not_recorded_are_named(base, tmp_path):
    """A store written before origins were recorded: nothing to read them from, said so."""
    store = lose(base, tmp_path, "ids", "training")
    con = duckdb.connect(str(store / "ledger.duckdb"))
    con.execute("DELETE FROM vector_origins WHERE collection = 'training'")
    con.close()
    msg = run("repair", "--store", store, code=1)
    assert "no record of the file its vectors were read from" in msg and "gmv ingest --vectors PATH" in msg
    assert "nothing to repair" not in msg
    assert "re-embedded" not in msg


def test_a_store_of_images_records_no_origins(base, tmp_path):
    """Only vectors given with the data are recorded: images' vectors are embedded again."""
    rows = json.loads(run("sql", "SELECT vector, count(*) AS n FROM vector_origins GROUP BY ALL ORDER BY 1",
                          "--store", base / "images", "--json"))
    assert rows == [{"vector": "recall", "n": N_TRAIN + N_GEN}]  # the re-rank vectors came from the images


def test_forgotten_points_take_their_origins_with_them(base, tmp_path):
    store = copy_store(base / "ids", tmp_path / "ids")
    cid = json.loads(run("sql", "SELECT contributor_id FROM contributors ORDER BY 1 LIMIT 1", "--store", store,
                         "--json"))[0]["contributor_id"]
    run("forget", cid, "--store", store)
    count = "SELECT count(*) AS n FROM vector_origins WHERE collection = 'training'"
    assert json.loads(run("sql", count, "--store", store, "--json"))[0]["n"] == N_TRAIN - 1


def test_digest_is_pinned_and_sees_one_changed_value():
    """Digests are stored in ledgers, so their definition is pinned; one changed value (the
    smallest step of one float) changes its row's digest and no other."""
    from gmv_store.sources.vector_arrays import vector_digests

    v = np.arange(32, dtype=np.float32).reshape(2, 16) / 7
    assert vector_digests(v).tolist() == [8555620845131521303, 10604608231803992040]
    w = v.copy()
    w[1, 5] = np.nextafter(w[1, 5], np.float32(10))
    assert (vector_digests(w) != vector_digests(v)).tolist() == [False, True]
