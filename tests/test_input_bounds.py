"""Inputs are bounded (issue 17): regular files only, a size cap before reading, duplicate tar
keys and cut archives as `skipped:` lines, float labels that are class numbers, compressed
shards refused by name, decode workers that die with their command, one decompression-bomb
limit, EXIF orientation applied. Each test reproduces one numbered case of the issue."""
import io
import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import ledger_rows, run, tiny_store
from PIL import Image
from shard_files import png, write_tar

from gmv_store import api
from gmv_store.datasets import load_mnist
from gmv_store.errors import BadInput
from gmv_store.images import MAX_FILE_BYTES, MAX_PIXELS, content_sha256, decode_bytes
from gmv_store.sources import load_source, readers, webdataset

# the bounds are stated in the command reference (moved there from README.md)
REFERENCE = (Path(__file__).resolve().parents[1] / "docs" / "commands.md").read_text()


def skipped(output):
    return [line for line in output.splitlines() if line.startswith("skipped:")]


@pytest.fixture
def store(tmp_path):
    return tiny_store(tmp_path)


def rows(store, q="SELECT source, label, sha256 FROM training_images ORDER BY rowid"):
    return ledger_rows(store, q)


def tar_of(path, members):
    """A tar of (name, bytes) members in the order given."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# ---------------------------------------------------------------- 5: float label columns


def test_float_labels_whole_values_are_integers_others_refused(tmp_path, store, mnist_small):
    x, y, _, _ = mnist_small
    # pandas: an integer column with a missing value becomes float64; NaN is written as null
    df = pd.DataFrame({"image": [png(a) for a in x[:10]], "label": y[:10].astype(float)})
    df.loc[3, "label"] = np.nan
    from_pandas = tmp_path / "pandas.parquet"
    df.to_parquet(from_pandas)
    # a real NaN (not null), and a fraction: the column is no class numbers
    nan_file, frac_file = tmp_path / "nan.parquet", tmp_path / "frac.parquet"
    for f, bad in ((nan_file, float("nan")), (frac_file, 2.5)):
        labels = y[10:20].astype(float)
        labels[4] = bad
        pq.write_table(pa.table({"image": pa.array([png(a) for a in x[10:20]], pa.binary()),
                                 "label": pa.array(labels, from_pandas=False)}), f)
    npz_whole, npz_nan = tmp_path / "whole.npz", tmp_path / "nan.npz"
    np.savez(npz_whole, images=x[20:25], labels=y[20:25].astype(np.float32))
    nan_labels = y[25:30].astype(float)
    nan_labels[[1, 3]] = np.nan
    np.savez(npz_nan, images=x[25:30], labels=nan_labels)
    docs = [{"label": float(y[30 + i]) + (0.5 if i == 2 else 0.0)} for i in range(4)]
    shard = write_tar(tmp_path / "j.tar", x[30:34], None, json_docs=docs)

    out = run("ingest", from_pandas, nan_file, frac_file, npz_whole, npz_nan, shard, "--store", store,
              "--workers", "0", code=3)
    assert skipped(out) == [
        f"skipped: {nan_file}: label column 'label' holds nan at row 4, not a whole number; fix: store whole-number "
        "labels (pandas: .astype('Int64')) or text labels, or name another column with --label-column",
        f"skipped: {frac_file}: label column 'label' holds 2.5 at row 4, not a whole number; fix: store whole-number "
        "labels (pandas: .astype('Int64')) or text labels, or name another column with --label-column",
        f"skipped: {npz_nan}: 2 of 5 labels are not whole numbers (labels[1] is nan); fix: store whole-number labels "
        "(pandas: .astype('Int64')) or text labels",
        f"skipped: {shard}#000002: .json label 'label' holds {float(y[32]) + 0.5!r}, not a whole number; fix: store "
        "whole-number labels (pandas: .astype('Int64')) or text labels",
    ]
    got = {g["source"]: g["label"] for g in rows(store)}
    expect = {f"{from_pandas}#{i}": (None if i == 3 else str(y[i])) for i in range(10)}  # null: no label
    expect.update({f"{npz_whole}#{i}": str(y[20 + i]) for i in range(5)})
    expect.update({f"{shard}#{i:06d}": str(y[30 + i]) for i in (0, 1, 3)})
    assert got == expect  # "7", never "7.0"
    # a recorded source given alone is checked the same way
    out = run("ingest", f"{frac_file}#4", f"{frac_file}#5", "--store", store, code=3)
    assert skipped(out) == [f"skipped: {frac_file}#4: label column 'label' holds 2.5, not a whole number; fix: store "
                            "whole-number labels (pandas: .astype('Int64')) or text labels"]
    assert rows(store)[-1] == {"source": f"{frac_file}#5", "label": str(y[15]),
                               "sha256": content_sha256(x[15][:, :, None])}


# ---------------------------------------------------------------- 6: duplicate keys in a tar


def test_duplicate_tar_keys_adjacent_and_not(tmp_path, store, mnist_small):
    x, _, _, _ = mnist_small
    adjacent = tar_of(tmp_path / "adj.tar", [("A.png", png(x[0])), ("A.cls", b"1"), ("A.png", png(x[1])),
                                             ("B.png", png(x[2]))])
    apart = tar_of(tmp_path / "apart.tar", [("A.png", png(x[3])), ("B.png", png(x[4])), ("A.png", png(x[5])),
                                            ("A.cls", b"9"), ("C.png", png(x[6]))])
    out = run("ingest", adjacent, apart, "--store", store, code=3)
    assert skipped(out) == [
        f"skipped: {adjacent}#A: a second .png member in this sample (member A.png); only the first is read; "
        "fix: re-write the shard with one key per sample",
        f"skipped: {apart}#A: a later sample repeats this key (member A.png); only the first is read; fix: "
        "re-write the shard with one key per sample",
    ]
    got = rows(store)
    assert [(g["source"], g["label"]) for g in got] == [
        (f"{adjacent}#A", "1"), (f"{adjacent}#B", None), (f"{apart}#A", None), (f"{apart}#B", None),
        (f"{apart}#C", None)]
    assert [g["sha256"] for g in got] == [content_sha256(x[i][:, :, None]) for i in (0, 2, 3, 4, 6)]
    for g in got:  # reading a source back gives the image stored under it: the first with the key
        assert content_sha256(load_source(g["source"])) == g["sha256"]
    assert webdataset.index_size(apart) == 3


# ---------------------------------------------------------------- 8: workers die with a killed ingest


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        try:
            kids = [int(k) for k in Path(f"/proc/{todo.pop()}/task").glob("*/children") for k in k.read_text().split()]
        except OSError:
            continue
        out += kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.skipif(not Path(f"/proc/self/task/{os.getpid()}/children").exists(),
                    reason="reads process trees from Linux /proc (CONFIG_PROC_CHILDREN)")
def test_killed_ingest_takes_its_decode_workers_along(tmp_path, store):
    """SIGKILL `gmv ingest --workers 2` from outside while this process holds its stdout and
    stderr pipes and has not collected its exit status (a zombie): the reads return at once,
    because the workers that inherited those pipes exit too."""
    x, _ = load_mnist("train")
    data = tmp_path / "big.npy"
    np.save(data, x[:30000])  # past the first 1,024 images decoding runs in the workers
    p = subprocess.Popen([sys.executable, "-m", "gmv_store", "ingest", str(data), "--workers", "2", "--store",
                          str(store)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and p.poll() is None:
            workers = [d for d in _descendants(p.pid) if b"forkserver" in Path(f"/proc/{d}/cmdline").read_bytes()]
            if len(workers) >= 2:  # the fork server and at least one worker
                break
            time.sleep(0.05)
        assert p.poll() is None, ("the ingest ended before its workers were seen", p.communicate())
        family = _descendants(p.pid)
        os.kill(p.pid, signal.SIGKILL)
        got = {}
        reader = threading.Thread(target=lambda: got.update(out=p.stdout.read(), err=p.stderr.read()), daemon=True)
        start = time.monotonic()
        reader.start()
        reader.join(20)
        waited = time.monotonic() - start
        assert not reader.is_alive(), f"the caller's read still blocks {waited:.0f} s after the kill"
        assert waited < 10, waited
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(d) for d in family):
            time.sleep(0.1)
        assert not [d for d in family if _alive(d)], "processes of the killed ingest are still running"
    finally:
        for d in set(_descendants(p.pid)) | set(locals().get("family", ())):
            try:
                os.kill(d, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.kill()
        p.wait()


# ---------------------------------------------------------------- 9: a truncated .npz


def test_truncated_npz_is_one_line_and_later_inputs_go_in(tmp_path, store, mnist_small):
    x, y, xt, yt = mnist_small
    good = tmp_path / "train.npz"
    np.savez(good, images=x[:100], labels=y[:100])
    raw = good.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(raw[:len(raw) // 2])  # no central directory: not a zip any more
    damaged = tmp_path / "damaged.npz"  # the directory intact, the image data overwritten
    np.savez_compressed(damaged, images=x[100:150], labels=y[100:150])
    b = bytearray(damaged.read_bytes())
    b[200:1200] = b"\0" * 1000
    damaged.write_bytes(bytes(b))
    out = run("ingest", cut, damaged, good, "--store", store, code=3)
    lines = skipped(out)
    assert len(lines) == 2, lines
    assert lines[0] == f"skipped: {cut}: unreadable array file (File is not a zip file); fix: re-save it with numpy"
    assert lines[1].startswith(f"skipped: {damaged}: unreadable array file (")
    assert lines[1].endswith("fix: re-save it with numpy")
    assert "ingested 100 new" in out

    gen = tmp_path / "gen.npz"
    np.savez(gen, images=xt[:5], labels=yt[:5])
    out = run("value", cut, gen, "--set", "s", "--k", "5", "--store", store, code=3)
    assert skipped(out) == [lines[0]]
    assert api.sql(store, "SELECT count(*) FROM generated_images")[1] == [(5,)]
    out = run("match", cut, gen, "--k", "3", "--json", "--store", store, code=3)
    assert skipped(out) == [lines[0]]
    assert len(json.loads(out[out.index("["):out.rindex("]") + 1])) == 5


# ---------------------------------------------------------------- 11: FIFOs, devices, sizes


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="needs FIFOs and /dev/zero")
def test_fifos_and_devices_refused_also_through_symlinks(tmp_path, store, mnist_small):
    """In a subprocess with a time limit: a build that reads a FIFO blocks forever."""
    x, _, _, _ = mnist_small
    d = tmp_path / "in"
    d.mkdir()
    os.mkfifo(d / "fifo.png")
    (d / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo.npz")
    Image.fromarray(x[0]).save(d / "good.png")
    args = [tmp_path / "fifo.npz", f"{tmp_path / 'fifo.npz'}#0", d]
    r = subprocess.run([sys.executable, "-m", "gmv_store", "ingest", *map(str, args), "--workers", "0", "--store",
                        str(store)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    fix = "fix: copy the data into a file and give its path"
    assert skipped(r.stderr) == [
        f"skipped: {tmp_path / 'fifo.npz'}: not a regular file (a FIFO); {fix}",
        f"skipped: {tmp_path / 'fifo.npz'}#0: not a regular file (a FIFO); {fix}",
        f"skipped: {d / 'fifo.png'}: not a regular file (a FIFO); {fix}",
        f"skipped: {d / 'zero.png'}: not a regular file (a character device, through a symlink to /dev/zero); {fix}",
    ]
    assert [g["source"] for g in rows(store)] == [str(d / "good.png")]
    for source in (d / "fifo.png", d / "zero.png", f"{tmp_path / 'fifo.npz'}#3"):  # reading back is refused too
        with pytest.raises(BadInput, match="not a regular file"):
            load_source(str(source))


def test_size_caps_before_reading(tmp_path, store, mnist_small, monkeypatch):
    x, y, _, _ = mnist_small
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:  # sparse: no disk used, and nothing may read it
        f.truncate(MAX_FILE_BYTES + 1)
    out = run("ingest", huge, "--store", store, "--workers", "0", code=3)
    assert skipped(out) == [f"skipped: {huge}: {MAX_FILE_BYTES + 1:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit "
                            "of one image file; fix: downscale or re-encode it"]
    # a tar member over the cap (made small here) is refused unread, the rest of the shard kept
    monkeypatch.setattr(webdataset, "MAX_FILE_BYTES", 400)
    shard = tar_of(tmp_path / "s.tar", [("a.png", png(x[0])), ("b.png", b"\0" * 401), ("b.cls", b"1"),
                                        ("c.png", png(x[1]))])
    assert len(png(x[0])) <= 400 and len(png(x[1])) <= 400
    out = run("ingest", shard, "--store", store, "--workers", "0", code=3)
    assert skipped(out) == [f"skipped: {shard}#b: member b.png: 401 bytes, over the 400-byte limit of one image file; "
                            "fix: downscale or re-encode it"]
    with pytest.raises(BadInput, match="over the 400-byte limit"):
        load_source(f"{shard}#b")
    # an .npz is read whole: over half the memory it is refused before reading, naming the fix
    monkeypatch.setattr(readers, "half_memory", lambda: 1000)
    big = tmp_path / "big.npz"
    np.savez(big, images=x[:10], labels=y[:10])
    out = run("ingest", big, "--store", store, "--workers", "0", code=3)
    assert skipped(out) == [f"skipped: {big}: its images take 0.0 GB in memory, over half of this machine's 0.0 GB; "
                            "fix: save them as .npy (np.save), which is memory-mapped"]


# ---------------------------------------------------------------- 14: compressed shards


def test_compressed_shards_refused_by_name(tmp_path, store, mnist_small):
    x, y, _, _ = mnist_small
    plain = write_tar(tmp_path / "s.tar", x[:3], y[:3])
    d = tmp_path / "shards"
    d.mkdir()
    gz = d / "s.tar.gz"
    subprocess.run(["tar", "czf", str(gz), "-C", str(tmp_path), "s.tar"], check=True)
    tgz = tmp_path / "s.tgz"
    tgz.write_bytes(gz.read_bytes())
    out = run("ingest", tgz, f"{tgz}#000001", d, plain, "--store", store, code=3)
    why = ("a compressed tar shard; gmv reads plain .tar shards (it reads one image back by its offset in the file, "
           "which a compressed stream lacks); fix: decompress it first (gunzip -k, unxz -k, zstd -d) and give the .tar")
    assert skipped(out) == [f"skipped: {tgz}: {why}", f"skipped: {tgz}#000001: {why}", f"skipped: {gz}: {why}"]
    assert "ingested 3 new" in out


# ---------------------------------------------------------------- 15: sources in messages


def test_missing_image_member_and_non_number_key_are_named(tmp_path, store, mnist_small):
    x, y, _, _ = mnist_small
    shard = write_tar(tmp_path / "s.tar", x[:2], y[:2])
    out = run("ingest", shard, "--image-column", "jpg", "--store", store, code=3)
    fix = "fix: give each sample a .png/.jpg/.jpeg/.webp member, or pick one with --image-column"
    assert skipped(out) == [f"skipped: {shard}#{k}: no .jpg member (members: .png, .cls); {fix}"
                            for k in ("000000", "000001")]
    batch = tmp_path / "batch.npz"
    np.savez(batch, images=x[:4])
    out = run("ingest", f"{batch}#abc", f"{batch}#9", f"{batch}#2", "--store", store, code=3)
    assert skipped(out) == [
        f"skipped: {batch}#abc: 'abc' is not an image number; fix: give one of #0 to #3 (the array holds 4 images)",
        f"skipped: {batch}#9: index out of range (the array holds 4 images)"]
    assert [g["source"] for g in rows(store)] == [f"{batch}#2"]


# ---------------------------------------------------------------- 16: the decompression-bomb limit


def _png_header(w: int, h: int) -> bytes:
    """A PNG that declares w×h pixels and holds none: refused as it opens, before any decoding."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_bomb_message_and_readme_name_one_limit():
    limit = f"{MAX_PIXELS // 10**6} megapixels"
    assert f"over {limit}" in REFERENCE
    for w, h in ((9000, 8000), (12000, 12000)):  # PIL warns over the limit and raises over twice it
        with pytest.raises(BadInput) as e:
            decode_bytes(_png_header(w, h), "bomb.png")
        assert str(e.value) == (f"bomb.png: {w * h:,} pixels, over the limit of {MAX_PIXELS:,} pixels ({limit}) that "
                                "guards against decompression bombs; fix: downscale it first")


# ---------------------------------------------------------------- 19: EXIF orientation


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_is_applied(fmt):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    opts = {"quality": 100} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "WEBP":
        opts["lossless"] = True
    plain = io.BytesIO()
    Image.fromarray(a).save(plain, format=fmt, **opts)
    upright = decode_bytes(plain.getvalue(), "plain")
    assert upright.shape == (20, 30, 3)
    # the camera's tags: 6 = shown turned 90° clockwise, 3 = 180°, 8 = 90° counter-clockwise, 2 = mirrored
    for tag, shown in ((6, np.rot90(upright, -1)), (3, np.rot90(upright, 2)), (8, np.rot90(upright, 1)),
                       (2, upright[:, ::-1]), (1, upright)):
        exif = Image.Exif()
        exif[0x0112] = tag
        tagged = io.BytesIO()
        Image.fromarray(a).save(tagged, format=fmt, exif=exif, **opts)
        got = decode_bytes(tagged.getvalue(), "tagged")
        assert got.shape == shown.shape, (tag, got.shape)
        assert np.abs(got.astype(int) - shown.astype(int)).max() <= 2, tag  # JPEG: the same encoder, near-equal
    assert "EXIF orientation" in REFERENCE
