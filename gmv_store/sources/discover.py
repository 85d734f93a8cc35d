"""PATH arguments -> image items, lazily, reporting bad arguments without stopping.

Forms: image files; folders (recursive, sorted; hidden entries skipped; files no reader
claims are ignored and counted); array files (.npz/.npy); Parquet tables; WebDataset
`.tar` shards; glob patterns of any of these (`shards/train-*.parquet`, expanded here, sorted,
so a quoted pattern works as well as the shell's); datasets (`mnist:train`); and single
recorded sources (`batch.npz#17`, `train.parquet#5`, `shard.tar#000005`, `mnist:train#5`).
Sources are recorded with absolute paths, so they can be read back from any working
directory. Only regular files are read (through symlinks): a FIFO, a device or a socket is
one problem, whether named or found in a folder.
"""
from __future__ import annotations

import glob
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from ..errors import BadInput, param
from ..images import regular_file
from .datasets import KNOWN, dataset_item, dataset_items, is_dataset
from .items import Discovery, InputOptions, Item, Problem
from .readers import ImageFileReader, reader_for

LABEL_FROM = ("parent",)
_IMAGE = ImageFileReader()


def _reason(e: BadInput) -> str:
    """The message without its leading location (the Problem names the input)."""
    where, sep, rest = str(e).partition(": ")
    return rest if sep and " " not in where else str(e)


def split_source(arg: str) -> tuple[str, str | None]:
    """`base#key` when base is a dataset or a keyed file, else (arg, None). The first `#`
    after such a base splits: a WebDataset key may itself hold `#`."""
    start = 0
    while (i := arg.find("#", start)) >= 0:
        base, key = arg[:i], arg[i + 1:]
        if _keyed_base(base):
            return base, key
        start = i + 1
    return arg, None


@lru_cache(maxsize=1024)
def _keyed_base(base: str) -> bool:
    """Whether `base#...` names a key inside `base` (a dataset, or a file of a keyed kind):
    asked for every row ingest records, of a few distinct files."""
    return is_dataset(base) or ((r := reader_for(Path(base))) is not None and r.keyed)


def _is_pattern(arg: str) -> bool:
    return any(c in arg for c in "*?[") and not Path(arg).exists()


def _looks_like_dataset(arg: str) -> bool:
    head = arg.split(":", 1)[0]
    return ":" in arg and not Path(arg).exists() and not arg.startswith(("/", ".")) and "/" not in head


def discover(paths: list[str], opts: InputOptions | None = None, found: Discovery | None = None) -> Iterator[Item]:
    """Yield items in a stable order; bad arguments go to `found.problems`."""
    opts = opts or InputOptions()
    found = found if found is not None else Discovery()
    if opts.label_from is not None and opts.label_from not in LABEL_FROM:
        raise BadInput(f"{param('label_from')} {opts.label_from!r}: choose one of {', '.join(LABEL_FROM)}")
    for arg in paths:
        arg = str(arg)
        base, key = split_source(arg)
        try:
            if key is not None:
                yield _single(base, key, opts)
            elif is_dataset(arg):
                yield from dataset_items(arg)
            elif _is_pattern(arg):
                matches = sorted(glob.glob(arg, recursive=True))
                if not matches:
                    found.problems.append(Problem(arg, "no file matches this pattern"))
                for m in matches:
                    yield from _path_items(Path(m).absolute(), opts, found)
            elif _looks_like_dataset(arg):
                found.problems.append(Problem(arg, f"unknown dataset name; fix: known datasets are {', '.join(KNOWN)}"))
            elif not Path(arg).exists():
                found.problems.append(Problem(arg, "no such file or folder"))
            else:
                yield from _path_items(Path(arg).absolute(), opts, found)
        except BadInput as e:
            found.problems.append(Problem(arg, _reason(e)))


def _single(base: str, key: str, opts: InputOptions) -> Item:
    if is_dataset(base):
        return dataset_item(base, key)
    path = Path(base)
    if not path.exists():
        raise BadInput("no such file")
    regular_file(path)
    reader = reader_for(path)
    if reader is None:  # not reached: split_source gives a key only where a keyed reader claims the file
        raise BadInput("no reader takes a #key for this file")
    return reader.item(path.absolute(), key, opts)


def _path_items(path: Path, opts: InputOptions, found: Discovery) -> Iterator[Item]:
    if path.is_dir():  # not folders: anything else a reader claims is checked below (a FIFO, a device)
        files = sorted(p for p in path.rglob("*")
                       if not p.is_dir() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    else:
        files = [path]
    for f in files:
        reader = reader_for(f)
        if reader is None:
            if f != path:
                found.ignored += 1
                continue
            reader = _IMAGE  # a file named explicitly is tried as an image whatever its suffix
        try:
            regular_file(f)
            yield from reader.items(f, opts)
        except BadInput as e:
            found.problems.append(Problem(str(f), _reason(e)))
