"""Ad-hoc, read-only SQL over the documented views.

Three fences, any one of which refuses a write: only SELECT statements pass the parser
check; the connection is opened read-only; and external access (files, URLs, ATTACH,
INSTALL/LOAD of extensions) is disabled in its configuration, then the configuration is
locked so a statement cannot switch it back on.
"""
from __future__ import annotations

import duckdb

from gmv_store.errors import ReadOnlyViolation
from gmv_store.ledger import open_ledger_readonly

SAFE_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}


def check_read_only(sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise ReadOnlyViolation(f"SQL does not parse: {str(e).splitlines()[0]}") from None
    if not statements:
        raise ReadOnlyViolation("no SQL statement given; fix: gmv sql \"SELECT * FROM contributor_values LIMIT 5\"")
    for st in statements:
        if st.type != duckdb.StatementType.SELECT:
            kind = str(st.type).rsplit(".", 1)[-1]
            raise ReadOnlyViolation(
                f"{kind} statements are refused: `gmv sql` is read-only (SELECT only, no files, no extensions)"
            )


def run_sql(store, sql: str, params: list | None = None, on_snapshot=None) -> tuple[list[str], list[tuple]]:
    check_read_only(sql)
    con = open_ledger_readonly(store, config=SAFE_CONFIG, on_snapshot=on_snapshot)
    try:
        cur = con.execute(sql, params or [])
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()
    except duckdb.PermissionException as e:
        raise ReadOnlyViolation(f"refused: {str(e).splitlines()[0]} (`gmv sql` cannot read or write files)") from None
    except duckdb.Error as e:
        raise ReadOnlyViolation(f"SQL error: {str(e).splitlines()[0]}") from None
    finally:
        con.close()
