"""Fast offline tests of the class-conditional MNIST generators (quick=True, 2,000 images)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gmv_store.datasets import load_mnist
from gmv_store.errors import BadInput
from gmv_store.generators import GENERATORS, cache_path, generator_class, load_or_train

ROOT = Path(__file__).resolve().parents[1]
TORCH_GENERATORS = [n for n in ("vae", "gan", "diffusion") if n in GENERATORS]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The quick models are tiny: one thread is faster, and far faster on a busy machine."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small():
    x, y = load_mnist("train")
    return x[:2000], y[:2000]


@pytest.fixture(scope="module")
def held_out():
    x, y = load_mnist("train")
    return x[-3000:], y[-3000:]


def _needs(name):
    if name != "gmm":
        pytest.importorskip("torch")


def test_registry_and_unknown_name(small, tmp_path):
    assert {"gmm", "vae", "gan"} <= set(GENERATORS)
    with pytest.raises(BadInput, match="unknown"):
        load_or_train("nope", *small, tmp_path)


def test_core_and_gmm_import_without_torch():
    code = ("import sys, gmv_store.generators, gmv_store.generators.gmm, gmv_store.generators.classifier; "
            "assert 'torch' not in sys.modules, 'torch imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("name", ["gmm", *TORCH_GENERATORS])
def test_train_sample_cache(name, small, tmp_path, monkeypatch):
    _needs(name)
    x, y = small
    gen = load_or_train(name, x, y, tmp_path, seed=0, quick=True)
    labels = np.repeat(np.arange(10), 3)
    s = gen.sample(labels, seed=1)
    assert s.shape == (30, 28, 28) and s.dtype == np.uint8
    assert s.std() > 0  # not a constant image
    assert np.array_equal(s, gen.sample(labels, seed=1))        # deterministic given the seed
    assert not np.array_equal(s, gen.sample(labels, seed=2))    # and the seed matters
    assert gen.sample(np.zeros(0, dtype=np.int64)).shape == (0, 28, 28)

    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [cache_path(name, x, y, tmp_path, seed=0, quick=True).name]   # no temp files left

    # second call: loaded from the cache (training would raise), identical samples
    cls = generator_class(name)
    monkeypatch.setattr(cls, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = load_or_train(name, x, y, tmp_path, seed=0, quick=True)
    assert np.array_equal(again.sample(labels, seed=1), s)


@pytest.mark.parametrize("name", ["gmm", *TORCH_GENERATORS])
def test_training_is_deterministic(name, small, tmp_path):
    _needs(name)
    x, y = small
    labels = np.arange(10)
    a = load_or_train(name, x, y, tmp_path / "a", seed=3, quick=True).sample(labels, seed=0)
    b = load_or_train(name, x, y, tmp_path / "b", seed=3, quick=True).sample(labels, seed=0)
    assert np.array_equal(a, b)


def test_cache_key_covers_seed_data_and_quick(small, tmp_path):
    x, y = small
    base = cache_path("gmm", x, y, tmp_path, seed=0, quick=True)
    assert cache_path("gmm", x, y, tmp_path, seed=0, quick=True) == base
    assert cache_path("gmm", x, y, tmp_path, seed=1, quick=True) != base
    assert cache_path("gmm", x, y, tmp_path, seed=0, quick=False) != base
    assert cache_path("gmm", x[:-1], y[:-1], tmp_path, seed=0, quick=True) != base
    y2 = y.copy()
    y2[0] = (y2[0] + 1) % 10
    assert cache_path("gmm", x, y2, tmp_path, seed=0, quick=True) != base
    x2 = x.copy()
    x2[0, 0, 0] ^= 1
    assert cache_path("gmm", x2, y, tmp_path, seed=0, quick=True) != base


def test_corrupt_cache_is_retrained(small, tmp_path):
    x, y = small
    path = cache_path("gmm", x, y, tmp_path, seed=0, quick=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an npz")
    gen = load_or_train("gmm", x, y, tmp_path, seed=0, quick=True)
    assert gen.sample(np.arange(10)).shape == (10, 28, 28)
    assert path.stat().st_size > 1000


def test_bad_inputs(small, tmp_path):
    x, y = small
    with pytest.raises(BadInput):
        load_or_train("gmm", x.astype(np.float32), y, tmp_path, quick=True)
    with pytest.raises(BadInput):
        load_or_train("gmm", x, y[:-1], tmp_path, quick=True)
    gen = load_or_train("gmm", x[y != 7], y[y != 7], tmp_path, quick=True)
    with pytest.raises(BadInput, match="class"):
        gen.sample(np.array([7]))
    with pytest.raises(BadInput):
        gen.sample(np.array([10]))


def test_gmm_samples_show_their_class(small, held_out, tmp_path):
    """A nearest-centroid classifier fit on other real images labels GMM samples as the class
    they were conditioned on far more often than chance (10%)."""
    from sklearn.neighbors import NearestCentroid

    x, y = small
    gen = load_or_train("gmm", x, y, tmp_path, seed=0, quick=True)
    labels = np.repeat(np.arange(10), 30)
    s = gen.sample(labels, seed=5)
    hx, hy = held_out
    nc = NearestCentroid().fit(hx.reshape(len(hx), -1) / 255.0, hy)
    real_acc = nc.score(hx[:1000].reshape(1000, -1) / 255.0, hy[:1000])
    acc = nc.score(s.reshape(len(s), -1) / 255.0, labels)
    assert acc > 0.6, (acc, real_acc)
    # every class is represented well above chance
    per_class = [(nc.predict(s[labels == c].reshape(-1, 784) / 255.0) == c).mean() for c in range(10)]
    assert min(per_class) > 0.2, per_class


def test_classifier_quick(small, held_out, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from gmv_store.generators import classifier as C

    x, y = small
    clf = C.load_or_train_classifier(x, y, tmp_path, seed=0, quick=True)
    hx, hy = held_out
    acc = clf.accuracy_on(hx[:1000], hy[:1000])
    assert 0.6 < acc <= 1.0, acc
    assert clf.predict(hx[:5]).shape == (5,)
    monkeypatch.setattr(C.MnistClassifier, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = C.load_or_train_classifier(x, y, tmp_path, seed=0, quick=True)
    assert again.accuracy_on(hx[:1000], hy[:1000]) == acc
