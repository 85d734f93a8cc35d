"""WebDataset shards: plain `.tar` files whose members share a key (`000123.png`,
`000123.cls`, `000123.json`), one sample per key, members of a sample adjacent.

The key is the member path up to the first dot of its base name. A sample's image is its
`png`, `jpg`, `jpeg` or `webp` member (another image type if none of these;
`--image-column EXT` picks one); its label comes from `.cls`, else the `.json` key
`--label-column` (default `label`), else `.txt`; the rest of the `.json` (and a `.txt` not
used as the label) goes into the image's metadata. Sources are `shard-000000.tar#KEY`, with
`@EXT` appended when the image member is not the default choice.

A shard is read from its headers (sources/tar_headers.py: 3-4x less CPU than tarfile's
stream; a shard over SCAN_HELD_BYTES in two passes, one checking that it is whole and one
streaming its members, so memory stays bounded). Labels and metadata are read there, and each
image by its offset where it is decoded (with `--workers`, in the worker: the reading process
never touches the image bytes). A shard that does not end as it should goes through tarfile's
stream instead: a truncated shard (cut inside a member or a header) and a corrupt header are
reported as one problem naming the sample where reading stopped; the samples before it are
kept. A key is one sample: a second member of the same kind in a sample, or a later sample
repeating an earlier key, is reported and not read (the first is kept, and is what `load`
reads back). Members larger than MAX_FILE_BYTES are refused unread. Reading one sample back
(`load`) uses an index of member offsets built once per shard and cached in the process.

Compressed shards (`.tar.gz`, `.tgz`, ...) are refused by name: one image is read back by its
offset in the file, which a compressed stream does not have.
"""
from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import replace
from functools import lru_cache, partial
from pathlib import Path
from typing import BinaryIO, NamedTuple, NoReturn

import numpy as np

from ..errors import BadInput
from ..images import IMAGE_SUFFIXES, MAX_FILE_BYTES, decode_bytes, too_large
from .base import Reader, bad_item, file_label, file_stamp, json_value, label_text
from .items import InputOptions, Item
from .tar_headers import Unusual, members, members_by_tarfile, scan, whole

PREFERRED = ("png", "jpg", "jpeg", "webp")
IMAGE_EXTS = PREFERRED + tuple(sorted(s[1:] for s in IMAGE_SUFFIXES if s[1:] not in PREFERRED))
TEXT_EXTS = ("cls", "json", "txt")
HELP_SHARD = "fix: re-download or re-write the shard"
HELP_KEYS = "fix: re-write the shard with one key per sample"
# Shards up to this size are scanned once with their members held (a few MB for a usual shard,
# ~150 MB at worst: a GiB of 2 KB samples); larger ones twice, nothing held (~60 % more CPU)
SCAN_HELD_BYTES = 1 << 30
COMPRESSED = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst", ".tzst")


def split_name(name: str) -> tuple[str, str] | None:
    """`dir/000123.seg.png` -> (`dir/000123`, `seg.png`); None for names without an extension
    and hidden files."""
    head, _, base = name.rpartition("/")
    if base.startswith(".") or "." not in base:
        return None
    stem, _, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), ext.lower()


def image_ext(exts: Container[str], wanted: str | None) -> str | None:
    """The sample's image member: the one asked for, else the first of IMAGE_EXTS present."""
    if wanted:
        return wanted.lower().lstrip(".") if wanted.lower().lstrip(".") in exts else None
    return next((e for e in IMAGE_EXTS if e in exts), None)


def _text(part: Part) -> bytes:
    if isinstance(part, Span):  # only image members are left unread (`_items_scanned`)
        raise TypeError("a label or metadata member was not read")
    return part


def _sample(path: Path, key: str, parts: Mapping[str, Part], opts: InputOptions) -> Item:
    default = image_ext(parts, None)
    ext = image_ext(parts, opts.image_column)
    src = f"{path}#{key}" + ("" if ext in (default, None) else f"@{ext}")
    if ext is None:
        want = f".{opts.image_column.lstrip('.')}" if opts.image_column else "image"
        return bad_item(src, f"no {want} member (members: {', '.join('.' + e for e in parts) or 'none'}); "
                             "fix: give each sample a .png/.jpg/.jpeg/.webp member, or pick one with --image-column")
    label, meta = None, {}
    if "json" in parts:
        try:
            doc = json.loads(_text(parts["json"]))
        except ValueError as e:
            return bad_item(src, f"unreadable .json member ({e}); {HELP_SHARD}")
        doc = doc if isinstance(doc, dict) else {"json": doc}
        label = doc.pop(opts.label_column or "label", None)
        if isinstance(label, (dict, list)):
            return bad_item(src, f".json label '{opts.label_column or 'label'}' is a {type(label).__name__}; fix: "
                                 "store a string or integer there, or name another key with --label-column")
        meta = {k: json_value(v) for k, v in doc.items()}
    if "cls" in parts:
        if label is not None:  # the .cls is the label; the .json's own is kept as metadata
            meta[opts.label_column or "label"] = json_value(label)
        label = _text(parts["cls"]).decode("utf-8", "replace").strip()
    if "txt" in parts:
        text = _text(parts["txt"]).decode("utf-8", "replace").strip()
        if label is None:
            label = text
        else:
            meta["txt"] = text
    try:
        lab = label_text(label, f".json label '{opts.label_column or 'label'}'") if label is not None else \
            file_label(path, opts)
    except BadInput as e:
        return bad_item(src, str(e))
    image = parts[ext]
    load = partial(decode_bytes, image, src) if isinstance(image, bytes) else partial(decode_span, str(path), image, src)
    return Item(src, load, lab, meta or None)


def split_key(key: str) -> tuple[str, str | None]:
    """`000123@jpg` -> (`000123`, `jpg`); a key whose `@` is not followed by an image
    extension is a plain key."""
    base, sep, ext = key.rpartition("@")
    return (base, ext) if sep and ext.lower() in IMAGE_EXTS else (key, None)


class Span(NamedTuple):
    """Where an image member's data lies in its shard: read by the decoding worker itself."""

    offset: int
    size: int


Part = bytes | Span  # an image member may be left unread


def decode_span(path: str, span: Span, where: str) -> np.ndarray:
    """An image member read by its offset and decoded (in a decoding worker: the process
    reading the shard sends where the image is, not its bytes)."""
    return decode_bytes(_read_span(path, span, where), where)


def _read_span(path: str, span: Span, where: str) -> bytes:
    with open(path, "rb") as f:
        data = _pread(f, span.offset, span.size, where)
    if len(data) != span.size:
        raise BadInput(f"{where}: shard truncated or corrupt inside this sample's image (the file changed after it "
                       f"was read); {HELP_SHARD}")
    return data


def with_bytes(item: Item) -> Item:
    """`item` with its image's bytes in hand where they were left to be read by offset
    (`Span`): for a process on another machine, which may not see the shard (`--ray`)."""
    load = item.load
    if not (isinstance(load, partial) and load.func is decode_span):
        return item
    path, span, where = load.args
    try:
        data = _read_span(path, span, where)
    except (BadInput, OSError) as e:
        return bad_item(item.source, str(e) if isinstance(e, BadInput) else f"{where}: unreadable ({e}); {HELP_SHARD}")
    return replace(item, load=partial(decode_bytes, data, where))


class _Samples:
    """A shard's members in file order -> its samples (`Item`s): a key is one sample, the
    first member of a kind is kept, a repeated key and a member too large are reported and
    not read. `add` takes a member and how to read its data (called only for members kept)."""

    WANTED = frozenset(IMAGE_EXTS) | frozenset(TEXT_EXTS)

    def __init__(self, path: Path, opts: InputOptions):
        self.path, self.opts = path, opts
        self.key: str | None = None
        self.parts: dict[str, Part] = {}
        self.seen: set[str] = set()
        self.skip = False  # the current key's members are not read (a repeated key, a member too large)

    def add(self, name: str, size: int, read: Callable[[str], Part]) -> Iterator[Item]:
        named = split_name(name)
        if named is None:
            return
        if named[0] != self.key:
            yield from self.last()
            self.key, self.parts, self.skip = named[0], {}, named[0] in self.seen
            self.seen.add(self.key)
            if self.skip:
                yield bad_item(self.where, f"a later sample repeats this key (member {name}); only the first is read; "
                                           f"{HELP_KEYS}")
        if self.skip or named[1] not in self.WANTED:
            return
        if named[1] in self.parts:
            yield bad_item(self.where, f"a second .{named[1]} member in this sample (member {name}); only the first "
                                       f"is read; {HELP_KEYS}")
        elif size > MAX_FILE_BYTES:  # refused unread
            yield bad_item(self.where, f"member {name}: {too_large(size, MAX_FILE_BYTES)}")
            self.skip = True
        else:
            self.parts[named[1]] = read(named[1])

    @property
    def where(self) -> str:
        return f"{self.path}#{self.key}" if self.key is not None else str(self.path)

    def last(self) -> Iterator[Item]:
        """The pending sample, once its members are all read."""
        if self.key is not None and not self.skip:
            yield _sample(self.path, self.key, self.parts, self.opts)


def _items_scanned(path: Path, found: Iterable[tuple[str, int, int]], opts: InputOptions) -> Iterator[Item]:
    """A whole shard's samples from its members (name, data offset, size) as its headers
    list them: labels and metadata read here, images left to the decoder (`Span`)."""
    samples = _Samples(path, opts)
    with open(path, "rb") as f:
        def read(ext: str, offset: int, size: int) -> Part:
            return Span(offset, size) if ext not in TEXT_EXTS else os.pread(f.fileno(), size, offset)

        for name, offset, size in found:
            yield from samples.add(name, size, partial(read, offset=offset, size=size))
    yield from samples.last()


def _items_by_tarfile(path: Path, opts: InputOptions) -> Iterator[Item]:
    """A shard's samples through tarfile's stream (archives the header scan leaves to it)."""
    samples = _Samples(path, opts)
    with open(path, "rb") as f:
        try:
            tar = tarfile.open(fileobj=f, mode="r|")
        except tarfile.TarError as e:
            raise BadInput(f"{path}: not a readable tar file ({e}); {HELP_SHARD}") from None

        def read(member: tarfile.TarInfo, ext: str) -> Part:
            data = tar.extractfile(member)  # never None for a file member
            if data is None:
                raise tarfile.TarError(f"no data in member {member.name}")
            return data.read()

        member = None
        try:
            while (member := tar.next()) is not None:
                tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header it read: memory would grow
                if member.isfile():
                    yield from samples.add(member.name, member.size, partial(read, member))
        except (tarfile.TarError, EOFError, OSError) as e:
            inside = f"inside member {member.name}" if member is not None else "in a header"
            yield bad_item(samples.where, f"shard truncated or corrupt {inside} ({e}); {HELP_SHARD}")
            return
        if not _tail_is_clean(f, tar.offset):
            # tarfile stops silently at a cut or corrupt header: the pending sample may lack members
            yield bad_item(samples.where, f"shard truncated or corrupt after byte {tar.offset:,} (an incomplete "
                                          f"header follows); {HELP_SHARD}")
            return
    yield from samples.last()


def _tail_is_clean(f: BinaryIO, offset: int) -> bool:
    """After the last member: the zero blocks that end every archive (and record padding).
    Nothing there means the file was cut between members."""
    f.seek(offset)
    seen = 0
    while chunk := f.read(1 << 16):
        if chunk.count(0) != len(chunk):
            return False
        seen += len(chunk)
    return seen >= tarfile.BLOCKSIZE


def is_compressed_shard(path: Path) -> bool:
    return path.name.lower().endswith(COMPRESSED)


class CompressedShardReader(Reader):
    """`.tar.gz` and the like: refused by name, with the fix."""

    name = "compressed-webdataset"
    suffixes = frozenset()  # matched by the whole name ending (readers.reader_for)
    keyed = True

    def _refuse(self, path: Path) -> NoReturn:
        raise BadInput(f"{path}: a compressed tar shard; gmv reads plain .tar shards (it reads one image back by "
                       "its offset in the file, which a compressed stream lacks); fix: decompress it first "
                       "(gunzip -k, unxz -k, zstd -d) and give the .tar")

    def items(self, path: Path, opts: InputOptions) -> Iterator[Item]:
        self._refuse(path)

    def item(self, path: Path, key: str, opts: InputOptions) -> Item:
        self._refuse(path)

    def load(self, path: Path, key: str | None) -> np.ndarray:
        self._refuse(path)


class WebDatasetReader(Reader):
    name = "webdataset"
    suffixes = frozenset({".tar"})
    keyed = True

    def items(self, path: Path, opts: InputOptions) -> Iterator[Item]:
        listed: Iterable[tuple[str, int, int]] | None = None
        try:
            if os.path.getsize(path) <= SCAN_HELD_BYTES:  # one pass, its members held (~150 bytes each)
                found = scan(str(path))
                fast, listed = found.whole, found.members
            else:  # a pass that checks the shard is whole, keeping nothing; its members streamed below
                fast = whole(str(path))
        except Unusual:
            fast = False
        except OSError as e:
            raise BadInput(f"{path}: not a readable tar file ({e}); {HELP_SHARD}") from None
        if fast:
            yield from _items_scanned(path, listed if listed is not None else members(str(path)), opts)
        else:  # a cut or damaged shard: tarfile says where it stops reading, and why
            yield from _items_by_tarfile(path, opts)

    def item(self, path: Path, key: str, opts: InputOptions) -> Item:
        base, ext = split_key(key)
        entry = _index(*file_stamp(path)).get(base)
        if entry is None:
            raise BadInput(f"{path}#{key}: no sample with this key in the shard")
        with open(path, "rb") as f:
            parts = {e: _pread(f, off, size, f"{path}#{key}") for e, (off, size) in entry.items()}
        if ext:
            opts = InputOptions(label_from=opts.label_from, label=opts.label, image_column=ext,
                                label_column=opts.label_column)
        return _sample(path, base, parts, opts)

    def load(self, path: Path, key: str | None) -> np.ndarray:
        if not path.exists():
            raise BadInput(f"{path}: no such file")
        key = key or ""
        base, ext = split_key(key)
        entry = _index(*file_stamp(path)).get(base) or {}
        chosen = image_ext(entry, ext)
        if chosen is None:
            raise BadInput(f"{path}#{key}: no image member with this key in the shard")
        with open(path, "rb") as f:
            return decode_bytes(_pread(f, *entry[chosen], f"{path}#{key}"), f"{path}#{key}")


def _pread(f: BinaryIO, offset: int, size: int, where: str) -> bytes:
    if size > MAX_FILE_BYTES:
        raise BadInput(f"{where}: {too_large(size, MAX_FILE_BYTES)}")
    f.seek(offset)
    return f.read(size)


@lru_cache(maxsize=8)
def _index(path: str, mtime_ns: int, size: int) -> dict[str, dict[str, tuple[int, int]]]:
    """key -> {ext: (data offset, size)} of a shard's image and label members, read from
    the headers alone (the data is skipped): 1-2 s for a 100k-sample shard, against 7-11 s
    through tarfile (measured); archives with members the scan does not know (sparse
    files, multi-volume) go through tarfile."""
    wanted = set(IMAGE_EXTS) | set(TEXT_EXTS)
    out: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        listed = scan(path).members
    except Unusual:
        listed = list(members_by_tarfile(path))
    except OSError as e:
        raise BadInput(f"{path}: not a readable tar file ({e}); {HELP_SHARD}") from None
    key, seen, repeated = None, set(), False
    for name, offset, length in listed:
        named = split_name(name)
        if named is None:
            continue
        if named[0] != key:  # as reading does: the first sample of a key, the first member of a kind
            key, repeated = named[0], named[0] in seen
            seen.add(key)
        if not repeated and named[1] in wanted:
            out.setdefault(key, {}).setdefault(named[1], (offset, length))
    return out


def index_size(path: str | os.PathLike[str]) -> int:
    """Samples in a shard's index (for tests and benchmarks)."""
    return len(_index(*file_stamp(Path(path))))
