"""PIQE no-reference quality (pyiqa): no weights at all; raw [0, 100], lower better."""
from __future__ import annotations

from typing import Any

import numpy as np

from .iqa import TorchNR, check_min_side, inverted_100, pyiqa_arch
from .runtime import cached_model


class PiqeQuality(TorchNR):
    name = "piqe"
    description = "PIQE (pyiqa, no weights): raw [0,100] lower better -> q = (101 - raw) / 101"
    defaults = {"min_side": 64, "device": "auto", "batch_size": 32}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._check_runtime("quality 'piqe'")
        check_min_side("quality 'piqe'", self.params["min_side"], 32)

    def _net(self) -> Any:
        def build() -> Any:
            # pyiqa's PIQE without the rest of pyiqa's imports (torchvision, torch._dynamo)
            return pyiqa_arch("piqe_arch").PIQE().eval().to(self.device)

        return cached_model(("piqe", self.device), build)

    def _map(self, raw: np.ndarray) -> np.ndarray:
        return inverted_100(raw)
