"""A small valued store for the web UI, `gmv match` and `gmv export` tests: 600 real MNIST
training images from two owners (rows of .npz files), 40 MNIST test images as labelled PNG
files valued into set `s1` (k=10), and 12 of them into a set whose name needs escaping in a
URL (`runs/a b`, k=5). Basic backends: no torch."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from gmv_store import api
from gmv_store.images import save_png

SLASH_SET = "runs/a b"


def build(root: Path, mnist_small) -> dict:
    x, y, xt, yt = mnist_small
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "alice.npz", images=x[:400], labels=y[:400])
    np.savez(root / "bob.npz", images=x[400:], labels=y[400:])
    gen = root / "gen"
    files = []
    for i, (img, lab) in enumerate(zip(xt, yt)):
        (gen / str(lab)).mkdir(parents=True, exist_ok=True)
        f = gen / str(lab) / f"{i:03d}.png"
        save_png(img[:, :, None], f)
        files.append(f)
    store = root / "store"
    api.init_store(store, "basic", params={"embedder": {"size": 16}, "rerank": {"size": 28}})
    api.ingest(store, [root / "alice.npz"], owner="alice")
    api.ingest(store, [root / "bob.npz"], owner="bob")
    api.value(store, [gen], "s1", k=10, label_from="parent")
    api.value(store, files[:12], SLASH_SET, k=5, label_from="parent")
    return {"root": root, "store": store, "gen_files": files, "labels": [str(v) for v in yt]}


def fingerprint(store: Path) -> dict[str, str]:
    """Every file of the store by content, except the writer lock's pid note. The JSON files
    of the Qdrant engine (edge_config.json, segment.json) are compared parsed: the engine
    rewrites them when it loads a collection, with the same content in another key order."""
    out = {}
    for f in sorted(store.rglob("*")):
        if not f.is_file() or f.name == "writer.lock":
            continue
        rel = str(f.relative_to(store))
        if f.suffix == ".json" and "qdrant" in rel:
            out[rel] = json.dumps(json.loads(f.read_text()), sort_keys=True)
        else:
            out[rel] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out
