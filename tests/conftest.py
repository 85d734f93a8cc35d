import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from gmv_store.datasets import load_mnist


@pytest.fixture(scope="session")
def mnist_small():
    """600 real MNIST training images (60 per class) and 40 test images, with labels."""
    x, y = load_mnist("train")
    idx = np.concatenate([np.flatnonzero(y == c)[:60] for c in range(10)])
    xt, yt = load_mnist("test")
    return x[idx], y[idx], xt[:40], yt[:40]


@pytest.fixture
def data_files(tmp_path, mnist_small):
    x, y, xt, yt = mnist_small
    train = tmp_path / "train.npz"
    gen = tmp_path / "gen.npz"
    np.savez(train, images=x, labels=y)
    np.savez(gen, images=xt, labels=yt)
    return train, gen


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "store"


@pytest.fixture(scope="module")
def client(small):
    """The web UI in-process (Starlette's TestClient) over the module's own `small` store."""
    from starlette.testclient import TestClient

    from gmv_store.web import Settings, create_app

    with TestClient(create_app(Settings(store=small["store"]))) as c:
        yield c
