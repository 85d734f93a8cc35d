"""A tar file's members from its 512-byte headers alone, without reading the members' data:
the WebDataset reader's scan (reading a shard, and its index for reading one sample back).

Python's tarfile reads a shard member by member through its own buffers (100-120 µs a
sample measured, most of a decoding worker's main-process cost); the headers of a memory
map are parsed here at ~10 µs a member, and the data is read where it is needed, by offset.
Archives the scan does not know (sparse files, multi-volume, base-256 numbers) raise
`Unusual`, for the caller to read them through tarfile.
"""
from __future__ import annotations

import mmap
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

REGULAR = (b"0", b"\0", b"7")
SKIPPED = (b"1", b"2", b"3", b"4", b"5", b"6", b"g")  # links, devices, folders, fifos, global pax


class Unusual(Exception):
    """A header the fast scan leaves to tarfile."""


@dataclass
class TarScan:
    """The regular members (name, data offset, size) up to the first header that is bad or
    cut; `whole`: the archive ends as it should (every header good, the end-of-archive zero
    blocks reached, nothing but zeros after them)."""

    members: list[tuple[str, int, int]]
    whole: bool


def _number(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # base-256 (GNU) for large values
        raise Unusual
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return -1  # not octal: a corrupt header, which its checksum rejects


BLOCK = 1024  # headers checked at once (their index array: 4 MB): memory stays bounded by it, not by the shard


def scan(path: str) -> TarScan:
    """The members of the tar file at `path` (held in a list: for an index) and whether the
    archive is whole."""
    walk = _Walk(path)
    members = list(walk)
    return TarScan(members, walk.whole)


def whole(path: str) -> bool:
    """Whether the tar file at `path` ends as it should (one pass over its headers, nothing
    kept)."""
    walk = _Walk(path)
    for _ in walk:
        pass
    return walk.whole


def members(path: str) -> Iterator[tuple[str, int, int]]:
    """The regular members (name, data offset, size) of the tar file at `path`, streamed."""
    return iter(_Walk(path))


class _Walk:
    """The regular members of a tar file from the 512-byte headers of a memory map (ustar
    names with prefix, GNU long names, pax path/size records), up to the first header whose
    checksum is wrong (where tarfile stops too), checked BLOCK headers at a time. Once
    iterated, `whole` says whether the archive ended as it should: every header good, the
    end-of-archive zero blocks reached, nothing but zeros after them."""

    def __init__(self, path: str):
        self.path = path
        self.whole = False
        self._ended, self._stop = False, 0

    def __iter__(self) -> Iterator[tuple[str, int, int]]:
        with open(self.path, "rb") as f:
            end = os.fstat(f.fileno()).st_size
            if end == 0:
                return
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            block: list[tuple[int, int, tuple[str, int, int] | None]] = []
            for header in self._headers(mm, end):
                block.append(header)
                if len(block) == BLOCK:
                    good = _checksums_ok(mm, block)
                    yield from (m for _, _, m in block[:good] if m is not None)
                    if good < len(block):
                        return
                    block = []
            good = _checksums_ok(mm, block)
            yield from (m for _, _, m in block[:good] if m is not None)
            stop = self._stop
            self.whole = self._ended and good == len(block) and mm[stop:].count(0) == end - stop
        finally:
            mm.close()

    def _headers(self, mm: mmap.mmap, end: int) -> Iterator[tuple[int, int, tuple[str, int, int] | None]]:
        """(offset, stored checksum, the regular member it names or None) of each header;
        then `_ended` (the end-of-archive blocks were reached) and `_stop` (where it stopped)."""
        offset, long_name, pax = 0, None, {}
        while offset + 512 <= end:
            header = mm[offset:offset + 512]
            if header[0] == 0 and header.count(0) == 512:
                self._ended = True
                break
            try:  # the usual form: octal digits ended by NUL or space
                size, check = int(header[124:135], 8), int(header[148:154], 8)
            except ValueError:
                size, check = _number(header[124:136]), _number(header[148:156])
            kind = header[156:157]
            data = offset + 512
            member = None
            if kind == b"L":
                long_name = mm[data:data + size].split(b"\0", 1)[0]
            elif kind in (b"x", b"X"):
                pax = _pax(mm[data:data + size])
            elif kind in REGULAR:
                size = int(pax.get("size", size))
                if "path" in pax:
                    name = pax["path"].encode("utf-8", "surrogateescape")
                elif long_name is not None:
                    name = long_name
                else:
                    name = header[:100].split(b"\0", 1)[0]
                    if header[257:262] == b"ustar" and header[345:346] != b"\0":
                        name = header[345:500].split(b"\0", 1)[0] + b"/" + name
                member = (name.decode("utf-8", "surrogateescape"), data, size)
                long_name, pax = None, {}
            elif kind not in SKIPPED:
                raise Unusual
            else:
                long_name, pax = None, {}
            yield offset, check, member
            offset = data + -(-size // 512) * 512
        self._stop = min(offset, end)


def _checksums_ok(mm: mmap.mmap, block: list[tuple[int, int, Any]]) -> int:
    """How many headers of `block` ((offset, stored checksum, _) each), from the first, carry a
    right checksum (the byte sum of the header with its checksum field read as spaces)."""
    import numpy as np

    if not block:
        return 0
    raw = np.frombuffer(mm, np.uint8)
    try:
        at = np.fromiter((b[0] for b in block), np.int64, len(block))
        rows = raw[at[:, None] + np.arange(512)]
        sums = rows.sum(1, dtype=np.int64) - rows[:, 148:156].sum(1, dtype=np.int64) + 8 * 32
        bad = np.flatnonzero(sums != np.fromiter((b[1] for b in block), np.int64, len(block)))
        return int(bad[0]) if len(bad) else len(block)
    finally:
        del raw  # release the buffer before the map closes (`rows` is a copy)


def _pax(data: bytes) -> dict[str, str]:
    """Records `LEN key=value\\n` of a pax extended header."""
    out, i = {}, 0
    while i < len(data):
        length = int(data[i:data.index(b" ", i)])
        key, _, value = data[data.index(b" ", i) + 1:i + length - 1].partition(b"=")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        i += length
    return out


def members_by_tarfile(path: str) -> Iterator[tuple[str, int, int]]:
    """What `scan` lists, read through tarfile (for the archives it leaves to it)."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            while (m := tar.next()) is not None:
                tar.members.clear()  # type: ignore[attr-defined]  # not in the stubs; bounds memory
                if m.isfile():
                    yield m.name, m.offset_data, m.size
    except tarfile.TarError as e:
        raise OSError(str(e)) from None
