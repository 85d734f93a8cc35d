"""Benchmark the model backends on this machine (not a test; prints a table).

    python benchmarks/backends.py                 # every backend, 32 images of 128 px
    python benchmarks/backends.py --n 64 --only clip,effnet-lite0
    python benchmarks/backends.py --pipeline      # also ingest / valuation rates per profile

For each backend: milliseconds per image of the bare batched forward (model loading and a
warm-up batch excluded). Backends whose real weights are not on this machine run the same
architecture with seeded random weights (same cost), marked "random" in the table.
With --pipeline: images/s of `ingest` and of `value` (embed, quality, recall, re-rank,
writes) through a temporary store, for the basic and offline profiles and a few re-rankers.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # tests/ for the random-weights writers
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fake_weights import write_dreamsim_cache, write_maniqa_checkpoint  # noqa: E402

from gmv_store.backends import registry  # noqa: E402
from gmv_store.backends.profiles import get_profile, stages  # noqa: E402
from gmv_store.backends.runtime import pick_device  # noqa: E402
from gmv_store.errors import GmvError, MissingWeights  # noqa: E402


def photos(n: int, side: int) -> list[np.ndarray]:
    """n real photo crops (skimage.data), side x side RGB."""
    from PIL import Image
    from skimage import data

    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field"]
    rng = np.random.default_rng(0)
    out = []
    while len(out) < n:
        a = getattr(data, names[len(out) % len(names)])()[:, :, :3]
        h, w = a.shape[:2]
        s = int(min(h, w) * rng.uniform(0.4, 0.9))
        y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        out.append(np.asarray(Image.fromarray(a[y:y + s, x:x + s]).resize((side, side), Image.BICUBIC)))
    return out


def candidates(tmp: Path) -> list[tuple[str, str, str, dict, dict]]:
    """(label, kind, name, params for real weights, params for random weights or None)."""
    return [
        ("pixels", "embedder", "pixels", {}, None),
        ("effnet-lite0", "embedder", "effnet-lite0", {}, None),
        ("clip ViT-B-32", "embedder", "clip", {}, {"weights": "random"}),
        ("dreamsim ensemble", "embedder", "dreamsim", {"type": "ensemble"}, None),
        ("dreamsim open_clip_vitb32", "embedder", "dreamsim", {"type": "open_clip_vitb32"},
         {"type": "open_clip_vitb32", "cache_dir": "@dreamsim"}),
        ("l2 (rerank vector)", "rerank", "l2", {}, None),
        ("lpips alex 64px (vector)", "rerank", "lpips", {"size": 64}, {"size": 64, "trunk": "random"}),
        ("lpips alex 224px (pairwise)", "rerank", "lpips", {"size": 224}, {"size": 224, "trunk": "random"}),
        ("lpips vgg 64px (pairwise)", "rerank", "lpips", {"net": "vgg", "size": 64},
         {"net": "vgg", "size": 64, "trunk": "random"}),
        ("piqe", "quality", "piqe", {}, None),
        ("niqe", "quality", "niqe", {}, None),
        ("brisque", "quality", "brisque", {}, None),
        ("maniqa koniq, 2 crops", "quality", "maniqa", {"crops": 2}, {"crops": 2, "weights": "@maniqa"}),
    ]


def build(kind, name, params, tmp: Path):
    p = dict(params)
    if p.get("cache_dir") == "@dreamsim":
        d = tmp / "dreamsim"
        if not d.exists():
            d.mkdir()
            write_dreamsim_cache(d)
        p["cache_dir"] = str(d)
    if p.get("weights") == "@maniqa":
        p["weights"] = str(tmp / "maniqa_random.pth")
        if not Path(p["weights"]).exists():
            write_maniqa_checkpoint(Path(p["weights"]))
    b = registry.create(kind, name, p)
    b.fingerprint()  # resolves weights now: MissingWeights before timing
    return b


def forward_fn(b, images):
    if b.kind == "embedder":
        return lambda: b.embed(images)
    if b.kind == "quality":
        return lambda: b.score(images)
    v = b.vector_embedder()
    if v is not None:
        return lambda: v.embed(images)
    return lambda: b.pairwise(images[0], images)  # ms per (generated, candidate) pair


def bench_backends(args, tmp: Path) -> list[tuple[str, str, str]]:
    images = photos(args.n, args.side)
    rows = []
    for label, kind, name, real, rand in candidates(tmp):
        if args.only and not any(o in label for o in args.only.split(",")):
            continue
        weights = "real"
        try:
            b = build(kind, name, real, tmp)
        except MissingWeights:
            if rand is None:
                rows.append((label, "-", "no weights here"))
                continue
            b, weights = build(kind, name, rand, tmp), "random"
        except GmvError as e:
            rows.append((label, "-", str(e)[:60]))
            continue
        n = args.n if kind != "quality" or name != "maniqa" else min(args.n, 4)
        fn = forward_fn(b, images[:n])
        forward_fn(b, images[:2])()  # load + warm up
        t = time.perf_counter()
        fn()
        ms = (time.perf_counter() - t) * 1000 / n
        unit = "ms/pair" if kind == "rerank" and b.vector_embedder() is None else "ms/image"
        rows.append((label, weights, f"{ms:8.1f} {unit}"))
        print(f"  {label:32s} {weights:7s} {ms:8.1f} {unit}", file=sys.stderr)
    return rows


def bench_pipeline(args, tmp: Path) -> list[tuple[str, str, str]]:
    from gmv_store.ingest.pipeline import ingest
    from gmv_store.query.value import value
    from gmv_store.store import Store

    train = photos(args.train, args.side)
    gen = photos(args.train + args.m, args.side)[args.train:]
    np.savez(tmp / "train.npz", images=np.stack(train))
    np.savez(tmp / "gen.npz", images=np.stack(gen))
    setups = [("basic", None), ("offline", None),
              ("offline + lpips 64px", ("lpips", {"size": 64, "trunk": "random"})),
              ("offline + dreamsim open_clip_vitb32", ("dreamsim", {"type": "open_clip_vitb32",
                                                                    "cache_dir": str(tmp / "dreamsim")}))]
    rows = []
    for label, rerank in setups:
        if rerank and rerank[0] == "dreamsim" and not (tmp / "dreamsim").exists():
            (tmp / "dreamsim").mkdir()
            write_dreamsim_cache(tmp / "dreamsim")
        chosen = stages(get_profile(label.split(" ")[0]))
        if rerank:
            chosen["rerank"] = rerank
        folder = Path(tempfile.mkdtemp(dir=tmp))
        with Store.init(folder / "s", **chosen) as s:
            s.embed(train[:2])  # load models outside the timing
            s.quality.score(gen[:1])
            t = time.perf_counter()
            ingest(s, [str(tmp / "train.npz")])
            ti = time.perf_counter() - t
            t = time.perf_counter()
            value(s, [str(tmp / "gen.npz")], "bench", k=10, recall=100)
            tv = time.perf_counter() - t
        rows.append((f"pipeline {label}", "ingest", f"{args.train / ti:8.1f} images/s"))
        rows.append((f"pipeline {label}", "value", f"{args.m / tv:8.1f} images/s"))
        print(f"  {label}: ingest {args.train / ti:.1f}/s, value {args.m / tv:.1f}/s", file=sys.stderr)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="images per backend forward")
    ap.add_argument("--side", type=int, default=128, help="input image side in pixels")
    ap.add_argument("--only", default="", help="comma-separated substrings of backend labels")
    ap.add_argument("--pipeline", action="store_true", help="also time ingest and valuation through a store")
    ap.add_argument("--train", type=int, default=200, help="training images for --pipeline")
    ap.add_argument("--m", type=int, default=20, help="generated images for --pipeline")
    args = ap.parse_args()
    import torch

    device = pick_device("auto")
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.n} images of {args.side}px", file=sys.stderr)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = bench_backends(args, tmp)
        if args.pipeline:
            rows += bench_pipeline(args, tmp)
    print(f"\n| backend | weights | time ({device}) |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2].strip()} |")


if __name__ == "__main__":
    main()
