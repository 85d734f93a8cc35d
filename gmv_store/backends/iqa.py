"""What the no-reference quality backends share: the raw-score mappings, upscaling of small
images, the batched loop of pyiqa-style networks, and pyiqa's weights folder.

Every quality backend maps its raw score to q in (0, 1], higher = better, so that q_j > 0
(the paper's non-zero scores rule) and a store's values are comparable across runs:

| backend | raw score            | q_j                                   |
|---------|----------------------|---------------------------------------|
| maniqa  | ~[0, 1], higher best | clip(raw, 0.001, 1)                   |
| piqe    | [0, 100], lower best | (101 - clip(raw, 0, 100)) / 101       |
| brisque | ~[0, 100], lower best| (101 - clip(raw, 0, 100)) / 101       |
| niqe    | [0, ~100], lower best| 10 / (10 + max(raw, 0))               |

Images smaller than a metric needs are upscaled (bicubic) so that their shorter side is
`min_side`; images of one shape are scored in one batch. The metrics themselves live in
maniqa.py, piqe.py, niqe.py and brisque.py.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInput, MissingDependency
from ..progress import Progress
from .base import Quality
from .runtime import PIP_MODELS, TorchBackendMixin, group_by_shape, require, torch_threads
from .weights import WeightsSpec, torch_hub_dir, torch_hub_file

Q_FLOOR = 0.001


def inverted_100(raw: np.ndarray) -> np.ndarray:
    """Lower-is-better scores on a 0..100 scale -> (0, 1]: 0 -> 1, 100 (or worse) -> 1/101."""
    q: np.ndarray = (101.0 - np.clip(raw, 0.0, 100.0)) / 101.0
    return q


def inverted_open(raw: np.ndarray, half: float = 10.0) -> np.ndarray:
    """Lower-is-better scores on [0, inf) -> (0, 1]: 0 -> 1, `half` -> 0.5."""
    q: np.ndarray = half / (half + np.maximum(raw, 0.0))
    return q


def to_q(q: np.ndarray) -> np.ndarray:
    """Mapped scores as stored: float64 in [Q_FLOOR, 1]."""
    mapped: np.ndarray = np.clip(q, Q_FLOOR, 1.0).astype(np.float64)
    return mapped


def upscaled(px: np.ndarray, min_side: int) -> np.ndarray:
    """The image itself, or bicubically enlarged so that its shorter side is `min_side`."""
    from PIL import Image

    from ..images import to_pil

    h, w = px.shape[:2]
    if min(h, w) >= min_side:
        return px
    s = min_side / min(h, w)
    img = to_pil(px).resize((max(min_side, round(w * s)), max(min_side, round(h * s))), Image.Resampling.BICUBIC)
    return np.asarray(img).reshape(img.size[1], img.size[0], px.shape[2])


def upscaled_batch(batch: np.ndarray, min_side: int) -> np.ndarray:
    """`upscaled` of each image of an (n, H, W, C) uint8 batch of one shape, in one pass."""
    from .upscale import resize_bicubic

    h, w = batch.shape[1:3]
    if min(h, w) >= min_side:
        return batch
    s = min_side / min(h, w)
    return resize_bicubic(batch, max(min_side, round(h * s)), max(min_side, round(w * s)))


def check_min_side(owner: str, value: object, low: int) -> None:
    if not isinstance(value, int) or not low <= value <= 4096:
        raise BadInput(f"{owner}: min_side={value!r} must be an integer in {low}..4096")


# pyiqa's own package modules, stood in for while one of its light metrics is imported
_PYIQA_PACKAGES = ("pyiqa", "pyiqa.utils", "pyiqa.archs")
_PYIQA_IMPORT = threading.Lock()


def pyiqa_arch(arch: str) -> types.ModuleType:
    """pyiqa's `pyiqa.archs.<arch>` module, imported without running pyiqa's package
    `__init__`s when pyiqa is not imported yet.

    `import pyiqa` imports its whole API first, and through `pyiqa.utils.img_util` torchvision
    and `torch._dynamo`: ~3 s of CPU on this project's machine, more than torch itself, for
    modules that PIQE never uses (its arch needs torch and four small pyiqa modules). Empty
    stand-ins for the three packages are in `sys.modules` only while the arch's own modules
    load, then removed, so a later `import pyiqa` runs pyiqa's real `__init__`s and reuses the
    modules loaded here (its registry among them). The code run is pyiqa's own, unchanged.
    (A store has one quality metric: no other thread imports pyiqa while the stand-ins exist.)
    """
    name = f"pyiqa.archs.{arch}"
    with _PYIQA_IMPORT:
        if name in sys.modules:
            return sys.modules[name]
        require("torch")
        if "pyiqa" in sys.modules:  # the real package: nothing left to save
            return require(name, "pyiqa")
        spec = importlib.util.find_spec("pyiqa")
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependency(f"quality metrics need 'pyiqa' (not installed); fix: {PIP_MODELS}")
        root = Path(list(spec.submodule_search_locations)[0])
        standins = {}
        for package in _PYIQA_PACKAGES:
            module = types.ModuleType(package)
            module.__path__ = [str(root.joinpath(*package.split(".")[1:]))]
            module.__package__ = package
            standins[package] = sys.modules[package] = module
        try:
            return importlib.import_module(name)
        except ImportError:  # a pyiqa whose arch needs more of its package: imported in full
            for module_name in [m for m in sys.modules if m == "pyiqa" or m.startswith("pyiqa.")]:
                del sys.modules[module_name]
            standins = {}
            return require(name, "pyiqa")
        finally:
            for package, module in standins.items():
                if sys.modules.get(package) is module:
                    del sys.modules[package]


def pyiqa_file(owner: str, arch: str, key: str, filename: str, alternative: str,
               also: Sequence[Path] = ()) -> WeightsSpec:
    """One of pyiqa's checkpoints (`default_model_urls[key]` of pyiqa.archs.<arch>), which
    pyiqa itself keeps in `$TORCH_HOME/hub/pyiqa/`."""
    def download() -> str:
        from pyiqa.utils.download_util import load_file_from_url

        url = importlib.import_module(f"pyiqa.archs.{arch}").default_model_urls[key]
        path: str = load_file_from_url(url, model_dir=str(torch_hub_dir() / "pyiqa"))
        return path

    return torch_hub_file(owner, "pyiqa", filename, download, "huggingface.co", alternative, also)


class TorchNR(TorchBackendMixin, Quality):
    """A pyiqa-style network: (b, 3, H, W) in [0, 1] -> (b,) raw scores, mapped by `_map`."""

    # PIQE and NIQE are dozens of small tensor ops per batch: on this project's 2-core machine
    # at load ~8, PIQE took 4-14 ms per 28x28 image with torch's two intra-op threads (waits
    # at each op's barrier) and 1.2-1.6 ms with one, side by side. MANIQA's ViT keeps torch's.
    cpu_threads: int | None = 1

    def _net(self) -> Callable[..., Any]:
        raise NotImplementedError

    def _map(self, raw: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def prepare(self) -> None:
        self._net()

    def raw_scores(self, images: Sequence[np.ndarray]) -> np.ndarray:
        t = require("torch")
        net, device = self._net(), self.device
        out = np.empty(len(images), dtype=np.float64)
        bs = self.params["batch_size"]
        with Progress(self.name, len(images), enabled=None, transient=True) as bar, t.inference_mode(), \
                torch_threads(self.cpu_threads if device == "cpu" else None):
            for idx in group_by_shape(images).values():
                # a whole group enlarged at once, as `upscaled` would each image
                group = upscaled_batch(np.stack([images[i] for i in idx]), self.params["min_side"])
                for start in range(0, len(idx), bs):
                    chunk = group[start:start + bs]
                    x = t.from_numpy(chunk).permute(0, 3, 1, 2).to(device).float().div_(255.0)
                    if x.shape[1] == 1:
                        x = x.expand(-1, 3, -1, -1).contiguous()  # as images.to_rgb
                    out[idx[start:start + bs]] = net(x).double().reshape(len(chunk)).cpu().numpy()
                    bar.update(len(chunk))
        return out

    def score(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not len(images):
            return np.zeros(0, dtype=np.float64)
        return to_q(np.nan_to_num(self._map(self.raw_scores(images)), nan=Q_FLOOR))
