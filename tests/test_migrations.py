import duckdb
import pytest

from gmv_store.errors import MigrationError
from gmv_store.migrate import load_migrations, migrate, migration_status


def test_shipped_migrations_numbered_without_gaps():
    migs = load_migrations()
    assert [m.version for m in migs] == list(range(1, len(migs) + 1))
    assert len({m.name for m in migs}) == len(migs)


def folder_and_db(tmp_path, second: tuple[str, str]):
    """A migrations folder holding 0001_a.sql and the given second file, and a fresh database."""
    d = tmp_path / "m"
    d.mkdir()
    (d / "0001_a.sql").write_text("CREATE TABLE a (x INTEGER);")
    (d / second[0]).write_text(second[1])
    return d, duckdb.connect(str(tmp_path / "db.duckdb"))


def test_applied_in_order_once(tmp_path):
    d, con = folder_and_db(tmp_path, ("0002_b.sql", "INSERT INTO a VALUES (1); CREATE TABLE b AS SELECT * FROM a;"))
    assert [m.version for m in migrate(con, d)] == [1, 2]
    assert migrate(con, d) == []  # idempotent
    assert con.execute("SELECT count(*) FROM b").fetchone()[0] == 1
    assert [r["state"] for r in migration_status(con, d)] == ["applied", "applied"]


def test_failure_rolls_back_file_and_ledger_row(tmp_path):
    d, con = folder_and_db(tmp_path, ("0002_bad.sql", "CREATE TABLE half (y INTEGER); INSERT INTO nowhere VALUES (1);"))
    with pytest.raises(MigrationError, match="0002_bad.sql"):
        migrate(con, d)
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert "a" in tables and "half" not in tables
    assert [r["state"] for r in migration_status(con, d)] == ["applied", "pending"]
    # fixing the file lets it apply
    (d / "0002_bad.sql").write_text("CREATE TABLE half (y INTEGER);")
    assert [m.version for m in migrate(con, d)] == [2]


@pytest.mark.parametrize("names", [["0001_a.sql", "0003_c.sql"], ["0001_a.sql", "0001_b.sql"], ["0002_b.sql"]])
def test_gaps_and_duplicates_refused(tmp_path, names):
    d = tmp_path / "m"
    d.mkdir()
    for n in names:
        (d / n).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="without gaps"):
        load_migrations(d)


def test_badly_named_file_refused(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "1_x.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="0001_some_name"):
        load_migrations(d)


def test_listing_never_writes(tmp_path):
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    rows = migration_status(con)
    assert all(r["state"] == "pending" for r in rows)
    assert con.execute("SELECT count(*) FROM information_schema.tables").fetchone()[0] == 0
