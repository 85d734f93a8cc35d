"""PIQE no-reference quality (pyiqa): no weights at all; raw [0, 100], lower better."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .iqa import TorchNR, check_min_side, inverted_100
from .runtime import cached_model, require

if TYPE_CHECKING:
    import numpy as np


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
            require("pyiqa")
            from pyiqa.archs.piqe_arch import PIQE

            return PIQE().eval().to(self.device)

        return cached_model(("piqe", self.device), build)

    def _map(self, raw: np.ndarray) -> np.ndarray:
        return inverted_100(raw)
