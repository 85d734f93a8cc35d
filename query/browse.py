"""Read-only views of a store for browsing (the web UI's pages and JSON): sets with their
sizes, a set's value distribution and generated images, an owner's images and values.
Every function takes a ledger connection (read-only in practice) and returns plain dicts,
through the documented views only. Leaderboards, top-k lists and a contributor's values
come from `query.lookup`, so the UI and the CLI show the same numbers."""
from __future__ import annotations

import math
import re

from gmv_store.errors import NotFound
from gmv_store.ledger import rows as _rows

HEX_ID = re.compile(r"^[0-9a-f]{16}$")


def is_id(text: str) -> bool:
    """A contributor or generated id: 16 lowercase hex digits (never a path)."""
    return bool(HEX_ID.match(text))


def counts(con) -> dict:
    one = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    return {"training_images": one("SELECT count(*) FROM contributors"),
            "owners": one("SELECT count(DISTINCT owner) FROM contributors"),
            "labels": one("SELECT count(DISTINCT label) FROM contributors"),
            "generated_images": one("SELECT count(*) FROM generated")}


def sets(con, set_name: str | None = None) -> list[dict]:
    """Each set (or the one named) with m, k, N, when it began, its generated images' mean
    quality, how many contributors it credits and the sum of its values."""
    return _rows(con, """
        SELECT s.set_name, s.m, s.k, s.recall, s.created_at, g.mean_quality, g.labelled,
               coalesce(v.n_credited, 0) AS n_credited, coalesce(v.value_total, 0.0) AS value_total
        FROM sets s
        LEFT JOIN (SELECT set_name, avg(quality) AS mean_quality, count(label) AS labelled
                   FROM generated GROUP BY 1) g USING (set_name)
        LEFT JOIN (SELECT set_name, count(*) AS n_credited, sum(value) AS value_total
                   FROM contributor_values GROUP BY 1) v USING (set_name)
        """ + ("WHERE s.set_name = ? " if set_name is not None else "") + "ORDER BY s.set_name",
        [set_name] if set_name is not None else [])


def one_set(con, set_name: str) -> dict:
    found = sets(con, set_name)
    if not found:
        names = [r[0] for r in con.execute("SELECT set_name FROM sets ORDER BY 1").fetchall()]
        raise NotFound(f"set '{set_name}' does not exist; valued sets: {', '.join(names) or 'none yet'}")
    return found[0]


def value_histogram(con, set_name: str, bins: int = 24) -> dict:
    """Counts of the credited contributors' values in `bins` equal steps of log10(value)
    (values span orders of magnitude), and how many training images got no credit."""
    lo, hi, n = con.execute("SELECT min(value), max(value), count(*) FROM contributor_values WHERE set_name = ?",
                            [set_name]).fetchone()
    total = con.execute("SELECT count(*) FROM contributors").fetchone()[0]
    out = {"edges": [], "counts": [], "credited": int(n), "uncredited": max(int(total) - int(n), 0)}
    if not n:
        return out
    a, b = math.log10(lo), math.log10(hi)
    width = (b - a) / bins if b > a else 1.0
    nb = bins if b > a else 1
    got = dict(con.execute(
        "SELECT least(?, greatest(0, floor((log10(value) - ?) / ?)))::INT AS bin, count(*) FROM contributor_values "
        "WHERE set_name = ? GROUP BY 1", [nb - 1, a, width, set_name]).fetchall())
    out["edges"] = [10 ** (a + i * width) for i in range(nb + 1)]
    out["counts"] = [int(got.get(i, 0)) for i in range(nb)]
    return out


def generated_images(con, set_name: str, limit: int = 48, offset: int = 0) -> list[dict]:
    """A page of the set's generated images, highest quality first."""
    return _rows(con, "SELECT generated_id, label, quality, source FROM generated WHERE set_name = ? "
                      "ORDER BY quality DESC, generated_id LIMIT ? OFFSET ?", [set_name, limit, offset])


def generated_row(con, set_name: str, generated_id: str) -> dict:
    found = _rows(con, "SELECT * FROM generated WHERE set_name = ? AND generated_id = ?", [set_name, generated_id])
    if not found:
        raise NotFound(f"generated image {generated_id} is not in set '{set_name}'")
    return found[0]


def training_source(con, contributor_id: str) -> tuple[str, str]:
    """(recorded source, sha256) of a training image; NotFound for an unknown id."""
    row = con.execute("SELECT source, sha256 FROM contributors WHERE contributor_id = ?", [contributor_id]).fetchone()
    if row is None:
        raise NotFound(f"training image {contributor_id} is not in the store")
    return row[0], row[1]


def generated_source(con, set_name: str, generated_id: str) -> tuple[str, str]:
    row = con.execute("SELECT source, sha256 FROM generated WHERE set_name = ? AND generated_id = ?",
                      [set_name, generated_id]).fetchone()
    if row is None:
        raise NotFound(f"generated image {generated_id} is not in set '{set_name}'")
    return row[0], row[1]


def label_share(con, set_name: str, generated_id: str) -> float | None:
    """The share of a generated image's top-k that carry its label (its own ρ), or None
    when it or they have no labels."""
    row = con.execute(
        "SELECT avg(CASE WHEN c.label = g.label THEN 1.0 ELSE 0.0 END), count(*) FROM scores s "
        "JOIN generated g USING (set_name, generated_id) JOIN contributors c USING (contributor_id) "
        "WHERE s.set_name = ? AND s.generated_id = ? AND g.label IS NOT NULL AND c.label IS NOT NULL",
        [set_name, generated_id]).fetchone()
    return float(row[0]) if row[1] else None


def owner(con, owner_name: str) -> dict:
    """An owner's images (count, labels) and per set: value, share of the set, rank among
    owners and how many of its images were credited."""
    n, labels = con.execute("SELECT count(*), count(DISTINCT label) FROM contributors WHERE owner = ?",
                            [owner_name]).fetchone()
    if not n:
        raise NotFound(f"owner '{owner_name}' has no training images in the store")
    per_set = _rows(con, """
        SELECT set_name, value, value_sum, n_contributors, n_credits, rank, n_owners, share FROM (
            SELECT o.*, rank() OVER (PARTITION BY set_name ORDER BY value DESC) AS rank,
                   count(*) OVER (PARTITION BY set_name) AS n_owners,
                   value / sum(value) OVER (PARTITION BY set_name) AS share
            FROM owner_values o)
        WHERE owner = ? ORDER BY set_name""", [owner_name])
    return {"owner": owner_name, "training_images": int(n), "labels": int(labels), "sets": per_set}


def owner_images(con, owner_name: str, set_name: str | None, limit: int = 48, offset: int = 0) -> list[dict]:
    """A page of an owner's images with their value in `set_name` (0 when not credited),
    most valuable first; without a set, in id order."""
    return _rows(con, """
        SELECT c.contributor_id, c.label, c.source, coalesce(v.value, 0.0) AS value, coalesce(v.n_credits, 0) AS n_credits
        FROM contributors c
        LEFT JOIN contributor_values v ON v.contributor_id = c.contributor_id AND v.set_name = ?
        WHERE c.owner = ? ORDER BY value DESC, c.contributor_id LIMIT ? OFFSET ?""",
                 [set_name, owner_name, limit, offset])


def contributed_to(con, contributor_id: str, per_set: int = 12) -> list[dict]:
    """Per set (its credits sum within a set only; k differs between sets): the generated
    images a training image is credited in most, with the credit's share of their quality q."""
    rows = _rows(con, """
        SELECT * FROM (
            SELECT s.set_name, s.generated_id, s.rank, s.distance, s.credit, s.credit / g.quality AS share,
                   g.label, g.source, row_number() OVER (PARTITION BY s.set_name ORDER BY s.credit DESC, s.generated_id) AS n,
                   count(*) OVER (PARTITION BY s.set_name) AS n_generated
            FROM scores s JOIN generated g USING (set_name, generated_id) WHERE s.contributor_id = ?)
        WHERE n <= ? ORDER BY set_name, n""", [contributor_id, per_set])
    out: dict[str, dict] = {}
    for r in rows:
        grp = out.setdefault(r["set_name"], {"set_name": r["set_name"], "n_generated": r.pop("n_generated"), "rows": []})
        r.pop("n_generated", None)
        grp["rows"].append(r)
    return list(out.values())


def value_by_label(con, set_name: str, limit: int = 20) -> list[tuple[str, float]]:
    """(contributor label, share of the set's value), largest first: where the credit went."""
    rows = con.execute(
        "SELECT coalesce(c.label, 'none'), sum(v.value) / any_value(t.total) FROM contributor_values v "
        "JOIN contributors c USING (contributor_id) "
        "CROSS JOIN (SELECT sum(value) AS total FROM contributor_values WHERE set_name = ?) t "
        "WHERE v.set_name = ? GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?", [set_name, set_name, limit]).fetchall()
    return [(str(a), float(b)) for a, b in rows if b is not None]


def qualities(con, set_name: str, limit: int = 200_000) -> list[float]:
    return [r[0] for r in con.execute("SELECT quality FROM generated WHERE set_name = ? LIMIT ?",
                                      [set_name, limit]).fetchall()]


def set_groups(con) -> list[list[dict]]:
    """Sets that value the same generated images (often one run at several k), each group's
    sets with their k and labelled count; groups of one included."""
    rows = _rows(con, """
        SELECT s.set_name, s.k, g.labelled, g.fingerprint FROM sets s JOIN (
            SELECT set_name, count(label) AS labelled, md5(string_agg(generated_id, ',' ORDER BY generated_id)) AS fingerprint
            FROM generated GROUP BY 1) g USING (set_name) ORDER BY g.fingerprint, s.k""")
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r.pop("fingerprint"), []).append(r)
    return list(out.values())


def owners(con) -> list[dict]:
    """Every owner with its training images and labels, most images first."""
    return _rows(con, "SELECT owner, count(*) AS training_images, count(DISTINCT label) AS labels FROM contributors "
                      "GROUP BY 1 ORDER BY 2 DESC, 1 NULLS LAST")
