"""WebDataset shards: plain `.tar` files whose members share a key (`000123.png`,
`000123.cls`, `000123.json`), one sample per key, members of a sample adjacent.

The key is the member path up to the first dot of its base name. A sample's image is its
`png`, `jpg`, `jpeg` or `webp` member (another image type if none of these;
`--image-column EXT` picks one); its label comes from `.cls`, else the `.json` key
`--label-column` (default `label`), else `.txt`; the rest of the `.json` (and a `.txt` not
used as the label) goes into the image's metadata. Sources are `shard-000000.tar#KEY`, with
`@EXT` appended when the image member is not the default choice.

Reading streams the members once, holding one sample at a time. A truncated shard (cut
inside a member or a header) and a corrupt header are reported as one problem naming the
sample where reading stopped; the samples before it are kept. A key is one sample: a second
member of the same kind in a sample, or a later sample repeating an earlier key, is reported
and not read (the first is kept, and is what `load` reads back). Members larger than
MAX_FILE_BYTES are refused unread. Reading one sample back (`load`) uses an index of member
offsets built once per shard and cached in the process.

Compressed shards (`.tar.gz`, `.tgz`, ...) are refused by name: one image is read back by its
offset in the file, which a compressed stream does not have.
"""
from __future__ import annotations

import json
import mmap
import os
import tarfile
from collections.abc import Container, Iterator
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NoReturn

from ..errors import BadInput
from ..images import IMAGE_SUFFIXES, MAX_FILE_BYTES, decode_bytes, too_large
from .base import Reader, bad_item, file_label, file_stamp, json_value, label_text
from .items import InputOptions, Item

if TYPE_CHECKING:
    import numpy as np

PREFERRED = ("png", "jpg", "jpeg", "webp")
IMAGE_EXTS = PREFERRED + tuple(sorted(s[1:] for s in IMAGE_SUFFIXES if s[1:] not in PREFERRED))
TEXT_EXTS = ("cls", "json", "txt")
HELP_SHARD = "fix: re-download or re-write the shard"
HELP_KEYS = "fix: re-write the shard with one key per sample"
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


def _sample(path: Path, key: str, parts: dict[str, bytes], opts: InputOptions) -> Item:
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
            doc = json.loads(parts["json"])
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
        label = parts["cls"].decode("utf-8", "replace").strip()
    if "txt" in parts:
        text = parts["txt"].decode("utf-8", "replace").strip()
        if label is None:
            label = text
        else:
            meta["txt"] = text
    try:
        lab = label_text(label, f".json label '{opts.label_column or 'label'}'") if label is not None else \
            file_label(path, opts)
    except BadInput as e:
        return bad_item(src, str(e))
    return Item(src, partial(decode_bytes, parts[ext], src), lab, meta or None)


def split_key(key: str) -> tuple[str, str | None]:
    """`000123@jpg` -> (`000123`, `jpg`); a key whose `@` is not followed by an image
    extension is a plain key."""
    base, sep, ext = key.rpartition("@")
    return (base, ext) if sep and ext.lower() in IMAGE_EXTS else (key, None)


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
        wanted = set(IMAGE_EXTS) | set(TEXT_EXTS)
        with open(path, "rb") as f:
            try:
                tar = tarfile.open(fileobj=f, mode="r|")
            except tarfile.TarError as e:
                raise BadInput(f"{path}: not a readable tar file ({e}); {HELP_SHARD}") from None
            # skip: the current key's members are not read (a repeated key, a member too large)
            parts: dict[str, bytes]
            key, parts, member, seen, skip = None, {}, None, set(), False
            try:
                while (member := tar.next()) is not None:
                    tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header it read: memory would grow
                    named = split_name(member.name) if member.isfile() else None
                    if named is None:
                        continue
                    if named[0] != key:
                        if key is not None and not skip:
                            yield _sample(path, key, parts, opts)
                        key, parts, skip = named[0], {}, named[0] in seen
                        seen.add(key)
                        if skip:
                            yield bad_item(f"{path}#{key}", f"a later sample repeats this key (member {member.name}); "
                                                            f"only the first is read; {HELP_KEYS}")
                    if skip or named[1] not in wanted:
                        continue
                    if named[1] in parts:
                        yield bad_item(f"{path}#{key}", f"a second .{named[1]} member in this sample (member "
                                                        f"{member.name}); only the first is read; {HELP_KEYS}")
                    elif member.size > MAX_FILE_BYTES:  # refused unread (the stream skips its data)
                        why = too_large(member.size, MAX_FILE_BYTES)
                        yield bad_item(f"{path}#{key}", f"member {member.name}: {why}")
                        skip = True
                    else:
                        data = tar.extractfile(member)  # never None for a file member (checked above)
                        if data is None:
                            raise tarfile.TarError(f"no data in member {member.name}")
                        parts[named[1]] = data.read()
            except (tarfile.TarError, EOFError, OSError) as e:
                where = f"{path}#{key}" if key is not None else str(path)
                inside = f"inside member {member.name}" if member is not None else "in a header"
                yield bad_item(where, f"shard truncated or corrupt {inside} ({e}); {HELP_SHARD}")
                return
            if not _tail_is_clean(f, tar.offset):
                # tarfile stops silently at a cut or corrupt header: the pending sample may lack members
                where = f"{path}#{key}" if key is not None else str(path)
                yield bad_item(where, f"shard truncated or corrupt after byte {tar.offset:,} (an incomplete header "
                                      f"follows); {HELP_SHARD}")
                return
            if key is not None and not skip:
                yield _sample(path, key, parts, opts)

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
        members = _scan(path)
    except _Unusual:
        members = list(_scan_tarfile(path))
    except OSError as e:
        raise BadInput(f"{path}: not a readable tar file ({e}); {HELP_SHARD}") from None
    key, seen, repeated = None, set(), False
    for name, offset, length in members:
        named = split_name(name)
        if named is None:
            continue
        if named[0] != key:  # as reading does: the first sample of a key, the first member of a kind
            key, repeated = named[0], named[0] in seen
            seen.add(key)
        if not repeated and named[1] in wanted:
            out.setdefault(key, {}).setdefault(named[1], (offset, length))
    return out


class _Unusual(Exception):
    """A header the fast scan leaves to tarfile."""


_REGULAR = (b"0", b"\0", b"7")
_SKIPPED = (b"1", b"2", b"3", b"4", b"5", b"6", b"g")  # links, devices, folders, fifos, global pax


def _number(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # base-256 (GNU) for large values
        raise _Unusual
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return -1  # not octal: a corrupt header, which its checksum rejects


def _scan(path: str) -> list[tuple[str, int, int]]:
    """(name, data offset, size) of each regular member, parsing the 512-byte headers of a
    memory map (ustar names with prefix, GNU long names, pax path/size records). Header
    checksums are verified together at the end; the index stops at the first bad one, where
    tarfile stops too."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return []
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        out, starts, stored = [], [], []
        offset, long_name, pax, end = 0, None, {}, len(mm)
        while offset + 512 <= end:
            header = mm[offset:offset + 512]
            if header[0] == 0 and header.count(0) == 512:
                break  # the end (a cut or corrupt archive is reported when its samples are read)
            try:  # the usual form: octal digits ended by NUL or space
                size, check = int(header[124:135], 8), int(header[148:154], 8)
            except ValueError:
                size, check = _number(header[124:136]), _number(header[148:156])
            starts.append(offset)
            stored.append(check)
            kind = header[156:157]
            data = offset + 512
            if kind == b"L":
                long_name = mm[data:data + size].split(b"\0", 1)[0]
            elif kind in (b"x", b"X"):
                pax = _pax(mm[data:data + size])
            elif kind in _REGULAR:
                size = int(pax.get("size", size))
                if "path" in pax:
                    name = pax["path"].encode("utf-8", "surrogateescape")
                elif long_name is not None:
                    name = long_name
                else:
                    name = header[:100].split(b"\0", 1)[0]
                    if header[257:262] == b"ustar" and header[345:346] != b"\0":
                        name = header[345:500].split(b"\0", 1)[0] + b"/" + name
                out.append((len(starts) - 1, name.decode("utf-8", "surrogateescape"), data, size))
                long_name, pax = None, {}
            elif kind not in _SKIPPED:
                raise _Unusual
            else:
                long_name, pax = None, {}
            offset = data + -(-size // 512) * 512
        good = _checksums_ok(mm, starts, stored)
        return [(name, data, size) for h, name, data, size in out if h < good]
    finally:
        mm.close()


def _checksums_ok(mm: mmap.mmap, starts: list[int], stored: list[int]) -> int:
    """How many headers, from the first, carry a right checksum (the byte sum of the
    header with its checksum field read as spaces)."""
    import numpy as np

    raw = np.frombuffer(mm, np.uint8)
    cols = np.arange(512)
    try:
        for i in range(0, len(starts), 8192):
            block = raw[np.asarray(starts[i:i + 8192])[:, None] + cols]
            sums = block.sum(1, dtype=np.int64) - block[:, 148:156].sum(1, dtype=np.int64) + 8 * 32
            bad = np.flatnonzero(sums != np.asarray(stored[i:i + 8192]))
            if len(bad):
                return i + int(bad[0])
        return len(starts)
    finally:
        del raw  # release the buffer before the map closes


def _pax(data: bytes) -> dict[str, str]:
    """Records `LEN key=value\\n` of a pax extended header."""
    out, i = {}, 0
    while i < len(data):
        length = int(data[i:data.index(b" ", i)])
        key, _, value = data[data.index(b" ", i) + 1:i + length - 1].partition(b"=")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        i += length
    return out


def _scan_tarfile(path: str) -> Iterator[tuple[str, int, int]]:
    try:
        with tarfile.open(path, mode="r:") as tar:
            while (m := tar.next()) is not None:
                tar.members.clear()  # type: ignore[attr-defined]  # not in the stubs; bounds memory
                if m.isfile():
                    yield m.name, m.offset_data, m.size
    except tarfile.TarError as e:
        raise OSError(str(e)) from None


def index_size(path: str | os.PathLike[str]) -> int:
    """Samples in a shard's index (for tests and benchmarks)."""
    return len(_index(*file_stamp(Path(path))))
