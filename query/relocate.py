"""Moved data: `gmv relocate OLD NEW` and the reachability check of `gmv status`.

Sources inside the store are recorded relative to it (gmv_store/sources/location.py), so a
store moved or copied whole keeps them. Sources outside it are absolute paths; when their
folder moves, `relocate` rewrites the prefix OLD to NEW in the ledger and in the points'
payloads, journaled by `Store.relocating` so the two never disagree. Sources that now lie
inside the store become relative on the way (a store made before sources were relative
needs only `gmv relocate OLD-STORE-FOLDER NEW-STORE-FOLDER`).

`unreachable` samples recorded sources and checks that their files exist (a stat each, no
decoding), so a store of millions answers in milliseconds; it also guesses the relocation
that would fix a missing one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from gmv_store.errors import BadInput
from gmv_store.ledger.connection import Connection
from gmv_store.ledger.relocate import BROWSED_TABLES, row_count, sample_sources, set_sources, sources_under
from gmv_store.sources.location import source_file, to_record
from gmv_store.store import TABLES, Store

CHUNK = 10_000  # points per journaled step
SAMPLE = 200    # sources checked per table by `unreachable`


@dataclass
class RelocateReport:
    old: str
    new: str
    rewritten: dict[str, int] = field(default_factory=dict)  # collection -> sources rewritten
    made_relative: int = 0                         # of those, now recorded relative to the store
    dry_run: bool = False

    def __repr__(self) -> str:
        return (f"RelocateReport({self.old!r} -> {self.new!r}, rewritten={self.rewritten}, "
                f"made_relative={self.made_relative}{', dry run' if self.dry_run else ''})")


def _prefix(path: str | Path) -> str:
    return os.path.normpath(os.path.abspath(os.path.expanduser(str(path))))


def _rewrite(source: str, old: str, new: str) -> str | None:
    """`source` with its leading path `old` replaced by `new`, or None when it does not
    start with that path (whole path components only: /data/a is no prefix of /data/ab)."""
    if source == old:
        return new
    if source.startswith(old.rstrip("/") + "/") or source.startswith(old + "#"):
        return new + source[len(old):]
    return None


def relocate(store: Store, old: str | Path, new: str | Path, *, dry_run: bool = False) -> RelocateReport:
    """Rewrite recorded sources starting with the folder `old` to start with `new` (which
    must exist); sources that then lie inside the store are recorded relative to it."""
    o, n = _prefix(old), _prefix(new)
    if not Path(n).exists():
        raise BadInput(f"{new}: no such file or folder; fix: give the folder the data lies in now as NEW")
    report = RelocateReport(o, n, dry_run=dry_run)
    for collection, table in TABLES.items():
        changed = []
        for pid, src in sources_under(store.ledger, table, o):
            rewritten = _rewrite(src, o, n)
            assert rewritten is not None  # sources_under matched the same prefix
            moved = to_record(rewritten, store.root)
            if moved != src:
                changed.append((pid, moved))
                report.made_relative += not os.path.isabs(moved.split("#", 1)[0])
        report.rewritten[collection] = len(changed)
        if dry_run:
            continue
        for lo in range(0, len(changed), CHUNK):
            part = changed[lo:lo + CHUNK]
            pids = [p for p, _ in part]
            with store.relocating(collection, pids, {"old": o, "new": n}) as con:
                set_sources(con, table, pids, [s for _, s in part])
    return report


def _guess_fix(missing: Path, root: Path) -> tuple[str, str] | None:
    """(OLD, NEW) for `gmv relocate` when the missing file's tail exists under the store or
    the folder beside it (a store moved together with the data next to it)."""
    parts = missing.parts
    for base in (root.absolute(), root.absolute().parent):
        for i in range(1, len(parts)):
            if (base / PurePath(*parts[i:])).exists():
                return str(PurePath(*parts[:i])), str(base)
    return None


def unreachable(con: Connection, root: Path, sample: int = SAMPLE) -> dict[str, Any]:
    """Recorded sources whose file is missing, from a sample of each table: {"checked",
    "missing", "estimate" (of all sources), "total", "example", "fix"}. Dataset sources
    (`mnist:train#5`) count as reachable."""
    root = Path(root)
    total = checked = missing = estimate = 0
    example = None
    seen: dict[Path, bool] = {}
    for table in BROWSED_TABLES:
        n = row_count(con, table)
        if not n:
            continue
        rows = sample_sources(con, table, sample, n)
        gone = 0
        for src in rows:
            f = source_file(src, root)
            if f is not None and not seen.setdefault(f, f.exists()):
                gone += 1
                example = example or str(f)
        total, checked, missing = total + n, checked + len(rows), missing + gone
        estimate += round(gone * n / len(rows))
    out = {"checked": checked, "missing": missing, "estimate": estimate, "total": total, "example": example,
           "fix": None}
    if example:
        guess = _guess_fix(Path(example), root)
        out["fix"] = (f"gmv relocate {guess[0]} {guess[1]} --store {root}" if guess else
                      f"gmv relocate OLD-FOLDER NEW-FOLDER --store {root} (the folder of {example} is gone)")
    return out


def describe_unreachable(u: dict[str, Any]) -> str | None:
    """One line for a status warning or a page's banner; None when nothing is missing."""
    if not u["missing"]:
        return None
    share = "all" if u["missing"] == u["checked"] else f"{u['missing']} of {u['checked']}"
    return (f"about {u['estimate']:,} of {u['total']:,} recorded image sources cannot be read ({share} sampled "
            f"missing, e.g. {u['example']}): the data moved; fix: {u['fix']}")
