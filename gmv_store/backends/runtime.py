"""Running the model backends: lazy imports of the heavy libraries, device choice, a
per-process model cache, batched inference with a progress line, images to tensors, and the
`device` / `batch_size` parameters every model backend takes.

Nothing here imports torch at module import time: the core package installs without it.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import threading
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..errors import BadInput, MissingDependency
from ..progress import Progress

PIP_MODELS = "pip install 'gmv-store[models]'"
DEVICES = ("auto", "cpu", "cuda", "mps")
# Parameters that change where or how fast a model runs, never its vectors: they are not
# part of the fingerprint a store records (a store made on a GPU opens on a laptop).
RUNTIME_PARAMS = ("device", "batch_size")

T = TypeVar("T")


# ---------------------------------------------------------------------- imports
def require(module: str, package: str | None = None) -> ModuleType:
    """Import a heavy optional module or raise MissingDependency naming the fix."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pkg = package or module
        raise MissingDependency(
            f"the model backends need '{pkg}' ({e}); fix: {PIP_MODELS}"
        ) from None


def torch() -> ModuleType:
    return require("torch")


@contextlib.contextmanager
def quiet(stderr: bool = False) -> Iterator[None]:
    """Silence libraries that print ("Loading model from ...") on stdout (and stderr when
    asked) or log below ERROR while a model loads."""
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            if stderr:
                with contextlib.redirect_stderr(io.StringIO()):
                    yield
            else:
                yield
    finally:
        logging.disable(previous)


# ---------------------------------------------------------------------- device
def _known_device(requested: Any) -> bool:
    return requested in DEVICES or str(requested).startswith("cuda:")


def pick_device(requested: str = "auto") -> str:
    """'auto' -> cuda if available, else mps, else cpu. An explicit device must exist."""
    if not _known_device(requested):
        raise BadInput(f"device={requested!r}; choose one of {', '.join(DEVICES)} (or cuda:N)")
    t = torch()
    has_cuda = t.cuda.is_available()
    has_mps = bool(getattr(t.backends, "mps", None)) and t.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if has_cuda else ("mps" if has_mps else "cpu")
    if requested.startswith("cuda") and not has_cuda:
        raise BadInput(f"device={requested!r} but torch sees no CUDA GPU; fix: use device=auto or cpu")
    if requested == "mps" and not has_mps:
        raise BadInput("device='mps' but torch has no MPS backend here; fix: use device=auto or cpu")
    return requested


# ---------------------------------------------------------------------- model cache
_MODELS: dict[tuple[Any, ...], Any] = {}
_MODELS_LOCK = threading.Lock()


def cached_model(key: tuple[Any, ...], build: Callable[[], T]) -> T:
    """Load each model once per process: `key` is (backend name, model params, weights, device)."""
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = build()
        model: T = _MODELS[key]
        return model


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `n` inside the block (None: left as it is)."""
    if n is None:
        yield
        return
    t = torch()
    before = t.get_num_threads()
    t.set_num_threads(n)
    try:
        yield
    finally:
        t.set_num_threads(before)


# ---------------------------------------------------------------------- batching
def run_batched(
    fn: Callable[[Sequence[np.ndarray]], np.ndarray], images: Sequence[np.ndarray], batch_size: int, what: str
) -> np.ndarray:
    """Call fn on consecutive batches (inside torch.inference_mode) and stack the results."""
    t = torch()
    out = []
    step = max(1, batch_size)
    with Progress(what, len(images), enabled=None, transient=True) as bar, t.inference_mode():
        for start in range(0, len(images), step):
            batch = images[start:start + step]
            out.append(np.asarray(fn(batch)))
            bar.update(len(batch))
    if not out:
        return np.zeros((0,), dtype=np.float32)
    return np.concatenate(out, axis=0)


def group_by_shape(images: Sequence[np.ndarray]) -> dict[tuple[int, ...], list[int]]:
    """Indices of images sharing a shape, so that each group batches without resizing."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, px in enumerate(images):
        groups.setdefault(px.shape, []).append(i)
    return groups


# ---------------------------------------------------------------------- images -> tensors
def to_float_batch(images: Sequence[np.ndarray], size: int | tuple[int, int], mode: str = "squash",
                   resample: str = "bicubic") -> Any:
    """(n, 3, size, size) float32 tensor in [0, 1].

    mode 'squash': resize to size x size (aspect not kept, nothing cropped);
    'center': resize the shorter side to size, then centre-crop.
    """
    from PIL import Image

    from ..images import to_pil, to_rgb

    t = torch()
    hw = (size, size) if isinstance(size, int) else size
    method = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[resample]
    out = np.empty((len(images), hw[0], hw[1], 3), dtype=np.uint8)
    for i, px in enumerate(images):
        img = to_pil(to_rgb(px))
        if mode == "center":
            w, h = img.size
            s = max(hw[0] / h, hw[1] / w)
            nw, nh = max(hw[1], round(w * s)), max(hw[0], round(h * s))
            if (nw, nh) != (w, h):
                img = img.resize((nw, nh), method)
            left, top = (nw - hw[1]) // 2, (nh - hw[0]) // 2
            img = img.crop((left, top, left + hw[1], top + hw[0]))
        elif img.size != (hw[1], hw[0]):
            img = img.resize((hw[1], hw[0]), method)
        out[i] = np.asarray(img)
    return t.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


def to_device(x: Any, device: str) -> Any:
    """A batch onto the model's device. On CUDA from pinned host memory with a non-blocking
    copy, so the next batch's preprocessing overlaps the transfer (the forward that reads it
    waits on the same stream); elsewhere a plain move."""
    if str(device).startswith("cuda"):
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


# ---------------------------------------------------------------------- parameters
def check_choice(owner: str, param: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise BadInput(f"{owner}: {param}={value!r}; choose one of {', '.join(map(str, choices))}")


class TorchBackendMixin:
    """Common parameters of model backends: `device` (auto/cpu/cuda/mps) and `batch_size`.
    Neither changes the vectors, so neither is part of the recorded fingerprint."""

    params: dict[str, Any]
    name: ClassVar[str]

    def _check_runtime(self, owner: str) -> None:
        bs = self.params["batch_size"]
        if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
            raise BadInput(f"{owner}: batch_size={bs!r} must be a positive integer")
        if not _known_device(self.params["device"]):
            raise BadInput(f"{owner}: device={self.params['device']!r}; choose one of {', '.join(DEVICES)}")

    @property
    def device(self) -> str:
        return pick_device(self.params["device"])

    def fingerprint(self) -> dict[str, Any]:
        fp: dict[str, Any] = super().fingerprint()  # type: ignore[misc]
        fp["params"] = {k: v for k, v in fp["params"].items() if k not in RUNTIME_PARAMS}
        return fp

    def _embed_batched(self, forward: Callable[[Sequence[np.ndarray]], np.ndarray],
                       images: Sequence[np.ndarray], what: str | None = None) -> np.ndarray:
        """An embedder's (n, dim) float32 vectors from `forward` run on `batch_size` images at a time."""
        out = run_batched(forward, images, self.params["batch_size"], what or self.name)
        return out.reshape(len(images), self.dim).astype(np.float32)  # type: ignore[attr-defined]
