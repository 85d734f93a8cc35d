"""The recipe's configuration, its run state and the small helpers its steps share."""
from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from gmv_store.errors import BadInput

if TYPE_CHECKING:
    from gmv_store.generators.classifier import MnistClassifier

MARKER = ".gmv-eval-recipe"


@dataclass(frozen=True)
class RecipeConfig:
    quick: bool = False
    generators: tuple[str, ...] | None = None  # None: every registered generator that loads
    seed: int = 0
    # pools: "full" = the first n_full of a seeded permutation of MNIST train, "sub" its first n_sub
    n_full: int = 60_000
    n_sub: int = 10_000
    full_combos: tuple[tuple[str, str], ...] = (("pixels", "none"), ("pixels", "l2"))
    sub_combos: tuple[tuple[str, str], ...] = (("pixels", "none"), ("pixels", "l2"), ("pixels", "embedding"),
                                               ("effnet-lite0", "none"), ("effnet-lite0", "l2"))
    effnet_size: int = 64          # effnet-lite0 input side (224 is the ImageNet size; 64 is ~10x cheaper)
    embedding_rerank: str = "effnet-lite0"  # inner embedder of the `embedding` re-rank
    # C1
    m: int = 100
    k_max: int = 100
    ks: tuple[int, ...] = (30, 50, 100)
    recall_factor: int = 10        # N = recall_factor * k_max
    # sensitivity (on the full pool's pixels + l2 store)
    sens_pool: int = 500
    sens_ms: tuple[int, ...] = (1, 10, 30, 50)
    sens_repeats: int = 10
    sens_k: int = 50
    # trained vs held-out
    member_n: int = 10_000         # per half
    member_m: int = 1000
    member_k: int = 50
    # C3
    ood_sources: tuple[str, ...] = ("photos",)
    ood_fraction: float = 0.05
    ood_n: int = 10_000            # clean MNIST images in the mixed training set
    ood_m: int = 1000
    ood_k: int = 50
    ood_qualities: tuple[str, ...] = ("piqe", "brisque")  # each compared with "none"
    # recall quality
    hnsw_efs: tuple[int | None, ...] | None = None  # None: Qdrant's default, 2k and 4k
    recall_queries: int = 100      # generated images per two-stage recall@k measurement

    @classmethod
    def quick_config(cls, **over: Any) -> RecipeConfig:
        """Small data, cheap backends: checks the pipeline in seconds, not the numbers."""
        base: dict[str, Any] = dict(quick=True, generators=("gmm",), n_full=600, n_sub=400,
                    sub_combos=(("pixels", "l2"), ("pixels", "embedding")), embedding_rerank="pixels",
                    m=20, sens_pool=60, ood_qualities=("piqe",), sens_repeats=3, member_n=300, member_m=100, ood_n=300, ood_m=100,
                    recall_queries=20)
        base.update(over)
        return cls(**base)


@dataclass
class _Run:
    cfg: RecipeConfig
    out: Path
    cache: Path | None
    echo: Callable[[str], None]
    results: dict[str, Any] = field(default_factory=dict)
    data: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    gens: dict[str, dict[str, Any]] = field(default_factory=dict)
    classifier: MnistClassifier | None = None

    @property
    def work(self) -> Path:
        return self.out / "work"

    @property
    def stores(self) -> Path:
        return self.out / "stores"


# ----------------------------------------------------------------------------- helpers


def backend_specs(cfg: RecipeConfig, embedder: str, rerank: str,
                  quality: str = "none") -> dict[str, tuple[str, dict[str, Any]]]:
    """Store backends for a (recall embedder, re-rank) name pair, tuned for 28x28 MNIST."""
    emb: dict[str, tuple[str, dict[str, Any]]] = {"pixels": ("pixels", {"size": 16, "color": "gray"}),
           "effnet-lite0": ("effnet-lite0", {"size": cfg.effnet_size})}
    if embedder not in emb:
        raise BadInput(f"recipe embedder '{embedder}': unknown; fix: use pixels or effnet-lite0")
    inner = {"effnet-lite0": {"size": cfg.effnet_size}, "pixels": {"size": 28, "color": "gray"}}
    rr: dict[str, tuple[str, dict[str, Any]]] = {"none": ("none", {}), "l2": ("l2", {"size": 28, "color": "gray"}),
          "embedding": ("embedding", {"embedder": cfg.embedding_rerank, "params": inner.get(cfg.embedding_rerank, {})})}
    if rerank not in rr:
        raise BadInput(f"recipe re-rank '{rerank}': unknown; fix: use none, l2 or embedding")
    return {"embedder": emb[embedder], "rerank": rr[rerank], "quality": (quality, {})}


def _short(embedder: str) -> str:
    return "effnet" if embedder == "effnet-lite0" else embedder


def combo_name(cfg: RecipeConfig, embedder: str, rerank: str) -> str:
    r = f"embedding({_short(cfg.embedding_rerank)})" if rerank == "embedding" else rerank
    return f"{_short(embedder)} / {r}"


def _save_npz(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images, labels=labels)
    return path


class _Timed:
    """Records the seconds its `with` block takes as results["stage_seconds"][stage]."""

    def __init__(self, r: _Run, stage: str) -> None:
        self.r, self.stage, self.t = r, stage, 0.0

    def __enter__(self) -> _Timed:
        self.t = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.r.results.setdefault("stage_seconds", {})[self.stage] = round(time.perf_counter() - self.t, 2)


def _timed(r: _Run, stage: str) -> _Timed:
    return _Timed(r, stage)


def prepare_out(out: Path) -> None:
    """The output folder is the recipe's own: refuse a non-empty folder it did not make;
    remove the stores and work data of an earlier run."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise BadInput(f"--out {out}: folder exists, is not empty and was not made by `gmv eval recipe`; "
                       "fix: choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by gmv eval recipe; re-running replaces stores/, work/ and the report\n")
    for sub in ("stores", "work"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
