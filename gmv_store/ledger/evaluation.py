"""What the evaluation suite (gmv_store/eval/) reads of a ledger: a set's size, every training
image's value in a set, credits, generated rows, the recorded generator. Read-only, through
the documented views only (docs/commands.md, SQL reference), so any connection serves: the
writer's `store.ledger`, a read-only one or a reader's snapshot."""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection


class SetSize(NamedTuple):
    """A set's top-k, recall depth N and number of generated images m."""
    k: int
    recall: int
    m: int


class ValueRow(NamedTuple):
    """A training image with its value in one set (0.0 when never credited)."""
    contributor_id: str
    owner: str | None
    label: str | None
    source: str
    value: float


class TrainingRow(NamedTuple):
    contributor_id: str
    source: str
    label: str | None


class GeneratedRow(NamedTuple):
    generated_id: str
    source: str
    label: str | None
    quality: float


class ContributorCredit(NamedTuple):
    """One contributor of a generated image: its rank, image and credit."""
    rank: int
    source: str
    label: str | None
    credit: float


class Credit(NamedTuple):
    generated_id: str
    contributor_id: str
    credit: float


class StoredScores(NamedTuple):
    """A generated image's stored top-k distances (by rank) and its quality q."""
    generated_id: str
    distances: list[float]
    quality: float


def set_size(con: Connection, set_name: str) -> SetSize | None:
    """The set's k, N and m; None when there is no such set."""
    row = con.execute("SELECT k, recall, m FROM sets WHERE set_name = ?", [set_name]).fetchone()
    return None if row is None else SetSize(int(row[0]), int(row[1]), int(row[2]))


def sorted_set_names(con: Connection) -> list[str]:
    return [str(r[0]) for r in con.execute("SELECT set_name FROM sets ORDER BY 1").fetchall()]


def values_in_set(con: Connection, set_name: str) -> list[ValueRow]:
    """Every training image of the store, in contributor id order, with its value in the set."""
    got = con.execute(
        """
        SELECT c.contributor_id, c.owner, c.label, c.source, coalesce(v.value, 0.0)
        FROM contributors c
        LEFT JOIN contributor_values v ON v.contributor_id = c.contributor_id AND v.set_name = ?
        ORDER BY c.contributor_id
        """,
        [set_name],
    ).fetchall()
    return [ValueRow(*r) for r in got]


def same_label_share(con: Connection, set_name: str, k: int) -> dict[str, float]:
    """Per labelled generated image of the set (in id order): the share of its labelled top-k
    contributors (ranks 1..k) that carry its label."""
    got = con.execute(
        """
        SELECT s.generated_id, avg(CASE WHEN c.label = g.label THEN 1.0 ELSE 0.0 END)
        FROM scores s
        JOIN generated g USING (set_name, generated_id)
        JOIN contributors c USING (contributor_id)
        WHERE s.set_name = ? AND s.rank <= ? AND g.label IS NOT NULL AND c.label IS NOT NULL
        GROUP BY s.generated_id ORDER BY s.generated_id
        """,
        [set_name, k],
    ).fetchall()
    return {str(g): float(r) for g, r in got}


def generated_labels(con: Connection, set_name: str) -> list[tuple[str, str | None]]:
    """(generated id, label) of the set's images, by label, then id."""
    got = con.execute("SELECT generated_id, label FROM generated WHERE set_name = ? ORDER BY label, generated_id",
                      [set_name]).fetchall()
    return [(g, lab) for g, lab in got]


def generated_image(con: Connection, set_name: str, generated_id: str) -> tuple[str, str | None, float] | None:
    """(source, label, quality) of one generated image of the set; None when not in it."""
    row = con.execute("SELECT source, label, quality FROM generated WHERE set_name = ? AND generated_id = ?",
                      [set_name, generated_id]).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def top_contributors(con: Connection, set_name: str, generated_id: str, top: int) -> list[ContributorCredit]:
    """A generated image's contributors of rank 1..top, by rank."""
    got = con.execute(
        """SELECT s.rank, c.source, c.label, s.credit FROM scores s JOIN contributors c USING (contributor_id)
           WHERE s.set_name = ? AND s.generated_id = ? AND s.rank <= ? ORDER BY s.rank""",
        [set_name, generated_id, top]).fetchall()
    return [ContributorCredit(*r) for r in got]


def stored_scores(con: Connection, set_name: str) -> list[StoredScores]:
    """Each generated image of the set with its stored distances by rank and its quality."""
    got = con.execute(
        """SELECT s.generated_id, list(s.distance ORDER BY s.rank), any_value(g.quality)
           FROM scores s JOIN generated g USING (set_name, generated_id)
           WHERE s.set_name = ? GROUP BY s.generated_id""", [set_name]).fetchall()
    return [StoredScores(*r) for r in got]


def generated_point_ids(con: Connection, set_name: str) -> list[int]:
    """The Qdrant point ids of the set's generated images, in generated id order."""
    got = con.execute("SELECT point_id FROM generated_images WHERE set_name = ? ORDER BY generated_id",
                      [set_name]).fetchall()
    return [r[0] for r in got]


def generator_counts(con: Connection, set_name: str) -> list[tuple[str | None, int]]:
    """The generator specs (JSON text, None for images that record none) the set's images
    carry in meta, with how many images carry each."""
    got = con.execute("SELECT json_extract_string(meta, '$.generator') AS g, count(*) FROM generated "
                      "WHERE set_name = ? GROUP BY g", [set_name]).fetchall()
    return [(g, int(n)) for g, n in got]


def training_images(con: Connection, owners: list[str] | None) -> list[TrainingRow]:
    """The training images of the given owners (None: every owner), in contributor id order."""
    where = " WHERE owner IN (SELECT unnest(?))" if owners is not None else ""
    got = con.execute(f"SELECT contributor_id, source, label FROM contributors{where} ORDER BY contributor_id",
                      [owners] if owners is not None else []).fetchall()
    return [TrainingRow(*r) for r in got]


def generated_images(con: Connection, set_name: str) -> list[GeneratedRow]:
    """The set's generated images in generated id order."""
    got = con.execute("SELECT generated_id, source, label, quality FROM generated WHERE set_name = ? "
                      "ORDER BY generated_id", [set_name]).fetchall()
    return [GeneratedRow(*r) for r in got]


def credits_in_set(con: Connection, set_name: str) -> list[Credit]:
    """Every credit of the set (unordered)."""
    got = con.execute("SELECT generated_id, contributor_id, credit FROM scores WHERE set_name = ?",
                      [set_name]).fetchall()
    return [Credit(*r) for r in got]


def credited_values(con: Connection, set_name: str) -> list[tuple[str, float]]:
    """(contributor id, value) of the set's credited training images (unordered)."""
    got = con.execute("SELECT contributor_id, value FROM contributor_values WHERE set_name = ?",
                      [set_name]).fetchall()
    return [(c, v) for c, v in got]


def qualities(con: Connection, set_name: str) -> list[float]:
    """The quality q of each of the set's generated images (unordered)."""
    got = con.execute("SELECT quality FROM generated WHERE set_name = ?", [set_name]).fetchall()
    return [r[0] for r in got]
