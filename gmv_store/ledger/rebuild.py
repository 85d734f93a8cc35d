"""What `gmv repair` reads from and does to the tables: the point ids each image table
holds, the rows of points a collection lost (to write those points again), the rows made
back from points' payloads, and the matches and refresh queues emptied before every
generated image is matched again from scratch."""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .connection import insert_columns, transaction
from .records import GENERATED_COLUMNS, TRAINING_COLUMNS, generated_payload, payload_columns, training_payload

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection

IMAGE_TABLES = ("training_images", "generated_images")  # a table name goes into a statement only from here
MATCH_TABLES = ("credits", "value_sums", "recall_lists", "recall_changes")
QUEUE_TABLES = ("refresh_queue", "pending_refresh", "pending_removal")


def _image_table(table: str) -> str:
    if table not in IMAGE_TABLES:
        raise ValueError(f"not an image table: {table!r}")
    return table


@dataclass(frozen=True)
class StoredTraining:
    """A training image's ledger row, as its lost point is written again."""
    point_id: int
    contributor_id: str
    sha256: str
    source: str
    owner: str | None
    label: str | None
    meta: dict[str, Any]
    ingested_at: datetime
    shape: tuple[int, int, int]  # (height, width, channels); 0x0x0 for a row without an image

    def payload(self) -> dict[str, Any]:
        return training_payload(self.contributor_id, self.sha256, self.source, self.owner, self.label, self.meta,
                                self.ingested_at, self.shape)


@dataclass(frozen=True)
class StoredGenerated:
    """A generated image's ledger row with its set's k, N and exactness."""
    point_id: int
    set_name: str
    generated_id: str
    sha256: str
    source: str
    label: str | None
    quality: float
    meta: dict[str, Any]
    valued_at: datetime
    k: int
    recall: int
    exact: bool

    def payload(self) -> dict[str, Any]:
        return generated_payload(self.set_name, self.generated_id, self.sha256, self.source, self.label, self.quality,
                                 self.meta, self.valued_at, self.k, self.recall, self.exact)


def point_ids(con: Connection, table: str) -> set[int]:
    """Every point id an image table holds."""
    return {r[0] for r in con.execute(f"SELECT point_id FROM {_image_table(table)}").fetchall()}


def journal_entries(con: Connection) -> int:
    """Writes the journal holds unfinished."""
    found = con.execute("SELECT count(*) FROM journal").fetchone()
    return int(found[0]) if found else 0


def training_rows_of(con: Connection, ids: Sequence[int]) -> list[StoredTraining]:
    """The training rows of these points, in contributor order."""
    rows = con.execute(
        "SELECT point_id, contributor_id, sha256, source, owner, label, meta, ingested_at, height, width, channels "
        "FROM training_images WHERE point_id IN (SELECT unnest(?)) ORDER BY contributor_id", [list(ids)]).fetchall()
    return [StoredTraining(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}"), r[7], (r[8], r[9], r[10]))
            for r in rows]


def generated_rows_of(con: Connection, ids: Sequence[int]) -> list[StoredGenerated]:
    """The generated rows of these points with their sets' k and N, in (set, id) order."""
    rows = con.execute(
        "SELECT g.point_id, g.set_name, g.generated_id, g.sha256, g.source, g.label, g.quality, g.meta, "
        "g.valued_at, s.k, s.recall, s.exact FROM generated_images g JOIN generated_sets s USING (set_name) "
        "WHERE g.point_id IN (SELECT unnest(?)) ORDER BY 2, 3", [list(ids)]).fetchall()
    return [StoredGenerated(r[0], r[1], r[2], r[3], r[4], r[5], float(r[6]), json.loads(r[7] or "{}"), r[8], int(r[9]),
                            int(r[10]), bool(r[11])) for r in rows]


def insert_training_from_payloads(con: Connection, points: Sequence[tuple[int, dict[str, Any]]], now: datetime) -> None:
    """Training rows made from points' payloads (`now` where a payload lacks its time)."""
    insert_columns(con, "training_images", payload_columns(points, TRAINING_COLUMNS, "ingested_at", now))


def insert_generated_from_payloads(con: Connection, points: Iterable[tuple[int, dict[str, Any]]],
                                   now: datetime) -> None:
    """Generated rows made from points' payloads (their sets are inserted by `sets.insert_set`)."""
    insert_columns(con, "generated_images", payload_columns(points, GENERATED_COLUMNS, "valued_at", now))


def clear_matches(con: Connection) -> None:
    """Credits, running sums and recall lists emptied (in one transaction), before every
    generated image is matched again: damage to them cannot carry over."""
    with transaction(con):
        for table in MATCH_TABLES:
            con.execute(f"DELETE FROM {table}")


def clear_refresh_queues(con: Connection) -> None:
    """The refresh queues emptied: matching every image from scratch covered their work."""
    for table in QUEUE_TABLES:
        con.execute(f"DELETE FROM {table}")
