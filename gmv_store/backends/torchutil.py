"""Shared plumbing of the model backends: lazy imports, device choice, a per-process model
cache, batched inference with a progress rate, and the one weights resolution order.

Weights are looked up in a fixed order (docs/backends.md):

1. an explicit path option of the backend (`weights=FILE`, `cache_dir=DIR`, ...);
2. `$GMV_WEIGHTS_DIR/<name>` - one folder a user or an offline machine fills by hand;
3. the library's own cache (Hugging Face cache, `$TORCH_HOME/hub/...`, the package itself);
4. a download, only when online.

Offline means `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` / `GMV_OFFLINE` is set, or the
download host does not answer a 3-second connect. A weight missing while offline fails at
once with one line: the file expected, where to put it, and the offline alternative.

Nothing here imports torch at module import time: the core package installs without it.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np

from ..errors import BadInput, MissingDependency, MissingWeights

ENV_WEIGHTS_DIR = "GMV_WEIGHTS_DIR"
OFFLINE_ENVS = ("GMV_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
PIP_MODELS = "pip install 'gmv-store[models]'"
DEVICES = ("auto", "cpu", "cuda", "mps")
# Parameters that change where or how fast a model runs, never its vectors: they are not
# part of the fingerprint a store records (a store made on a GPU opens on a laptop).
RUNTIME_PARAMS = ("device", "batch_size")

T = TypeVar("T")


# ---------------------------------------------------------------------- imports
def require(module: str, package: str | None = None):
    """Import a heavy optional module or raise MissingDependency naming the fix."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pkg = package or module
        raise MissingDependency(
            f"the model backends need '{pkg}' ({e}); fix: {PIP_MODELS}"
        ) from None


def torch():
    return require("torch")


# ---------------------------------------------------------------------- device
def pick_device(requested: str = "auto") -> str:
    """'auto' -> cuda if available, else mps, else cpu. An explicit device must exist."""
    if requested not in DEVICES and not str(requested).startswith("cuda:"):
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
_MODELS: dict[tuple, Any] = {}
_MODELS_LOCK = threading.Lock()


def cached_model(key: tuple, build: Callable[[], T]) -> T:
    """Load each model once per process: `key` is (backend name, model params, weights, device)."""
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = build()
        return _MODELS[key]


def clear_model_cache() -> None:
    with _MODELS_LOCK:
        _MODELS.clear()


def frozen(params: dict) -> tuple:
    """A hashable form of a params dict, for cache keys."""
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


# ---------------------------------------------------------------------- batching
def batched(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, max(1, size)):
        yield slice(start, min(n, start + size))


def progress(total: int, what: str):
    """A progress bar with a rate (images/s) on stderr; silent when stderr is not a terminal
    (set GMV_PROGRESS=1 to force it, GMV_PROGRESS=0 to silence it)."""
    from tqdm import tqdm

    flag = os.environ.get("GMV_PROGRESS")
    disable = (flag == "0") if flag in ("0", "1") else (not sys.stderr.isatty() or total < 2)
    return tqdm(total=total, desc=what, unit="img", disable=disable, leave=False, file=sys.stderr)


def run_batched(
    fn: Callable[[Sequence[np.ndarray]], np.ndarray], images: Sequence[np.ndarray], batch_size: int, what: str
) -> np.ndarray:
    """Call fn on consecutive batches (inside torch.inference_mode) and stack the results."""
    t = torch()
    out = []
    with progress(len(images), what) as bar, t.inference_mode():
        for sl in batched(len(images), batch_size):
            out.append(np.asarray(fn(images[sl])))
            bar.update(sl.stop - sl.start)
    if not out:
        return np.zeros((0,), dtype=np.float32)
    return np.concatenate(out, axis=0)


def check_batch_size(owner: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadInput(f"{owner}: batch_size={value!r} must be a positive integer")


def check_choice(owner: str, param: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise BadInput(f"{owner}: {param}={value!r}; choose one of {', '.join(map(str, choices))}")


# ---------------------------------------------------------------------- images -> tensors
def to_float_batch(images: Sequence[np.ndarray], size: int | tuple[int, int], mode: str = "squash",
                   resample: str = "bicubic"):
    """(n, 3, size, size) float32 tensor in [0, 1].

    mode 'squash': resize to size x size (aspect not kept, nothing cropped);
    'center': resize the shorter side to size, then centre-crop.
    """
    from PIL import Image

    from ..images import to_pil, to_rgb

    t = torch()
    hw = (size, size) if isinstance(size, int) else size
    method = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[resample]
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


def group_by_shape(images: Sequence[np.ndarray]) -> dict[tuple, list[int]]:
    """Indices of images sharing a shape, so that each group batches without resizing."""
    groups: dict[tuple, list[int]] = {}
    for i, px in enumerate(images):
        groups.setdefault(px.shape, []).append(i)
    return groups


# ---------------------------------------------------------------------- offline
_PROBES: dict[str, bool] = {}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def offline_reason(host: str | None = None) -> str | None:
    """Why downloads are impossible now (None when `host` answers)."""
    for env in OFFLINE_ENVS:
        if _truthy(os.environ.get(env)):
            return f"{env}=1"
    if host is None:
        return None
    if host not in _PROBES:
        try:
            socket.create_connection((host, 443), timeout=3).close()
            _PROBES[host] = True
        except OSError:
            _PROBES[host] = False
    return None if _PROBES[host] else f"{host} unreachable"


def weights_dir() -> Path | None:
    value = os.environ.get(ENV_WEIGHTS_DIR)
    return Path(value).expanduser() if value else None


# ---------------------------------------------------------------------- checksums
_SHA: dict[tuple, str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, memoised per (path, size, mtime) within the process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _SHA[key] = h.hexdigest()
    return _SHA[key]


def sha256_files(root: Path, relpaths: Sequence[str]) -> str:
    """One checksum over several files (a folder of weights): sha256 of 'relpath:sha256' lines."""
    files: list[tuple[str, Path]] = []
    for rel in relpaths:
        p = root / rel
        if p.is_dir():
            files += [(str(f.relative_to(root)), f) for f in sorted(p.rglob("*")) if f.is_file()]
        else:
            files.append((rel, p))
    lines = "".join(f"{rel}:{sha256_file(p)}\n" for rel, p in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


# ---------------------------------------------------------------------- resolution
@dataclass
class WeightsSpec:
    """Where one backend's weights may be. `filename` is the path expected under
    $GMV_WEIGHTS_DIR (a file, or a folder when `present` checks a folder)."""

    owner: str  # e.g. "embedder 'clip' (ViT-B-32, laion2b_s34b_b79k)"
    filename: str
    param: str = "weights"
    explicit: str | None = None
    cache: list[Path] = field(default_factory=list)
    download: Callable[[], str | os.PathLike] | None = None
    host: str | None = None
    alternative: str = ""
    present: Callable[[Path], bool] = Path.is_file
    missing_part: Callable[[Path], str] | None = None  # names the missing file inside a folder
    expected: str = ""  # what to put there, when `filename` is a folder (e.g. "model.safetensors from hf.co/x")


def resolve_weights(spec: WeightsSpec) -> Path:
    """Explicit option -> $GMV_WEIGHTS_DIR -> library cache -> download when online."""
    if spec.explicit:
        p = Path(spec.explicit).expanduser()
        if not spec.present(p):
            what = spec.missing_part(p) if spec.missing_part and p.exists() else str(p)
            raise MissingWeights(
                f"{spec.owner}: {spec.param}={spec.explicit} but {what} does not exist; "
                f"fix: point {spec.param} at the weights{_alt(spec)}"
            )
        return p
    wd = weights_dir()
    if wd is not None and spec.present(wd / spec.filename):
        return wd / spec.filename
    for c in spec.cache:
        if spec.present(c):
            return c
    reason = offline_reason(spec.host) if spec.download is not None else "no download source"
    if spec.download is not None and reason is None:
        try:
            with quiet():
                path = Path(spec.download())
        except Exception as e:  # network, HTTP, checksum: one line, not a traceback
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise MissingWeights(f"{spec.owner}: download failed ({first}); {_where(spec)}") from None
        if spec.present(path):
            return path
        raise MissingWeights(f"{spec.owner}: download did not produce {path}; {_where(spec)}")
    raise MissingWeights(f"{spec.owner}: weights not found and offline ({reason}); {_where(spec)}")


def _where(spec: WeightsSpec) -> str:
    wd = os.environ.get(ENV_WEIGHTS_DIR)
    where = f"$GMV_WEIGHTS_DIR/{spec.filename}"
    where += f" (= {Path(wd) / spec.filename})" if wd else " (GMV_WEIGHTS_DIR unset)"
    what = spec.expected or Path(spec.filename).name
    verb = "in" if spec.expected else "at"
    stage = spec.owner.split(" ", 1)[0]
    cli = f" (CLI: -p {stage}.{spec.param}=PATH)" if stage in ("embedder", "rerank", "quality") else ""
    return f"fix: put {what} {verb} {where} or pass {spec.param}=PATH{cli}{_alt(spec)}"


def _alt(spec: WeightsSpec) -> str:
    return f"; offline alternative: {spec.alternative}" if spec.alternative else ""


# ---------------------------------------------------------------------- misc
@contextlib.contextmanager
def quiet(stderr: bool = False):
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


def torch_hub_dir() -> Path:
    return Path(torch().hub.get_dir())


def hf_cached(repo_id: str, filename: str) -> Path | None:
    """A file already in the Hugging Face cache (no network), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    got = try_to_load_from_cache(repo_id, filename)
    return Path(got) if isinstance(got, str) else None


def gmv_cache_dir() -> Path:
    """gmv-store's own download folder, for libraries without a usable cache of their own."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gmv-store"


class TorchBackendMixin:
    """Common parameters of model backends: `device` (auto/cpu/cuda/mps) and `batch_size`.
    Neither changes the vectors, so neither is part of the recorded fingerprint."""

    params: dict

    def _check_runtime(self, owner: str) -> None:
        check_batch_size(owner, self.params["batch_size"])
        if self.params["device"] not in DEVICES and not str(self.params["device"]).startswith("cuda:"):
            raise BadInput(f"{owner}: device={self.params['device']!r}; choose one of {', '.join(DEVICES)}")

    @property
    def device(self) -> str:
        return pick_device(self.params["device"])

    def model_params(self) -> dict:
        return {k: v for k, v in self.params.items() if k not in RUNTIME_PARAMS}

    def fingerprint(self) -> dict:
        fp = super().fingerprint()  # type: ignore[misc]
        fp["params"] = {k: v for k, v in fp["params"].items() if k not in RUNTIME_PARAMS}
        return fp
