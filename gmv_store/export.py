"""`gmv export`: one set's values, scores and generated rows, and the contributors (training
images) they refer to, as Parquet or CSV files written by DuckDB's own COPY.

    from gmv_store.export import export
    export("my-store", "gan-v1", "out/")       # out/values.parquet, scores, generated, contributors, manifest.json

The files come from the documented views (docs/commands.md, SQL reference), on a read-only ledger
connection (the writer's snapshot while one runs, as every reader). Each file is written
under a temporary name and renamed when complete, so a file that exists is whole.
`manifest.json` records the set's k, N and m, the store's backends, row counts and when.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import BadInput, GmvError, param
from .ledger import export as ledger_export

FORMATS = ledger_export.FORMATS
TABLES = ledger_export.TABLES
MANIFEST = "manifest.json"


def export(path: str | Path | None, set_name: str, out: str | Path, fmt: str = "parquet", *,
           overwrite: bool = False, note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write `values`, `scores`, `generated` and `contributors` of one set into the folder
    `out` (created if missing), plus manifest.json; returns the manifest.

    Existing files of the same names are refused (BadInput) unless `overwrite`."""
    import duckdb

    from .api import describe, read
    from .eval.ledger_read import set_info

    if fmt not in FORMATS:
        raise BadInput(f"{param('fmt', cli='--format')} {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    files = {name: out / f"{name}.{fmt}" for name in TABLES}
    there = [str(f) for f in [*files.values(), out / MANIFEST] if f.exists()]
    if there and not overwrite:
        raise BadInput(f"{there[0]} exists ({len(there)} file(s) of an earlier export); fix: pass "
                       f"{param('overwrite', cli='--force', value='True')} to replace them or choose another "
                       f"{param('out')}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GmvError(f"{param('out')} {out}: cannot create the folder ({e.strerror}); fix: check the path and permissions") from None
    notes: list[str] = []

    def heard(msg: str) -> None:
        notes.append(msg)
        if note is not None:
            note(msg)

    def write_all(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        info = set_info(con, set_name)  # NotFound naming the sets there are
        counts = {}
        for name in TABLES:
            tmp = files[name].with_name(files[name].name + ".tmp")
            try:
                ledger_export.copy_table(con, name, set_name, tmp, fmt)
                os.replace(tmp, files[name])
            except duckdb.Error as e:
                raise GmvError(f"writing {files[name]}: {str(e).strip().splitlines()[0]}; fix: check free space and "
                               "permissions in --out") from None
            finally:
                tmp.unlink(missing_ok=True)
            counts[name] = ledger_export.count_rows(con, name, set_name)
        version = ledger_export.schema_version(con)
        return {"set": info, "rows": counts, "schema_version": version}

    got = read(path, write_all, note=heard)
    desc = describe(path)
    manifest = {
        "set_name": set_name, **got["set"], "format": fmt,
        "files": {name: {"file": files[name].name, "rows": got["rows"][name]} for name in TABLES},
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "store": desc["store"], "backends": {k: desc[k] for k in ("embedder", "rerank", "quality")},
        "schema_version": got["schema_version"], "read_from_snapshot": bool(notes),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    manifest["out"] = str(out.absolute())
    return manifest
