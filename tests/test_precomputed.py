"""Bring your own embeddings (`--vectors`, docs/precomputed.md): the test images embedded by a
real embedder (the `offline` profile's EfficientNet-Lite0), written in the layouts users
bring (clip-retrieval folders, Parquet vector columns, a .npy with its table), ingested into
a second store, and shown to give the top-k and values of the store that embedded the images
itself; the same without images (--id-column); bad input one line each, good rows kept."""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from gmv_store import api
from gmv_store.cli import cli
from gmv_store.datasets import load_mnist
from gmv_store.sources import load_source
from gmv_store.store import Store

K = 5
EFFNET = {"size": 64, "device": "cpu"}  # small inputs: the real model and weights, fast on 2 cores


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def clip_layout(folder, vectors, table_rows: list[dict], files: int = 2, dtype=np.float32, pad: int = 1):
    """clip-retrieval's output: img_emb/img_emb_N.npy + metadata/metadata_N.parquet (N
    zero-padded to `pad` digits, as clip-retrieval pads it to its partition count)."""
    (folder / "img_emb").mkdir(parents=True)
    (folder / "metadata").mkdir()
    for n, idx in enumerate(np.array_split(np.arange(len(vectors)), files)):
        np.save(folder / "img_emb" / f"img_emb_{n:0{pad}d}.npy", np.asarray(vectors)[idx].astype(dtype))
        pq.write_table(pa.Table.from_pylist([table_rows[i] for i in idx]),
                       folder / "metadata" / f"metadata_{n:0{pad}d}.parquet")
    return folder


def values_by_source(store, set_name="s") -> dict[str, float]:
    return {r["source"]: r["value"] for r in api.values(store, set_name, limit=None)}


def top_sources(store, gen_ids: list[str], set_name="s") -> list[list[str]]:
    out = api.top(store, gen_ids, set_name=set_name)
    return [[c["source"] for c in r["contributors"]] for r in out]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Training and generated PNGs, a store that embedded them itself (A: offline profile),
    and the same recall vectors computed by A's embedder."""
    root = tmp_path_factory.mktemp("byoe")
    x, y = load_mnist("train")
    idx = np.concatenate([np.flatnonzero(y == c)[:12] for c in range(10)])
    xt, yt = load_mnist("test")
    train, gen = [], []
    for folder, xs, ys, out in ((root / "train", x[idx], y[idx], train), (root / "gen", xt[:10], yt[:10], gen)):
        folder.mkdir()
        for i, (a, lab) in enumerate(zip(xs, ys)):
            p = folder / f"{i:04d}.png"
            p.write_bytes(png(a))
            out.append((str(p), str(lab)))
    a = root / "A"
    api.init_store(a, "offline", params={"embedder": EFFNET})
    api.ingest(a, [str(root / "train")], label_from="parent", workers=0)
    api.value(a, [str(root / "gen")], "s", k=K)
    with Store.open(a) as s:
        vt = s.embedder.embed([load_source(p) for p, _ in train])
        vg = s.embedder.embed([load_source(p) for p, _ in gen])
        dim = s.embedder.dim
    return {"root": root, "A": a, "train": train, "gen": gen, "vt": vt, "vg": vg, "dim": dim}


def precomputed_store(path, dim, profile="offline", **stages):
    return api.init_store(path, profile, params={"embedder": {"dim": dim, "name": "effnet-lite0"}},
                          embedder="precomputed", **stages)


def test_clip_retrieval_folder_gives_the_same_topk_and_values(world, tmp_path):
    """image_path rows: identity, size and re-rank vector from the images; recall vectors given."""
    w = world
    rows = [{"image_path": p, "caption": f"digit {lab}"} for p, lab in w["train"]]
    emb = clip_layout(tmp_path / "emb-train", w["vt"], rows)
    gen = clip_layout(tmp_path / "emb-gen", w["vg"], [{"image_path": p} for p, _ in w["gen"]], files=1)
    b = tmp_path / "B"
    precomputed_store(b, w["dim"])
    r = api.ingest(b, [], vectors=str(emb))
    assert (r.added, r.skipped, r.embed_seconds) == (len(w["train"]), 0, 0.0)
    assert api.ingest(b, [], vectors=str(emb)).added == 0  # the same content adds nothing
    v = api.value(b, [], "s", k=K, vectors=str(gen))
    assert v.valued == len(w["gen"])
    gen_paths = [p for p, _ in w["gen"]]
    assert top_sources(b, gen_paths) == top_sources(w["A"], gen_paths)
    va, vb = values_by_source(w["A"]), values_by_source(b)
    assert va.keys() == vb.keys() and all(vb[k] == pytest.approx(va[k], rel=1e-9) for k in va)
    # sources are the images' own, so thumbnails read them; the rows' other columns are metadata
    row = api.sql(b, "SELECT source, meta, height FROM contributors ORDER BY source LIMIT 1")[1][0]
    assert row[0] == w["train"][0][0] and json.loads(row[1]) == {"caption": "digit 0"} and row[2] == 28
    # match --vectors: the same contributors as matching the images in the store that embedded them
    m_b = api.match(b, [], k=K, vectors=str(gen)).results
    m_a = api.match(w["A"], gen_paths, k=K).results
    assert [[c["contributor_id"] for c in r["contributors"]] for r in m_b] == \
        [[c["contributor_id"] for c in r["contributors"]] for r in m_a]
    assert [r["quality"] for r in m_b] == pytest.approx([r["quality"] for r in m_a])
    assert api.verify(b, full=True).ok


def test_parquet_vector_column_and_image_column(world, tmp_path):
    """One Parquet table: encoded images, their float32 vectors as a list column, labels."""
    w = world
    table = pa.table({"image": [open(p, "rb").read() for p, _ in w["train"]],
                      "emb": pa.array(list(np.asarray(w["vt"], np.float32)), pa.list_(pa.float32())),
                      "label": [lab for _, lab in w["train"]]})
    pq.write_table(table, tmp_path / "train.parquet", row_group_size=50)
    c = tmp_path / "C"
    precomputed_store(c, w["dim"])
    r = api.ingest(c, [], vectors={"path": str(tmp_path / "train.parquet"), "vector_column": "emb"})
    assert (r.added, r.skipped) == (len(w["train"]), 0)
    gen = clip_layout(tmp_path / "emb-gen", w["vg"], [{"image_path": p} for p, _ in w["gen"]], files=1)
    api.value(c, [], "s", k=K, vectors=str(gen))
    ids = [r["contributor_id"] for r in api.values(w["A"], "s", limit=None)]
    got = [r["contributor_id"] for r in api.values(c, "s", limit=None)]
    assert got == ids  # identity is the image's content: the same contributor ids
    assert [r["value"] for r in api.values(c, "s", limit=None)] == \
        pytest.approx([r["value"] for r in api.values(w["A"], "s", limit=None)], rel=1e-9)
    assert api.sql(c, "SELECT min(label) = '0', count(DISTINCT label) FROM contributors")[1][0] == (True, 10)
    src = api.sql(c, "SELECT source FROM contributors LIMIT 1")[1][0][0]
    assert src.startswith(str(tmp_path / "train.parquet") + "#") and load_source(src).shape == (28, 28, 1)


def _reference(tmp_path, w, name, rerank):
    """A store that embedded the images itself, with the given re-rank and no quality."""
    ref = tmp_path / name
    api.init_store(ref, "offline", rerank=rerank, quality="none", params={"embedder": EFFNET})
    api.ingest(ref, [str(w["root"] / "train")], workers=0)
    api.value(ref, [str(w["root"] / "gen")], "s", k=K)
    return ref


def test_id_column_without_images_refresh_forget_verify(world, tmp_path):
    """No images: identity from --id-column, re-rank by the recall distance. The same values
    as a store that embedded the images (re-rank none); refresh, forget and verify work."""
    w = world
    ref = _reference(tmp_path, w, "ref", "none")
    url = {p: f"https://example.org/train/{i}.png" for i, (p, _) in enumerate(w["train"])}
    half = len(w["train"]) // 2
    rows = [{"url": url[p], "label": lab} for p, lab in w["train"]]
    first = clip_layout(tmp_path / "first", w["vt"][:half], rows[:half])
    rest = clip_layout(tmp_path / "rest", w["vt"][half:], rows[half:])
    gen = clip_layout(tmp_path / "gen", w["vg"], [{"url": f"gen-{i}"} for i in range(len(w["gen"]))], files=1)
    d = tmp_path / "D"
    precomputed_store(d, w["dim"], quality="none")  # offline's re-rank l2 cannot run: it falls back
    r = api.ingest(d, [], vectors={"path": str(first), "id_column": "url"})
    assert (r.added, r.without_images) == (half, half)
    assert any("falls back to the recall distance" in n for n in r.notes)
    v = api.value(d, [], "s", k=K, vectors={"path": str(gen), "id_column": "url"})
    assert v.valued == len(w["gen"]) and any("recall distance" in n for n in v.notes)
    r2 = api.ingest(d, [], vectors={"path": str(rest), "id_column": "url"})  # refresh brings the set up to date
    assert r2.added == len(w["train"]) - half and r2.refresh.total_generated == len(w["gen"])
    want = {url[src]: val for src, val in values_by_source(ref).items()}
    got = values_by_source(d)
    assert got.keys() == want.keys() and all(got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-12) for k in want)
    st = api.status(d)
    assert "falls back to the recall distance" in st["rerank"]
    assert st["identity"].startswith(f"{len(w['train']):,} training rows identified by an id column")
    out = CliRunner().invoke(cli, ["status", "--store", str(d)])
    assert "re-rank: the recall distance" in out.output and "identified by an id column" in out.output
    # forget by source (the id), then both stores agree again, and verify proves the store whole
    api.forget(d, source="https://example.org/train/1*")
    gone = {w["train"][i][0] for i in range(len(w["train"])) if str(i).startswith("1")}
    api.forget(ref, [cid for cid, src in api.sql(ref, "SELECT contributor_id, source FROM contributors")[1]
                     if src in gone])
    want = {url[src]: val for src, val in values_by_source(ref).items()}
    got = values_by_source(d)
    assert len(got) < len(w["train"]) and got.keys() == want.keys()
    assert all(got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-12) for k in want)
    assert api.status(d)["training_images"] == len(w["train"]) - len(gone) == api.status(ref)["training_images"]
    assert api.verify(d, full=True).ok
    assert api.refresh(d).changed == 0


def test_rerank_vectors_for_rows_without_images(world, tmp_path):
    """--rerank-vectors: the re-rank (pixel l2) comes with the rows, no fallback, and the
    values are those of the store that re-ranked from the images."""
    w = world
    ref = _reference(tmp_path, w, "ref-l2", "l2")
    with Store.open(ref) as s:
        rv = s.stored_reranker.vector_embedder()
        rt = rv.embed([load_source(p) for p, _ in w["train"]])
        rg = rv.embed([load_source(p) for p, _ in w["gen"]])
    url = {p: f"u{i}" for i, (p, _) in enumerate(w["train"])}
    emb = clip_layout(tmp_path / "emb", w["vt"], [{"url": url[p]} for p, _ in w["train"]])
    remb = clip_layout(tmp_path / "remb", rt, [{} for _ in w["train"]])
    gen = clip_layout(tmp_path / "gen", w["vg"], [{"url": f"g{i}"} for i in range(len(w["gen"]))], files=1)
    rgen = clip_layout(tmp_path / "rgen", rg, [{} for _ in w["gen"]], files=1)
    e = tmp_path / "E"
    precomputed_store(e, w["dim"], quality="none")
    r = api.ingest(e, [], vectors={"path": str(emb), "id_column": "url", "rerank_vectors": str(remb)})
    assert r.added == len(w["train"]) and not r.notes
    api.value(e, [], "s", k=K, vectors={"path": str(gen), "id_column": "url", "rerank_vectors": str(rgen)})
    assert "falls back" not in api.status(e)["rerank"]
    want = {url[src]: val for src, val in values_by_source(ref).items()}
    got = values_by_source(e)
    assert got.keys() == want.keys() and all(got[k] == pytest.approx(want[k], rel=1e-6) for k in want)


def test_images_from_webdataset_shards_joined_on_key(world, tmp_path):
    w = world
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as tar:
        for i, (p, lab) in enumerate(w["train"]):
            for ext, data in (("png", open(p, "rb").read()), ("cls", lab.encode())):
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    # clip-retrieval run on shards writes each sample's key in `image_path`
    rows = [{"image_path": f"{i:06d}"} for i in range(len(w["train"]))] + [{"image_path": "999999"}]
    emb = clip_layout(tmp_path / "emb", np.vstack([w["vt"], w["vt"][:1]]), rows, files=3, pad=2)
    f = tmp_path / "F"
    precomputed_store(f, w["dim"])
    r = api.ingest(f, [], vectors={"path": str(emb), "images": [str(shard)]})
    assert r.added == len(w["train"]) and len(r.problems) == 1 and "999999" in r.problems[0].reason
    ids_a = {row[0] for row in api.sql(w["A"], "SELECT contributor_id FROM contributors")[1]}
    rows_f = api.sql(f, "SELECT contributor_id, source, label FROM contributors ORDER BY source")[1]
    assert {row[0] for row in rows_f} == ids_a  # the images' content: the same identities
    assert rows_f[0][1] == f"{shard}#000000" and rows_f[0][2] == w["train"][0][1]


# ---------------------------------------------------------------------------- bad input


@pytest.fixture
def small(tmp_path):
    """A precomputed store of 8-d cosine vectors named ViT-L-14/laion2b, quality none."""
    store = tmp_path / "S"
    api.init_store(store, "basic", embedder="precomputed", rerank="none",
                   params={"embedder": {"dim": 8, "name": "ViT-L-14/laion2b"}})
    return store


def _ids(n, start=0):
    return [{"url": f"id-{start + i}"} for i in range(n)]


def test_bad_input_one_line_each_good_rows_stored(small, tmp_path):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((40, 8)).astype(np.float32)
    v[3, 2] = np.nan
    v[4, 0] = np.inf
    v[5] = 0.0
    d = tmp_path / "emb"
    rows = _ids(40)
    rows[7] = {"url": "id-6"}  # the same id twice in one call
    clip_layout(d, v, rows, files=2)
    np.save(d / "img_emb" / "img_emb_2.npy", rng.standard_normal((5, 7)).astype(np.float32))  # wrong dimension
    pq.write_table(pa.Table.from_pylist(_ids(5, 100)), d / "metadata" / "metadata_2.parquet")
    np.save(d / "img_emb" / "img_emb_3.npy", rng.standard_normal((5, 8)).astype(np.float32))  # 5 vectors, 6 rows
    pq.write_table(pa.Table.from_pylist(_ids(6, 200)), d / "metadata" / "metadata_3.parquet")
    np.save(d / "img_emb" / "img_emb_4.npy", rng.integers(0, 9, (5, 8)).astype(np.int8))  # integers: refused
    pq.write_table(pa.Table.from_pylist(_ids(5, 300)), d / "metadata" / "metadata_4.parquet")
    np.save(d / "img_emb" / "img_emb_5.npy", rng.standard_normal((5, 8)))  # float64: converted
    pq.write_table(pa.Table.from_pylist(_ids(5, 400)), d / "metadata" / "metadata_5.parquet")
    r = CliRunner().invoke(cli, ["ingest", "--store", str(small), "--vectors", str(d), "--id-column", "url"])
    assert r.exit_code == 3, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("skipped:")]
    want = ["img_emb_0.npy#3: vector holds NaN or inf", "img_emb_0.npy#4: vector holds NaN or inf",
            "img_emb_0.npy#5: all-zero vector", "id-6: the same id twice in this call",
            "img_emb_2.npy: recall vectors have shape (5, 7), the store takes (rows, 8)",
            "img_emb_3.npy: 5 recall vectors but 6 rows", "img_emb_4.npy: vectors have dtype int8, refused"]
    assert len(lines) == len(want), lines
    for line, text in zip(lines, want):
        assert text in line, (line, text)
        assert "fix" in line or "twice" in line, line
    assert "note: " in r.output and "float64 vectors converted to float32" in r.output
    n = api.status(small)["training_images"]
    assert n == 40 - 4 + 5  # bad rows skipped, the float64 file kept; nothing of the refused files
    assert f"ingested {n} new training images" in r.output
    assert api.verify(small, full=True).ok
    # again: nothing new, the same lines
    again = api.ingest(small, [], vectors={"path": str(d), "id_column": "url"})
    assert again.added == 0 and again.duplicates == n and len(again.problems) == len(want)


def test_model_name_and_layout_refusals(small, tmp_path):
    rng = np.random.default_rng(1)
    t = pa.table({"url": [f"u{i}" for i in range(10)],
                  "emb": pa.array(list(rng.standard_normal((10, 8)).astype(np.float32)), pa.list_(pa.float32()))})
    pq.write_table(t.replace_schema_metadata({"embedder": "ViT-B-32/openai"}), tmp_path / "other.parquet")
    pq.write_table(t.replace_schema_metadata({"embedder": "ViT-L-14/laion2b"}), tmp_path / "same.parquet")
    run = CliRunner().invoke
    r = run(cli, ["ingest", "--store", str(small), "--vectors", str(tmp_path / "other.parquet"),
                  "--vector-column", "emb", "--id-column", "url"])
    assert r.exit_code == 3 and "vectors made by ViT-B-32/openai, the store's are ViT-L-14/laion2b's" in r.output
    r = run(cli, ["ingest", "--store", str(small), "--vectors", str(tmp_path / "same.parquet"), "--vector-column", "emb",
                  "--id-column", "url", "--vectors-model", "ViT-B-32/openai"])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "--vectors-model ViT-B-32/openai" in r.output
    r = run(cli, ["ingest", "--store", str(small), "--vectors", str(tmp_path / "same.parquet"), "--vector-column", "emb",
                  "--id-column", "url"])
    assert r.exit_code == 0 and "ingested 10 new training images" in r.output, r.output
    for args, text in ((["--vectors", str(tmp_path / "same.parquet"), "--id-column", "url"], "--vector-column NAME"),
                       (["--vectors", str(tmp_path / "same.parquet"), "--id-column", "url", "--vector-column", "e"],
                        "no column 'e' for --vector-column (columns: url, emb)"),
                       (["--vectors", str(tmp_path / "x.npy")], "no such file"),
                       (["--id-column", "url"], "--id-column need --vectors PATH"),
                       (["--vectors", str(tmp_path / "same.parquet"), str(tmp_path)], "not both")):
        r = run(cli, ["ingest", "--store", str(small), *args])
        assert r.exit_code in (1, 2, 3) and text in r.output and "Traceback" not in r.output, (args, r.output)
    # .npy + --metadata, with a missing id value and rows without images in a store that scores quality
    np.save(tmp_path / "m.npy", rng.standard_normal((3, 8)).astype(np.float32))
    pq.write_table(pa.table({"url": ["a", None, "c"]}), tmp_path / "m.parquet")
    r = api.ingest(small, [], vectors={"path": str(tmp_path / "m.npy"), "metadata": str(tmp_path / "m.parquet"),
                                       "id_column": "url"})
    assert r.added == 2 and "no value in --id-column" in r.problems[0].reason
    q = tmp_path / "Q"
    api.init_store(q, "basic", embedder="precomputed", rerank="none", quality="niqe", params={"embedder": {"dim": 8}})
    api.ingest(q, [], vectors={"path": str(tmp_path / "same.parquet"), "vector_column": "emb", "id_column": "url"})
    r = run(cli, ["value", "--store", str(q), "--set", "s", "--vectors", str(tmp_path / "same.parquet"),
                  "--vector-column", "emb", "--id-column", "url"])
    assert r.exit_code == 1 and "scores quality with 'niqe' from images" in r.output
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png(np.full((16, 16), 7, np.uint8)))
    r = run(cli, ["value", "--store", str(q), "--set", "s", str(tmp_path / "img")])  # an image, no vector
    assert r.exit_code == 1 and "recall vectors come with the data" in r.output and "--vectors PATH" in r.output


def test_dot_and_l2_distances_rank_by_the_given_vectors(tmp_path):
    rng = np.random.default_rng(2)
    train = rng.standard_normal((50, 4)).astype(np.float32) * rng.uniform(0.5, 3, (50, 1)).astype(np.float32)
    q = rng.standard_normal((3, 4)).astype(np.float32)
    for distance, best in (("dot", lambda t, x: np.argmax(t @ x)),
                           ("l2", lambda t, x: np.argmin(((t - x) ** 2).sum(1)))):
        s = tmp_path / distance
        api.init_store(s, "basic", embedder="precomputed", rerank="none",
                       params={"embedder": {"dim": 4, "distance": distance}})
        assert api.describe(s)["embedder"] == f"precomputed(dim=4,distance={distance},name=)"
        clip_layout(tmp_path / f"t-{distance}", train, [{"id": f"t{i}"} for i in range(50)], files=1)
        clip_layout(tmp_path / f"q-{distance}", q, [{"id": f"q{i}"} for i in range(3)], files=1)
        api.ingest(s, [], vectors={"path": str(tmp_path / f"t-{distance}"), "id_column": "id"})
        res = api.match(s, [], k=3, vectors={"path": str(tmp_path / f"q-{distance}"), "id_column": "id"}).results
        assert [r["contributors"][0]["source"] for r in res] == [f"t{best(train, x)}" for x in q]
        d = [c["distance"] for c in res[0]["contributors"]]
        assert d == sorted(d)
    with pytest.raises(Exception, match="dim"):
        api.init_store(tmp_path / "nodim", "basic", embedder="precomputed")


def test_real_embedder_store_takes_vectors_checked(tmp_path, mnist_small):
    """A store with a real embedder (pixels) takes --vectors as that model's: size checked, a
    norm far from 1 a note; rows it cannot re-rank are refused once sets were re-ranked."""
    x, y, xt, yt = mnist_small
    np.savez(tmp_path / "train.npz", images=x[:60], labels=y[:60])
    np.savez(tmp_path / "gen.npz", images=xt[:4], labels=yt[:4])
    s = tmp_path / "P"
    api.init_store(s, "basic")
    api.ingest(s, [str(tmp_path / "train.npz")], workers=0)
    api.value(s, [str(tmp_path / "gen.npz")], "s", k=3)
    with Store.open(s) as st:
        n = st.embedder.dim
    rng = np.random.default_rng(3)
    clip_layout(tmp_path / "far", 3 * rng.standard_normal((5, n)), _ids(5), files=1)
    clip_layout(tmp_path / "small", rng.standard_normal((5, n - 1)), _ids(5), files=1)
    before = api.status(s)["training_images"]
    r = CliRunner().invoke(cli, ["ingest", "--store", str(s), "--vectors", str(tmp_path / "far"), "--id-column", "url"])
    assert r.exit_code == 1 and "sets were re-ranked that way" in r.output and r.output.count("\n") == 1, r.output
    assert api.status(s)["training_images"] == before and "falls back" not in api.status(s)["rerank"]
    with Store.open(s) as st:  # the re-rank vectors of the pixel l2 re-ranker, given: accepted, with a note
        rv = st.stored_reranker.vector_embedder().embed([a[..., None] for a in x[60:65]])
    clip_layout(tmp_path / "rfar", rv, [{} for _ in range(5)], files=1)
    r = api.ingest(s, [], vectors={"path": str(tmp_path / "far"), "id_column": "url",
                                   "rerank_vectors": str(tmp_path / "rfar")})
    assert r.added == 5 and any("far from 1 for a cosine model" in n for n in r.notes), r.notes
    r = api.ingest(s, [], vectors={"path": str(tmp_path / "small"), "id_column": "url",
                                   "rerank_vectors": str(tmp_path / "rfar")})
    assert r.added == 0 and f"the store takes (rows, {n})" in r.problems[0].reason
    assert api.verify(s, full=True).ok
