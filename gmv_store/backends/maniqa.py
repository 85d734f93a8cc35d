"""MANIQA no-reference quality (pyiqa), the paper's: raw ~[0, 1], higher better.

pyiqa's MANIQA constructor downloads timm's ImageNet ViT backbone even with
`pretrained=False`; gmv builds it without that download (the MANIQA checkpoint holds every
parameter, the ViT included) and then loads the checkpoint strictly.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInput, MissingWeights
from .iqa import Q_FLOOR, TorchNR, check_min_side, pyiqa_file
from .runtime import cached_model, check_choice, quiet, require
from .weights import ResolvedWeights, WeightsSpec

MANIQA_FILES = {"koniq": "ckpt_koniq10k.pt", "kadid": "ckpt_kadid10k.pt", "pipal": "MANIQA_PIPAL-ae6d356b.pth"}
MANIQA_SCALE = {"koniq": 0.8, "kadid": 0.8, "pipal": 0.13}  # pyiqa's metric options


class _TimmWithoutDownload:
    """Stands in for the `timm` module inside pyiqa's maniqa_arch while a MANIQA is built.

    MANIQA's constructor hard-codes `timm.create_model('vit_base_patch8_224', pretrained=True)`,
    an ImageNet download (impossible offline) whose values the MANIQA checkpoint loaded right
    after overwrites entirely; this forwards every call to timm but that flag.
    """

    def __init__(self, timm: Any) -> None:  # the timm module
        self._timm = timm

    def create_model(self, name: str, pretrained: bool = False, **kw: Any) -> Any:
        return self._timm.create_model(name, pretrained=False, **kw)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._timm, attr)


# The stand-in is a module global of pyiqa's maniqa_arch: one build at a time.
_BUILD_LOCK = threading.Lock()


def build_maniqa(dataset: str, crops: int) -> Any:
    """pyiqa's MANIQA network with random values and no download (see `_TimmWithoutDownload`)."""
    require("pyiqa")
    from pyiqa.archs import maniqa_arch

    with _BUILD_LOCK:
        timm = maniqa_arch.timm
        maniqa_arch.timm = _TimmWithoutDownload(timm)
        try:
            return maniqa_arch.MANIQA(train_dataset=dataset, test_sample=crops, scale=MANIQA_SCALE[dataset],
                                      pretrained=False)
        finally:
            maniqa_arch.timm = timm


def load_maniqa_checkpoint(net: Any, path: Path) -> None:
    """Either layout pyiqa loads: `{'params': state_dict}` (its `pretrained_model_path`
    files) or a bare state dict (its hub files); 'module.' prefixes removed as pyiqa does."""
    t = require("torch")
    from pyiqa.archs.arch_util import clean_state_dict

    try:
        sd = t.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # older pickles; pyiqa itself loads with weights_only=False
        sd = t.load(str(path), map_location="cpu", weights_only=False)
    if isinstance(sd, dict) and "params" in sd:
        sd = sd["params"]
    try:
        net.load_state_dict(clean_state_dict(sd), strict=True)
    except RuntimeError as e:
        raise MissingWeights(
            f"quality 'maniqa': {path} is not a MANIQA checkpoint ({str(e).splitlines()[0][:160]}); "
            f"fix: use one of pyiqa's {', '.join(MANIQA_FILES.values())}"
        ) from None


class ManiqaQuality(ResolvedWeights, TorchNR):
    name = "maniqa"
    description = (
        "MANIQA (pyiqa; checkpoints koniq, kadid, pipal), the paper's quality; raw ~[0,1] "
        "higher better -> q = clip(raw, 0.001, 1)"
    )
    defaults = {"dataset": "koniq", "crops": 20, "weights": "", "min_side": 224, "device": "auto",
                "batch_size": 4}
    random_weights = True
    cpu_threads = None  # large matrix products: torch's own thread count

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        owner = "quality 'maniqa'"
        self._check_runtime(owner)
        check_choice(owner, "dataset", self.params["dataset"], tuple(MANIQA_FILES))
        crops = self.params["crops"]
        if not isinstance(crops, int) or not 1 <= crops <= 64:
            raise BadInput(f"{owner}: crops={crops!r} must be an integer in 1..64 (pyiqa's default is 20)")
        check_min_side(owner, self.params["min_side"], 224)

    def weights_spec(self) -> WeightsSpec:
        ds = self.params["dataset"]
        return pyiqa_file(f"quality 'maniqa' ({ds})", "maniqa_arch", ds, MANIQA_FILES[ds],
                          "--quality piqe (or niqe, brisque)")

    def _net(self) -> Any:
        path, device = self.weights_path(), self.device
        ds, crops = self.params["dataset"], self.params["crops"]

        def build() -> Any:
            if path is None:
                require("torch").manual_seed(0)
            with quiet():
                net = build_maniqa(ds, crops)
                if path is not None:
                    load_maniqa_checkpoint(net, path)
            return net.eval().to(device)

        return cached_model(("maniqa", ds, crops, *self.weights_key(), device), build)

    def _map(self, raw: np.ndarray) -> np.ndarray:
        q: np.ndarray = np.clip(raw, Q_FLOOR, 1.0)
        return q
