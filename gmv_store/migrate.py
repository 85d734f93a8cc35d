"""Numbered .sql files in the `migrations` package, applied in order, each in one
transaction together with its ledger row (so a failing file leaves nothing behind)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MigrationError

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """All migration files, checked: numbers unique, starting at 1, without gaps."""
    root = folder if folder is not None else resources.files("gmv_store.migrations")
    found = []
    for entry in root.iterdir():
        fname = entry.name
        if not fname.endswith(".sql"):
            continue
        m = _NAME.match(fname)
        if not m:
            raise MigrationError(f"migrations/{fname}: name must look like 0001_some_name.sql")
        found.append(Migration(int(m.group(1)), fname, entry.read_text()))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration numbers must be 1..{len(found)} without gaps or repeats, found {versions}")
    return found


def _ensure_ledger(con: DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)"
    )


def applied_versions(con: DuckDBPyConnection) -> dict[int, str]:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchone()
    if exists is None or not exists[0]:  # count(*) always gives a row
        return {}
    return dict(con.execute("SELECT version, name FROM schema_migrations").fetchall())


def migration_status(con: DuckDBPyConnection, folder: Path | None = None) -> list[dict[str, Any]]:
    """Listing never writes."""
    applied = applied_versions(con)
    return [
        {"version": m.version, "name": m.name, "state": "applied" if m.version in applied else "pending"}
        for m in load_migrations(folder)
    ]


def migrate(con: DuckDBPyConnection, folder: Path | None = None) -> list[Migration]:
    """Apply pending migrations in order; returns the ones applied now."""
    _ensure_ledger(con)
    applied = applied_versions(con)
    known = load_migrations(folder)
    newer = sorted(v for v in applied if v > len(known))
    if newer:
        raise MigrationError(f"the ledger has migration(s) {', '.join(map(str, newer))} applied, which this gmv-store "
                             f"does not know (it knows 1..{len(known)}): a newer version wrote it; fix: upgrade "
                             "gmv-store (pip install -U gmv-store) before using this store")
    done = []
    for mig in known:
        if mig.version in applied:
            continue
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute(mig.sql)
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [mig.version, mig.name])
            con.execute("COMMIT")
        except Exception as e:
            con.execute("ROLLBACK")
            raise MigrationError(f"migrations/{mig.name} failed and was rolled back: {e}") from None
        done.append(mig)
    return done
