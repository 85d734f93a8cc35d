"""Where a model backend's weights come from, and their checksum.

Weights are looked up in a fixed order (docs/backends.md):

1. an explicit path option of the backend (`weights=FILE`, `cache_dir=DIR`, ...);
2. `$GMV_WEIGHTS_DIR/<name>` - one folder a user or an offline machine fills by hand;
3. the library's own cache (Hugging Face cache, `$TORCH_HOME/hub/...`, the package itself);
4. a download, only when online.

Offline means `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` / `GMV_OFFLINE` is set, or the
download host does not answer a 3-second connect. A weight missing while offline fails at
once with one line: the file expected, where to put it, and the offline alternative.
"""
from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import MissingWeights
from .runtime import quiet, torch

ENV_WEIGHTS_DIR = "GMV_WEIGHTS_DIR"
OFFLINE_ENVS = ("GMV_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


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


# ---------------------------------------------------------------------- cache folders
def weights_dir() -> Path | None:
    value = os.environ.get(ENV_WEIGHTS_DIR)
    return Path(value).expanduser() if value else None


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


# ---------------------------------------------------------------------- checksums
_SHA: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike[str]) -> str:
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
    download: Callable[[], str | os.PathLike[str]] | None = None
    host: str | None = None
    alternative: str = ""
    present: Callable[[Path], bool] = Path.is_file
    missing_part: Callable[[Path], str] | None = None  # names the missing file inside a folder
    expected: str = ""  # what to put there, when `filename` is a folder (e.g. "model.safetensors from hf.co/x")


def torch_hub_file(owner: str, subdir: str, filename: str, download: Callable[[], str | os.PathLike[str]],
                   host: str, alternative: str, also: Sequence[Path] = ()) -> WeightsSpec:
    """A weights file that its library keeps in `$TORCH_HOME/hub/<subdir>/` (torchvision's
    trunks, pyiqa's checkpoints); `also` are further places to look before downloading."""
    return WeightsSpec(owner=owner, filename=filename, cache=[torch_hub_dir() / subdir / filename, *also],
                       download=download, host=host, alternative=alternative)


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


class ResolvedWeights:
    """A backend whose weights are resolved once, on first use, from its `weights_spec()`.

    `weights_param` names its path option, which fills the spec's `explicit`; with
    `random_weights`, the value "random" means seeded random weights: no file, no checksum.
    """

    weights_param: ClassVar[str] = "weights"
    random_weights: ClassVar[bool] = False
    params: dict[str, Any]
    _weights: Path | None = None

    def weights_spec(self) -> WeightsSpec:
        raise NotImplementedError

    def _to_load(self, found: Path) -> Path:
        """The path to load, given what resolution found (a backend may pick a file in a folder)."""
        return found

    def weights_path(self) -> Path | None:
        value = self.params[self.weights_param]
        if self.random_weights and value == "random":
            return None
        if self._weights is None:
            spec = self.weights_spec()
            spec.param, spec.explicit = self.weights_param, value or None
            self._weights = self._to_load(resolve_weights(spec))
        return self._weights

    def weights_sha256(self) -> str | None:
        path = self.weights_path()
        return sha256_file(path) if path else None

    def weights_key(self) -> tuple[str, str | None]:
        """What the model cache key needs to know of the weights: path and checksum."""
        return str(self.weights_path()), self.weights_sha256()
