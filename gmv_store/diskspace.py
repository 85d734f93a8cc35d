"""Room on the store's filesystem: checked before each write, and disk-full errors of the
engines reported as one `DiskFull`.

Why a check before writing, not only error handling: the embedded Qdrant engine (qdrant-edge)
writes through memory maps. Its WAL segments (`wal/open-N`), vector chunks
(`vector_storage-*/vectors/chunk_N.mmap`) and payload pages are 32 MiB files created sparse
(ftruncate) and filled by storing into the mapping. When a store lands on a page that the
filesystem cannot back, the kernel sends SIGBUS: the process dies at once, prints nothing,
and no Python handler can turn that into an error. (Observed: `gmv ingest mnist:test` on a
30 MB tmpfs died in `EdgeShard.update` -> memcpy into the mapping of `training/wal/open-1`,
12 MiB in, exit status 135.) So every Qdrant write gmv drives is preceded by `require_free`
with an upper bound of what it can allocate, and DuckDB's and Qdrant's own I/O errors
(ENOSPC, which they do report for their ordinary writes) become the same `DiskFull`.

What the writes allocate (measured, basic profile, 512 MNIST images per batch: 2.6 MB of
float32 vectors, 0.13 MB of payload): the Qdrant WAL grows by the serialized operation
(≈ vectors + payload), the vector chunks by the vectors, the payload pages by the payload,
the ledger by ~180 bytes per row. `vectors_need` takes twice the sum of both copies.
New WAL segments and chunks are created sparse and allocate only as they are written.

One more growth is specific to tmpfs (and ramfs): opening a shard maps each vector chunk and
prefaults it (memmap2 `populate` in `ChunkedVectors::open`, seen in the backtrace of the
SIGBUS of `gmv verify` on a full tmpfs), and on shmem a fault on a hole allocates the page.
Opening a collection there takes every vector chunk to its full 32 MiB (a store whose
`training` collection holds 2 MB of vectors needs ~60 MB more to open). On disk filesystems
a read fault on a hole maps the zero page and allocates nothing (measured on ext4: no
change). `shard_open_need` counts it.

A check cannot reserve space: another process filling the disk between the check and the
write can still cause SIGBUS. The margins make gmv's own writes safe.
"""
from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DiskFull

StrPath = str | os.PathLike[str]

if TYPE_CHECKING:
    from .vectors.base import PreparedUpsert

MiB = 1 << 20
SLACK = 4 * MiB  # page rounding, id tracker, segment metadata, a journal row
ROW_BYTES = 512  # ledger bytes per row, WAL included (measured ~180)
INIT_NEED = 16 * MiB  # a new store: ledger (0.8 MB) + its snapshot + 2 shards (2 MiB of flags each), measured 5.7 MB
POPULATING_FS = {"tmpfs", "ramfs"}  # read faults on holes of a shared mapping allocate pages
# the last: Qdrant's own check before an index build (it refuses before writing anything)
_FULL_TEXT = re.compile(r"No space left on device|os error 28\b|Disk quota exceeded|os error 122\b|"
                        r"database or disk is full|Not enough space available for optimization", re.I)


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str


def _existing(path: StrPath) -> str:
    p = os.path.abspath(os.fspath(path))
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    return p


def mount_of(path: StrPath) -> Mount:
    """The mount point and filesystem type holding `path` (or its nearest existing parent)."""
    p = os.path.realpath(_existing(path))
    best = Mount("/", "unknown")
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if "-" not in parts:
                    continue
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
                fstype = parts[parts.index("-") + 1]
                inside = p == point or p.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best.point):  # the last mount on a point is the visible one
                    best = Mount(point, fstype)
    except OSError:  # not Linux: walk up to the mount point
        q = p
        while not os.path.ismount(q) and os.path.dirname(q) != q:
            q = os.path.dirname(q)
        best = Mount(q, "unknown")
    return best


def free_bytes(path: StrPath) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem holding `path`;
    None if the filesystem does not say (some network and FUSE mounts report no blocks)."""
    st = os.statvfs(_existing(path))
    if st.f_blocks == 0:
        return None
    return st.f_bavail * st.f_frsize


def fmt_bytes(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def require_free(path: StrPath, need: int, what: str) -> None:
    """Raise DiskFull, before anything is written, unless `need` bytes are free under `path`."""
    free = free_bytes(path)
    if free is None or free >= need:
        return
    m = mount_of(path)
    raise DiskFull(
        f"not enough free space on {m.point} ({m.fstype}, holding {_existing(path)}) for {what}: "
        f"{fmt_bytes(free)} free, about {fmt_bytes(need)} needed; fix: free at least {fmt_bytes(need - free)} there "
        "or move the store to a larger disk, then run the same command again (finished work is kept)"
    )


# ----------------------------------------------------------------------------- estimates


def vectors_need(vectors: dict[str, Any], payloads: Sequence[dict[str, Any]] = (), slack: int = SLACK,
                 payload_bytes: int | None = None) -> int:
    """Upper bound of what one Qdrant upsert allocates. It writes the data twice (the WAL
    record, then the vector chunks and payload pages: measured 2.0x the float32 vectors +
    JSON payload); 3x leaves half again for page rounding and record framing. The payloads'
    JSON size is `payload_bytes` where the caller knows it, else they are serialised once."""
    import numpy as np

    vec = sum(int(np.asarray(v).size) * 4 for v in vectors.values())
    if payload_bytes is None:
        payload_bytes = len(json.dumps(list(payloads), default=str)) if payloads else 0
    return 3 * (vec + payload_bytes) + slack


def upsert_need(up: PreparedUpsert, slack: int = SLACK) -> int:
    """`vectors_need` of a prepared batch."""
    return vectors_need(up.vectors, up.payloads, slack, up.payload_bytes)


def ledger_need(ledger_path: StrPath, rows: int, blob_bytes: int = 0) -> int:
    """Upper bound of one ledger transaction: its rows, plus the current DuckDB WAL (an
    automatic checkpoint after the commit may rewrite that much into the database file)."""
    wal = Path(str(ledger_path) + ".wal")
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    return rows * ROW_BYTES + 2 * blob_bytes + wal_bytes + SLACK


def shard_open_need(shard_dir: StrPath) -> int:
    """What opening a qdrant-edge shard can allocate: on tmpfs, the holes of its vector chunks."""
    need = SLACK
    if mount_of(shard_dir).fstype in POPULATING_FS:
        for chunk in Path(shard_dir).glob("segments/*/vector_storage*/vectors/chunk_*.mmap"):
            st = chunk.stat()
            need += max(0, st.st_size - st.st_blocks * 512)
    return need


def require_room_to_open(shard_dir: StrPath, name: str) -> None:
    need = shard_open_need(shard_dir)
    note = " (on tmpfs, opening backs its memory-mapped 32 MiB vector chunks in full)" if need > SLACK else ""
    require_free(shard_dir, need, f"opening vector collection '{name}'{note}")


def check_write(root: Path, engine: str, what: str, *, upsert: PreparedUpsert | None = None, rows: int = 0,
                blob_bytes: int = 0) -> None:
    """Before a journaled write (journal row, Qdrant upsert, ledger transaction) in the store
    at `root`: room for all three, checked once (the engine's `write_prepared` does not
    check again)."""
    from .config import LEDGER_FILE

    need = ledger_need(root / LEDGER_FILE, rows, blob_bytes)
    if upsert is not None and engine != "server":  # a server keeps vectors on its own disk
        need += upsert_need(upsert, slack=0)
    require_free(root, need, what)


# ----------------------------------------------------------------------------- engine errors


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT from the OS, DuckDB ("Could not write file ...: No space left on device"),
    qdrant-edge ("... os error 28") or SQLite; not errors a remote Qdrant server reports."""
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        exc = cur
        seen.add(id(exc))
        if isinstance(exc, (KeyboardInterrupt, SystemExit, DiskFull)):
            return False
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        module = type(exc).__module__ or ""
        if not module.startswith(("qdrant_client", "httpx", "httpcore")) and _FULL_TEXT.search(str(exc)):
            return True
        cur = exc.__cause__ or exc.__context__
    return False


def raise_if_full(exc: BaseException, root: StrPath) -> None:
    """Re-raise an engine's disk-full error as one DiskFull naming the store's filesystem."""
    if not is_disk_full(exc):
        return
    m = mount_of(root)
    free = free_bytes(root)
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    raise DiskFull(
        f"the disk is full: {m.point} ({m.fstype}, holding {_existing(root)}) has {fmt_bytes(free or 0)} free "
        f"({detail[:200]}); fix: free space there or move the store to a larger disk, then run the same command "
        "again (finished work is kept)"
    ) from None
