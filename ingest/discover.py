"""Step 1: turn PATH arguments into image items, lazily, reporting bad ones without stopping.

Forms: image files; folders (recursive; files without an image/array suffix are ignored
and counted); .npz (key `images`, optional `labels`) and .npy arrays of N×H×W or N×H×W×C,
uint8 or float in [0, 1]; and the datasets `mnist:train` / `mnist:test`.

Every item carries a `source` string that `load_source` can read back later:
`path`, `path.npz#i`, `path.npy#i`, `mnist:train#i`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from gmv_store.datasets import MNIST_SPLITS, load_mnist
from gmv_store.errors import BadInput
from gmv_store.images import IMAGE_SUFFIXES, array_to_canonical, decode_file

ARRAY_SUFFIXES = {".npz", ".npy"}
LABEL_FROM = ("parent",)


@dataclass
class Item:
    source: str
    load: Callable[[], np.ndarray]  # -> canonical pixels; raises BadInput
    label: str | None = None


@dataclass
class Problem:
    where: str
    reason: str


@dataclass
class Discovery:
    """What `discover` found besides items: skipped inputs and ignored files."""

    problems: list[Problem] = field(default_factory=list)
    ignored: int = 0


def _label(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (np.integer, int)):
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _load_array_file(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if "images" not in data.files:
                    raise BadInput(f"{path}: no 'images' key (found: {', '.join(data.files) or 'none'}); fix: save with np.savez(f, images=..., labels=...)")
                images = data["images"]
                labels = data["labels"] if "labels" in data.files else None
        else:
            images, labels = np.load(path, allow_pickle=False), None
    except BadInput:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise BadInput(f"{path}: unreadable array file ({str(e).splitlines()[0]}); fix: re-save it with numpy") from None
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3, 4)):
        raise BadInput(f"{path}: images have shape {images.shape}; expected N×H×W or N×H×W×C with C in 1,3,4")
    if images.dtype != np.uint8 and images.dtype.kind != "f":
        raise BadInput(f"{path}: images have dtype {images.dtype}; fix: use uint8 0..255 or float in [0, 1]")
    if labels is not None and (labels.ndim != 1 or len(labels) != len(images)):
        raise BadInput(f"{path}: labels have shape {labels.shape}, expected ({len(images)},)")
    return images, labels


def _array_items(path: Path, label: str | None) -> Iterator[Item]:
    images, labels = _load_array_file(path)
    for i in range(len(images)):
        src = f"{path}#{i}"
        lab = _label(labels[i]) if labels is not None else label
        yield Item(src, (lambda a=images[i], s=src: array_to_canonical(a, s)), lab)


def _mnist_items(split: str) -> Iterator[Item]:
    images, labels = load_mnist(split)
    for i in range(len(images)):
        yield Item(f"mnist:{split}#{i}", (lambda a=images[i]: a[:, :, None]), str(int(labels[i])))


def _file_label(path: Path, label_from: str | None, label: str | None) -> str | None:
    return path.parent.name if label_from == "parent" else label


def discover(paths: list[str], label_from: str | None = None, label: str | None = None,
             found: Discovery | None = None) -> Iterator[Item]:
    """Yield items in a stable order; bad arguments go to `found.problems`."""
    found = found if found is not None else Discovery()
    if label_from is not None and label_from not in LABEL_FROM:
        raise BadInput(f"--label-from {label_from!r}: choose one of {', '.join(LABEL_FROM)}")
    for arg in paths:
        base, sep, idx = arg.rpartition("#")
        if sep and idx.isdigit() and (base.startswith("mnist:") or Path(base).suffix.lower() in ARRAY_SUFFIXES):
            # one recorded source, e.g. batch.npz#17 or mnist:train#5
            item = _single_source(base, int(idx), arg, label_from, label, found)
            if item is not None:
                yield item
            continue
        if arg.startswith("mnist:"):
            split = arg.split(":", 1)[1]
            if split not in MNIST_SPLITS:
                found.problems.append(Problem(arg, "unknown dataset; fix: use mnist:train or mnist:test"))
                continue
            yield from _mnist_items(split)
            continue
        if ":" in arg and not Path(arg).exists() and not arg.startswith(("/", ".")) and "/" not in arg.split(":", 1)[0]:
            found.problems.append(Problem(arg, "unknown dataset name; fix: known datasets are mnist:train, mnist:test"))
            continue
        path = Path(arg)
        if not path.exists():
            found.problems.append(Problem(arg, "no such file or folder"))
            continue
        path = path.absolute()  # sources are read back later, from any working directory
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
        else:
            files = [path]
        for f in files:
            suffix = f.suffix.lower()
            if suffix in ARRAY_SUFFIXES:
                try:
                    yield from _array_items(f, _file_label(f, label_from, label))
                except BadInput as e:
                    found.problems.append(Problem(str(f), str(e).split(": ", 1)[-1]))
            elif suffix in IMAGE_SUFFIXES or f == path:
                yield Item(str(f), (lambda p=f: decode_file(p)), _file_label(f, label_from, label))
            else:
                found.ignored += 1


def _single_source(base: str, i: int, arg: str, label_from, label, found: Discovery) -> Item | None:
    try:
        if base.startswith("mnist:"):
            split = base.split(":", 1)[1]
            if split not in MNIST_SPLITS:
                raise BadInput("unknown dataset; fix: use mnist:train or mnist:test")
            images, labels = load_mnist(split)
        else:
            path = Path(base)
            if not path.exists():
                raise BadInput("no such file")
            images, labels = _load_array_file(path)
            base = str(path.absolute())
        if i >= len(images):
            raise BadInput(f"index {i} out of range (the array holds {len(images)} images)")
    except BadInput as e:
        found.problems.append(Problem(arg, str(e).split(": ", 1)[-1] if str(e).startswith(base) else str(e)))
        return None
    src = f"{base}#{i}"
    lab = _label(labels[i]) if labels is not None else (Path(base).parent.name if label_from == "parent" else label)
    if base.startswith("mnist:"):
        return Item(src, (lambda a=images[i]: a[:, :, None]), lab)
    return Item(src, (lambda a=images[i], s=src: array_to_canonical(a, s)), lab)


def load_source(source: str) -> np.ndarray:
    """Read back the canonical pixels of a recorded source (for grids and image re-ranking)."""
    base, sep, idx = source.rpartition("#")
    if sep and idx.isdigit():
        if base.startswith("mnist:"):
            images, _ = load_mnist(base.split(":", 1)[1])
            return images[int(idx)][:, :, None]
        if Path(base).suffix.lower() in ARRAY_SUFFIXES:
            images, _ = _load_array_file(Path(base))
            return array_to_canonical(images[int(idx)], source)
    return decode_file(source)
