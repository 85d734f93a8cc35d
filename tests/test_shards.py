"""Training data as it ships: Parquet tables, WebDataset shards, globs and memory-mapped
arrays; their bad rows and members; reading one image back; decoding in worker processes."""
import itertools
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from cli_helpers import ledger_rows, run, tiny_store
from shard_files import member_offsets, png, write_parquet, write_tar

from gmv_store import api
from gmv_store.backends import registry
from gmv_store.backends.named import embed_named, worker_embedding
from gmv_store.images import content_sha256
from gmv_store.sources import InputOptions, InputReport, load_source, parallel, read_batches
from gmv_store.sources.readers import ArrayReader
from gmv_store.store import Store


@pytest.fixture
def store(tmp_path):
    return tiny_store(tmp_path)


def rows(store, q="SELECT source, label, meta, sha256 FROM training_images ORDER BY rowid"):
    return ledger_rows(store, q)


def skipped(output):
    return [line for line in output.splitlines() if line.startswith("skipped:")]


def test_parquet_bytes_column_and_load_source(tmp_path, store, mnist_small):
    x, y, _, _ = mnist_small
    f = write_parquet(tmp_path / "train.parquet", x[:100], y[:100], struct=False, column="img", row_group_size=30)
    r = api.ingest(store, [f], workers=0)
    assert r.added == 100 and r.skipped == 0
    got = rows(store)
    assert [g["source"] for g in got] == [f"{f}#{i}" for i in range(100)]
    assert [g["label"] for g in got] == [str(v) for v in y[:100]]
    for g in got[::9]:  # rows in every row group read back to the stored content
        assert content_sha256(load_source(g["source"])) == g["sha256"]
    assert got[5]["sha256"] == content_sha256(x[5][:, :, None])


def test_parquet_hf_struct_label_column_and_meta(tmp_path, store, mnist_small):
    x, y, _, _ = mnist_small
    n = 20
    extra = {"digit": pa.array(y[:n].astype(np.int64)), "caption": [f"a {v}" for v in y[:n]],
             "score": pa.array([0.5 * i for i in range(n - 1)] + [float("nan")]),
             "taken": pa.array(np.arange(n).astype("datetime64[s]")),
             "tags": pa.array([[1, 2]] * n)}  # a list: not metadata
    f = write_parquet(tmp_path / "hf.parquet", x[:n], None, extra=extra)
    run("ingest", f, "--label-column", "digit", "--meta", "licence=cc", "--store", store, "--workers", "0")
    got = rows(store)
    assert [g["label"] for g in got] == [str(v) for v in y[:n]]
    assert json.loads(got[3]["meta"]) == {"caption": f"a {y[3]}", "score": 1.5, "taken": "1970-01-01T00:00:03",
                                          "licence": "cc"}
    assert json.loads(got[-1]["meta"])["score"] is None  # NaN is no JSON number
    assert content_sha256(load_source(got[7]["source"])) == got[7]["sha256"]
    # the payload in Qdrant carries the same metadata (gmv repair rebuilds the ledger from it)
    from gmv_store.store import TRAINING, Store

    with Store.open(store) as s:
        payloads = {p["source"]: p for batch in s.vectors.scroll(TRAINING) for _, p in batch}
    assert payloads[got[3]["source"]]["meta"] == json.loads(got[3]["meta"])
    assert payloads[got[3]["source"]]["owner"] is None and payloads[got[3]["source"]]["height"] == 28


def test_image_column_option_and_source_suffix(tmp_path, store, mnist_small):
    x, y, _, _ = mnist_small
    other = pa.array([png(a) for a in x[50:60]], pa.binary())
    f = write_parquet(tmp_path / "two.parquet", x[:10], y[:10], extra={"thumb": other})
    api.ingest(store, [f], image_column="thumb", workers=0)
    got = rows(store)
    assert got[0]["source"] == f"{f}#0@thumb"  # not the default image column: recorded
    assert got[0]["sha256"] == content_sha256(x[50][:, :, None])
    assert content_sha256(load_source(got[4]["source"])) == got[4]["sha256"]


def test_wrong_label_type_and_missing_image_column(tmp_path, store, mnist_small):
    x, y, _, _ = mnist_small
    bad_label = write_parquet(tmp_path / "a.parquet", x[:5], None, extra={"label": pa.array([[1]] * 5)})
    no_image = tmp_path / "b.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"pixels": [[0, 1]] * 3, "label": [1, 2, 3]}), no_image)
    good = write_parquet(tmp_path / "c.parquet", x[:5], y[:5])
    out = run("ingest", bad_label, no_image, good, "--store", store, code=3)
    lines = skipped(out)
    assert lines == [
        f"skipped: {bad_label}: label column 'label' has type list<element: int64>; fix: choose a column of integers "
        "or strings with --label-column",
        f"skipped: {no_image}: no image column (columns: pixels (list<element: int64>), label (int64)); fix: name the "
        "column of encoded image bytes with --image-column, or store images as binary bytes or a {bytes, path} struct",
    ]
    assert "ingested 5 new" in out
    out = run("ingest", good, "--image-column", "photo", "--store", store, code=3)
    assert skipped(out) == [f"skipped: {good}: no column 'photo' (columns: image (struct<bytes: binary, path: string>), "
                            "label (int64)); fix: name the column of encoded image bytes with --image-column"]


def test_corrupt_parquet_file_and_row_group(tmp_path, store, mnist_small):
    x, y, _, _ = mnist_small
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 this is no parquet file")
    f = write_parquet(tmp_path / "rg.parquet", x[:90], y[:90], struct=False, row_group_size=30)
    import pyarrow.parquet as pq

    col = pq.ParquetFile(f).metadata.row_group(1).column(0)  # the image bytes of rows 30..59
    raw = bytearray(f.read_bytes())
    start = (col.dictionary_page_offset or col.data_page_offset) + col.total_compressed_size // 2
    raw[start:start + 200] = b"\xff" * 200  # inside the compressed pages
    f.write_bytes(bytes(raw))
    out = run("ingest", junk, f, "--store", store, "--workers", "0", code=3)
    lines = skipped(out)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"skipped: {junk}: not a readable Parquet file (")
    assert lines[0].endswith("fix: re-export it or remove it")
    assert lines[1].startswith(f"skipped: {f}#30-59: unreadable rows 30..59 (row group 1: ")
    got = [g["source"] for g in rows(store)]
    assert got == [f"{f}#{i}" for i in list(range(30)) + list(range(60, 90))]  # the other row groups are kept


def test_webdataset_labels_meta_and_load_source(tmp_path, store, mnist_small):
    x, y, _, _ = mnist_small
    docs = [{"label": f"digit-{v}", "photographer": "lecun", "i": i} for i, v in enumerate(y[:12])]
    a = write_tar(tmp_path / "shard-000000.tar", x[:12], y[:12], json_docs=docs)  # .cls wins over .json label
    b = write_tar(tmp_path / "shard-000001.tar", x[12:24], None, json_docs=docs, key_start=12)
    r = api.ingest(store, [a, b], workers=0)
    assert r.added == 24 and r.skipped == 0
    got = rows(store)
    assert got[0]["source"] == f"{a}#000000" and got[12]["source"] == f"{b}#000012"
    assert got[1]["label"] == str(y[1]) and got[13]["label"] == f"digit-{y[1]}"
    assert json.loads(got[1]["meta"]) == {"photographer": "lecun", "i": 1, "label": f"digit-{y[1]}"}
    assert json.loads(got[13]["meta"]) == {"photographer": "lecun", "i": 1}
    for g in got[::5]:
        assert content_sha256(load_source(g["source"])) == g["sha256"]


@pytest.mark.parametrize("where", ["mid-image", "mid-header", "between-members", "after-image"])
def test_truncated_shard(tmp_path, store, mnist_small, where):
    x, y, _, _ = mnist_small
    full = write_tar(tmp_path / "full.tar", x[:10], y[:10])
    members = {name: (off, size) for name, off, size in member_offsets(full)}
    off, size = members["000006.png"]
    cut = {"mid-image": off + size // 2, "mid-header": off - 300, "between-members": off - 512,
           "after-image": off + 512 * (-(-size // 512)) + 100}[where]
    cut_file = tmp_path / "shard-000000.tar"
    cut_file.write_bytes(full.read_bytes()[:cut])
    out = run("ingest", cut_file, "--store", store, code=3)
    lines = skipped(out)
    assert len(lines) == 1, lines
    key = "000005" if where in ("mid-header", "between-members") else "000006"
    assert lines[0].startswith(f"skipped: {cut_file}#{key}: shard truncated or corrupt")
    assert lines[0].endswith("fix: re-download or re-write the shard")
    assert [g["source"] for g in rows(store)] == [f"{cut_file}#{i:06d}" for i in range(int(key))]
    assert [g["label"] for g in rows(store)] == [str(v) for v in y[:int(key)]]


def test_corrupt_member_and_missing_image(tmp_path, store, mnist_small):
    x, y, _, _ = mnist_small
    f = write_tar(tmp_path / "shard.tar", x[:8], y[:8], corrupt={"000003"})
    with __import__("tarfile").open(f, "a") as tar:  # a sample with a label and no image
        import io
        import tarfile

        info = tarfile.TarInfo("000099.cls")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"1"))
    out = run("ingest", f, "--store", store, code=3)
    assert skipped(out) == [
        f"skipped: {f}#000003: not an image file PIL can read; fix: remove it or convert it to PNG",
        f"skipped: {f}#000099: no image member (members: .cls); fix: give each sample a .png/.jpg/.jpeg/.webp "
        "member, or pick one with --image-column",
    ]
    assert len(rows(store)) == 7


def test_glob_and_folder_of_shards(tmp_path, store, mnist_small):
    x, y, _, _ = mnist_small
    d = tmp_path / "data"
    d.mkdir()
    write_parquet(d / "train-00000.parquet", x[:10], y[:10])
    write_parquet(d / "train-00001.parquet", x[10:20], y[10:20])
    write_tar(d / "shard-000000.tar", x[20:30], y[20:30])
    (d / "README.txt").write_text("not data")
    r = api.ingest(store, [str(d / "train-*.parquet")], workers=0)
    assert r.added == 20 and r.skipped == 0
    r = api.ingest(store, [d], workers=0)
    assert r.added == 10 and r.duplicates == 20 and r.ignored_files == 1
    out = run("ingest", str(tmp_path / "nothing-*.parquet"), "--store", store, code=3)
    assert skipped(out) == [f"skipped: {tmp_path / 'nothing-*.parquet'}: no file matches this pattern"]


def test_npy_is_memory_mapped(tmp_path, store, mnist_small):
    x, _, _, _ = mnist_small
    f = tmp_path / "big.npy"
    np.save(f, x[:200])
    images, labels = ArrayReader().read(f)
    assert isinstance(images, np.memmap) and labels is None
    r = api.ingest(store, [f], workers=0)
    assert r.added == 200
    assert load_source(f"{f}#123").tobytes() == x[123].tobytes()


def test_workers_give_the_ledger_of_the_serial_path(tmp_path, mnist_small, monkeypatch):
    """Same rows, in the same order, with the same problems, whether decoded in-process or
    in one or two worker processes (few items in-process first, small chunks: many tasks)."""
    monkeypatch.setattr(parallel, "SERIAL_FIRST", 50)
    monkeypatch.setattr(parallel, "CHUNK", 16)
    x, y, _, _ = mnist_small
    files = [write_parquet(tmp_path / "a.parquet", x[:200], y[:200], row_group_size=50),
             write_tar(tmp_path / "b.tar", x[200:400], y[200:400], corrupt={"000017", "000150"}),
             write_parquet(tmp_path / "c.parquet", x[400:], y[400:], struct=False)]
    files.append(tmp_path / "missing.parquet")
    out, vectors = {}, {}
    for w in (0, 1, 2):
        path = tmp_path / f"store{w}"
        api.init_store(path, params={"embedder": {"size": 8}, "rerank": {"size": 14}})
        r = api.ingest(path, files, workers=w, batch_size=64)
        out[w] = (rows(path, "SELECT contributor_id, source, label, meta FROM training_images ORDER BY rowid"),
                  [(p.where, p.reason) for p in r.problems], r.added)
        s = Store.open(path)
        try:
            ids = sorted(s.vectors.ids("training"))
            vectors[w] = {name: s.vectors.vectors("training", ids, name) for name in ("recall", "rerank")}
        finally:
            s.close()
    assert out[1] == out[0] and out[2] == out[0]
    assert out[0][2] == len(x) - 2 and len(out[0][1]) == 3
    # the pixel models embed in the workers there: the stored vectors are the same bits
    for w, name in itertools.product((1, 2), ("recall", "rerank")):
        assert vectors[w][name].shape == (len(x) - 2, 64 if name == "recall" else 196)
        assert vectors[w][name].tobytes() == vectors[0][name].tobytes()


def test_read_batches_workers_same_decoded(tmp_path, mnist_small, monkeypatch):
    monkeypatch.setattr(parallel, "SERIAL_FIRST", 10)
    x, y, _, _ = mnist_small
    f = write_tar(tmp_path / "s.tar", x[:150], y[:150], corrupt={"000100"})
    got = {}
    for w in (0, 2):
        report = InputReport()
        got[w] = [(d.source, d.label, d.sha256) for b in read_batches([f], InputOptions(), 32, report, workers=w)
                  for d in b], [p.where for p in report.problems]
    assert got[0] == got[2] and got[0][1] == [f"{f}#000100"]


@pytest.mark.parametrize("workers", [1, 2])
def test_light_models_embed_in_the_workers(tmp_path, mnist_small, monkeypatch, workers):
    """Past the first items (decoded here), each decoded image comes back with the vectors
    this process would compute (one worker too: only a worker fills them); a model with
    weights is never sent to a worker."""
    monkeypatch.setattr(parallel, "SERIAL_FIRST", 10)
    x, y, _, _ = mnist_small
    f = write_tar(tmp_path / "s.tar", x[:150], y[:150], corrupt={"000100"})
    emb, rr = registry.create("embedder", "pixels", {"size": 8}), registry.create("rerank", "l2", {"size": 12})
    embed = worker_embedding(emb, rr)
    decoded = [d for b in read_batches([f], InputOptions(), 32, InputReport(), workers=workers, embed=embed)
               for d in b]
    assert len(decoded) == 149 and all(d.vectors is None for d in decoded[:10])
    assert all(d.vectors is not None for d in decoded[10:])
    here = embed_named(emb, rr, [d.pixels for d in decoded[10:]])
    for name in ("recall", "rerank"):
        assert np.stack([d.vectors[name] for d in decoded[10:]]).tobytes() == here[name].tobytes()
    assert worker_embedding(registry.create("embedder", "effnet-lite0", {}), rr) is None


def test_an_input_error_comes_after_the_images_read_before_it(monkeypatch):
    """The workers start on what follows the first items while those are decoded here: an
    input that fails in that stretch is still raised after the first items are given."""
    from functools import partial

    from gmv_store.errors import GmvError
    from gmv_store.sources import Item

    monkeypatch.setattr(parallel, "SERIAL_FIRST", 10)
    monkeypatch.setattr(parallel, "CHUNK", 4)

    def items():
        for i in range(14):
            yield Item(f"x#{i}", partial(np.full, (4, 4, 1), i, np.uint8))
        raise GmvError("x: cannot read further")

    got = []
    with pytest.raises(GmvError, match="cannot read further"):
        for d in parallel.decode_parallel(items(), [], 1):
            got.append((d.source, int(d.pixels[0, 0, 0])))
    assert got == [(f"x#{i}", i) for i in range(10)]


@pytest.mark.skipif(sys.platform != "linux", reason="reads the workers' priority from /proc")
def test_decoding_workers_run_below_the_writers_priority(monkeypatch):
    """The writer's engine calls bound ingest's rate: the decoding workers yield the CPU to
    them (5 nice levels lower, once)."""
    import os
    from functools import partial

    from gmv_store.sources import Item

    monkeypatch.setattr(parallel, "SERIAL_FIRST", 2)
    monkeypatch.setattr(parallel, "CHUNK", 2)

    def descendants(pid):
        kids = [int(k) for t in Path(f"/proc/{pid}/task").iterdir() for k in (t / "children").read_text().split()]
        return kids + [d for k in kids for d in descendants(k)]

    def nice(pid):
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])

    items = (Item(f"x#{i}", partial(np.full, (2, 2, 1), i, np.uint8)) for i in range(40))
    it = parallel.decode_parallel(items, [], 2)
    try:
        got = [next(it) for _ in range(4)]  # two here, two from a worker
        levels = sorted(nice(p) for p in descendants(os.getpid()))
    finally:
        it.close()
    assert [d.source for d in got] == ["x#0", "x#1", "x#2", "x#3"]
    base = os.nice(0)
    # the worker that decoded x#2 and x#3 at least (a second may still be starting); the
    # forkserver and the resource tracker unchanged; none lowered twice
    assert min(base + parallel.HELPER_NICE, 19) in levels, levels
    assert set(levels) <= {base, min(base + parallel.HELPER_NICE, 19)}, levels


@pytest.mark.skipif(sys.platform != "linux", reason="pipe sizes are set on Linux only")
def test_the_workers_pipes_hold_a_whole_chunk():
    """A worker's results (a chunk of images with their vectors, ~400 KB) fit in the pipe it
    writes them to: it never stands blocked while the main process drains 64 KB at a time."""
    import fcntl
    from concurrent.futures import ProcessPoolExecutor

    cap = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    pool = ProcessPoolExecutor(1)
    try:
        parallel.roomy_pipes(pool)
        for q in (pool._result_queue, pool._call_queue):
            assert fcntl.fcntl(q._reader.fileno(), fcntl.F_GETPIPE_SZ) >= min(cap, parallel.PIPE_BYTES)
    finally:
        pool.shutdown()


def test_label_column_for_webdataset_json(tmp_path, store, mnist_small):
    x, _, _, _ = mnist_small
    docs = [{"class": "seven", "label": [1, 2]} for _ in range(3)]
    f = write_tar(tmp_path / "s.tar", x[:3], None, json_docs=docs)
    api.ingest(store, [f], label_column="class", workers=0)
    assert [g["label"] for g in rows(store)] == ["seven"] * 3
    shutil.rmtree(store)
    api.init_store(store, params={"embedder": {"size": 8}, "rerank": {"size": 14}})
    r = api.ingest(store, [f], workers=0)  # the default key holds a list: one line per sample
    assert r.added == 0 and r.problems[0].reason.startswith(".json label 'label' is a list; fix:")


def test_recorded_sources_as_arguments(tmp_path, store, mnist_small):
    x, y, _, _ = mnist_small
    pq_file = write_parquet(tmp_path / "t.parquet", x[:10], y[:10], row_group_size=4)
    tar_file = write_tar(tmp_path / "t.tar", x[10:20], y[10:20], key_start=10)
    r = api.ingest(store, [f"{pq_file}#6", f"{tar_file}#000013"], workers=0)
    assert r.added == 2 and r.skipped == 0
    got = rows(store)
    assert [(g["source"], g["label"]) for g in got] == [(f"{pq_file}#6", str(y[6])), (f"{tar_file}#000013", str(y[13]))]
    out = run("ingest", f"{pq_file}#10", f"{tar_file}#000099", "--store", store, code=3)
    assert skipped(out) == [f"skipped: {pq_file}#10: row out of range (the file holds 10 rows)",
                            f"skipped: {tar_file}#000099: no sample with this key in the shard"]


def test_webdataset_image_extension_option(tmp_path, store, mnist_small):
    import io
    import tarfile

    from PIL import Image

    x, _, _, _ = mnist_small
    f = tmp_path / "two.tar"
    with tarfile.open(f, "w") as tar:
        for i in range(4):
            buf = io.BytesIO()
            Image.fromarray(x[i + 100]).save(buf, format="JPEG", quality=90)
            for ext, data in (("png", png(x[i])), ("jpg", buf.getvalue())):
                info = tarfile.TarInfo(f"s@{i}.{ext}")  # an @ inside a key is part of the key
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    api.ingest(store, [f], image_column="jpg", workers=0)
    got = rows(store)
    assert [g["source"] for g in got] == [f"{f}#s@{i}@jpg" for i in range(4)]
    for g in got:
        assert content_sha256(load_source(g["source"])) == g["sha256"]
    assert content_sha256(load_source(f"{f}#s@2")) == content_sha256(x[2][:, :, None])  # the default: png


@pytest.mark.parametrize("fmt", ["pax", "gnu", "ustar"])
def test_shard_index_scan_agrees_with_tarfile(tmp_path, fmt):
    """The header scan behind load_source's index reads the same members as tarfile: long
    names (pax records, GNU long names, ustar prefixes), folders skipped, and it stops at a
    header with a bad checksum where tarfile stops."""
    import io
    import os
    import tarfile

    from gmv_store.sources import tar_headers

    f = tmp_path / "odd.tar"
    names = ["a" * 120 + "/x.png", "é/ü.cls", "plain.png"] if fmt != "ustar" else \
        ["p" * 90 + "/" + "q" * 60 + "/x.png", "é/ü.cls", "plain.png"]
    with tarfile.open(f, "w", format={"pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT,
                                      "ustar": tarfile.USTAR_FORMAT}[fmt]) as tar:
        folder = tarfile.TarInfo("folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name in names:
            info = tarfile.TarInfo(name)
            data = os.urandom(700)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    scanned = tar_headers.scan(str(f)).members
    assert scanned == list(tar_headers.members_by_tarfile(str(f))) and [s[0] for s in scanned] == names
    raw = bytearray(f.read_bytes())
    raw[scanned[1][1] - 512 + 5] ^= 0x55  # the second file's own header (pax/GNU name records come before it)
    f.write_bytes(bytes(raw))
    assert tar_headers.scan(str(f)).members == scanned[:1]  # tarfile stops there too (after a pax record: an error)


def test_make_shards_builds_distinct_readable_images(tmp_path, store):
    """benchmarks/make_shards.py: both formats hold the same n distinct images, and a rerun
    keeps the shards it finds."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from make_shards import make_augmented_mnist

    a = make_augmented_mnist(300, tmp_path / "pq", "parquet", shard_size=128, workers=1)
    b = make_augmented_mnist(300, tmp_path / "wds", "webdataset", shard_size=128, workers=1)
    assert a["files"] == b["files"] == 3 and a["bytes_per_image"] < b["bytes_per_image"]
    assert make_augmented_mnist(300, tmp_path / "pq", "parquet", shard_size=128)["built"] == 0
    r = api.ingest(store, [tmp_path / "pq"], workers=0)
    assert r.added == 300 and r.duplicates == 0
    r = api.ingest(store, [tmp_path / "wds"], workers=0)
    assert r.added == 0 and r.duplicates == 300  # the same images in the other format
    with pytest.raises(ValueError, match="other settings"):
        make_augmented_mnist(300, tmp_path / "pq", "parquet", shard_size=100)
