"""Ingest of precomputed vectors (`gmv ingest --vectors`, docs/precomputed.md), side by side
in one run (ratios, not absolute times, carry over from a shared machine):

  1. without images: N × 768-d float16 vectors in clip-retrieval's layout (img_emb/ +
     metadata/ with a `key` id column) through `api.ingest(vectors=..., id_column="key")`,
     against the bare engine upsert of the same points (the same ids, float32 vectors and
     payloads, the same batch size and collection settings, nothing else: no files, no
     ledger, no journal). Goal: ingest ≥ 0.8 of the bare upsert's rate. Rounds alternate.
  2. with images: the same vectors for WebDataset shards of augmented MNIST joined on `key`
     (--images), against the read+decode+hash floor of those shards (nothing written).

    .venv/bin/python benchmarks/precomputed.py [--n 1000000] [--images 20000] [--rounds 1] [--dir DIR]
    .venv/bin/python benchmarks/precomputed.py --quick     # seconds: 3,000 vectors, 1,000 images
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from gmv_store import api  # noqa: E402

DIM = 768
FILE_ROWS = 100_000  # rows per img_emb_N.npy (clip-retrieval writes one file per output partition)


def write_layout(folder: Path, n: int, dim: int = DIM, keys=None, seed: int = 0) -> float:
    """clip-retrieval's layout of n unit-norm float16 vectors; returns the seconds it took."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = time.perf_counter()
    (folder / "img_emb").mkdir(parents=True, exist_ok=True)
    (folder / "metadata").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    for part, start in enumerate(range(0, n, FILE_ROWS)):
        m = min(FILE_ROWS, n - start)
        v = rng.standard_normal((m, dim), dtype=np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        np.save(folder / "img_emb" / f"img_emb_{part}.npy", v.astype(np.float16))
        k = keys[start:start + m] if keys is not None else [f"{start + i:09d}" for i in range(m)]
        pq.write_table(pa.table({"key": k, "caption": [f"caption {start + i}" for i in range(m)]}),
                       folder / "metadata" / f"metadata_{part}.parquet")
    return time.perf_counter() - t


def bare_upsert(folder: Path, work: Path, batch: int) -> tuple[float, float]:
    """Seconds in the engine's upsert alone: the points ingest writes (ids, float32 vectors,
    payloads built as ingest builds them) into a fresh collection of the same settings, one
    batch after another on one thread. Timed: making the engine's `Point`s and writing them
    (`prepare_upsert` + `write_prepared`); not timed: reading the files, the payload dicts,
    and the disk-room check (ingest does it, once per batch). Returns (wall, CPU) seconds: on
    a machine shared with other jobs the process's CPU time is the steadier of the two."""
    import pyarrow.parquet as pq

    from gmv_store.config import IndexConfig
    from gmv_store.ingest.write import SEQ
    from gmv_store.ledger.records import training_payload
    from gmv_store.sources.vectors import id_sha256
    from gmv_store.vectors import VectorSpec, point_id
    from gmv_store.vectors.edge import EdgeVectorStore

    d = work / "bare"
    shutil.rmtree(d, ignore_errors=True)
    vs = EdgeVectorStore(d)
    vs.ensure_collection("training", {"recall": VectorSpec(DIM, "cosine")}, IndexConfig())
    vs.ensure_payload_index("training", SEQ)
    now = datetime.now()
    spent = cpu = 0.0
    try:
        for npy in sorted((folder / "img_emb").glob("img_emb_*.npy"), key=lambda p: int(p.stem.rsplit("_", 1)[1])):
            vecs = np.load(npy, mmap_mode="r")
            table = pq.read_table(folder / "metadata" / npy.name.replace("img_emb", "metadata").replace(".npy", ".parquet"))
            keys, caps = table.column("key").to_pylist(), table.column("caption").to_pylist()
            for a in range(0, len(keys), batch):
                shas = [id_sha256(k) for k in keys[a:a + batch]]
                ids = [point_id(s) for s in shas]
                payloads = [training_payload(s[:16], s, k, None, None, {"key": k, "caption": c}, now, (0, 0, 0))
                            | {SEQ: 1} for s, k, c in zip(shas, keys[a:a + batch], caps[a:a + batch])]
                v = {"recall": np.asarray(vecs[a:a + batch], np.float32)}
                t, c = time.perf_counter(), time.process_time()  # the engine's work: points made, then written
                vs.write_prepared(vs.prepare_upsert("training", ids, v, payloads))
                spent += time.perf_counter() - t
                cpu += time.process_time() - c
    finally:
        vs.close()
        shutil.rmtree(d, ignore_errors=True)
    return spent, cpu


def ingest_vectors(folder: Path, work: Path, images: list[str] | None = None) -> tuple[float, float, Any]:
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    api.init_store(store, "basic", embedder="precomputed", rerank="none", params={"embedder": {"dim": DIM}})
    vo = {"path": str(folder), **({"images": images} if images else {"id_column": "key"})}
    c = time.process_time()
    r = api.ingest(store, [], vectors=vo, index=False, refresh=False)
    cpu = time.process_time() - c
    shutil.rmtree(store, ignore_errors=True)
    return r.seconds, cpu, r


def read_hash_floor(shards: list[str]) -> float:
    """Seconds to read, decode and hash the shards' images (ingest's identity work), nothing written."""
    from gmv_store.sources import InputReport, read_batches

    t = time.perf_counter()
    for _ in read_batches(shards, None, 2048, InputReport(), workers=0):
        pass
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors without images")
    ap.add_argument("--images", type=int, default=20_000, help="vectors with images (WebDataset shards)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="3,000 vectors, 1,000 images (the test suite runs this)")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed)")
    a = ap.parse_args()
    if a.quick:
        a.n, a.images = 3_000, 1_000
    work = Path(a.dir or tempfile.mkdtemp(prefix="gmv-precomputed-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    from gmv_store.ingest.vectors_in import VECTOR_BATCH

    res: dict = {"n": a.n, "dim": DIM, "dtype": "float16", "batch": VECTOR_BATCH}
    try:
        folder = work / f"emb-{a.n}"
        res["write_layout_s"] = write_layout(folder, a.n)
        print(f"wrote {a.n:,} x {DIM}-d float16 vectors (clip-retrieval layout) in {res['write_layout_s']:.1f}s", flush=True)
        bare, ing, bare_cpu, ing_cpu = [], [], [], []
        for r in range(a.rounds):
            b, bc = bare_upsert(folder, work, VECTOR_BATCH)
            s, sc, rep = ingest_vectors(folder, work)
            assert rep.added == a.n and not rep.problems, rep.problems[:3]
            bare.append(b)
            bare_cpu.append(bc)
            ing.append(s)
            ing_cpu.append(sc)
            print(f"  round {r}: bare engine upsert {a.n / b:,.0f} points/s ({b:.1f}s, CPU {bc:.1f}s), ingest --vectors "
                  f"{a.n / s:,.0f} rows/s ({s:.1f}s, CPU {sc:.1f}s; the writer busy {rep.write_seconds:.1f}s)", flush=True)
        res["bare_upsert_s"], res["ingest_s"] = float(np.median(bare)), float(np.median(ing))
        res["bare_upsert_cpu_s"], res["ingest_cpu_s"] = float(np.median(bare_cpu)), float(np.median(ing_cpu))
        res["ratio"] = res["bare_upsert_s"] / res["ingest_s"]
        res["cpu_ratio"] = res["bare_upsert_cpu_s"] / res["ingest_cpu_s"]
        print(f"ingest --vectors / bare upsert (rate ratio, goal >= 0.8): {res['ratio']:.2f} (medians; by the "
              f"process's CPU time {res['cpu_ratio']:.2f})", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        if a.images:
            from make_shards import make_augmented_mnist

            from gmv_store.sources.webdataset import index_size

            shards_dir = work / f"tar-{a.images}"
            make_augmented_mnist(a.images, shards_dir, "webdataset")
            shards = sorted(str(p) for p in shards_dir.glob("*.tar"))
            from gmv_store.sources.base import file_stamp
            from gmv_store.sources.webdataset import _index

            keys = [k for s in shards for k in _index(*file_stamp(Path(s)))]
            assert len(keys) == a.images == sum(index_size(s) for s in shards)
            ifolder = work / f"emb-img-{a.images}"
            write_layout(ifolder, a.images, keys=keys, seed=1)
            floor = read_hash_floor(shards)
            s, _, rep = ingest_vectors(ifolder, work, images=shards)
            assert rep.added == a.images and not rep.problems, rep.problems[:3]
            res.update({"images": a.images, "read_hash_floor_s": floor, "ingest_images_s": s,
                        "images_ratio": floor / s})
            print(f"with images ({a.images:,} WebDataset samples joined on key): read+decode+hash floor "
                  f"{a.images / floor:,.0f}/s, ingest --vectors --images {a.images / s:,.0f}/s, ratio "
                  f"{floor / s:.2f}", flush=True)
    finally:
        if a.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
