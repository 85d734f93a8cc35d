"""Read-only lookups over the ledger: top contributors of generated images, a contributor's
values, leaderboards and store status. Each returns plain dicts (the CLI formats them)."""
from __future__ import annotations

import re
from pathlib import Path

from gmv_store.errors import BadInput, NotFound, param
from gmv_store.ids import short_id
from gmv_store.images import content_sha256
from gmv_store.ledger import rows as _rows
from gmv_store.sources import load_source

_ID = re.compile(r"^[0-9a-f]{16}$")


def resolve_generated(con, ref: str) -> str:
    """A generated id, or an image path / source whose content was valued."""
    if _ID.match(ref):
        return ref
    if not (Path(ref).exists() or "#" in ref or ref.startswith("mnist:")):
        raise NotFound(f"{ref}: neither a 16-hex-digit generated id nor an existing image; fix: pass an id from `gmv values` or a path")
    sha = content_sha256(load_source(ref))
    return short_id(sha)


def top(con, refs: list[str], set_name: str | None = None, limit: int | None = None) -> list[dict]:
    out = []
    for ref in refs:
        gid = resolve_generated(con, ref)
        gens = _rows(con, "SELECT set_name, generated_id, source, label, quality FROM generated WHERE generated_id = ?"
                     + (" AND set_name = ?" if set_name else "") + " ORDER BY set_name",
                     [gid] + ([set_name] if set_name else []))
        if not gens:
            where = f" in set '{set_name}'" if set_name else ""
            how = ("its image file with `gmv value IMAGE --set NAME` (`api.value(store, [IMAGE], NAME)`)" if _ID.match(ref)
                   else f"it with `gmv value {ref} --set NAME`")
            raise NotFound(f"{ref}: not a valued generated image{where}; fix: value {how}, or find valued ids "
                           "with `gmv values --set NAME`")
        for g in gens:
            g["contributors"] = _rows(
                con,
                "SELECT s.rank, s.contributor_id, s.distance, s.credit, c.label, c.owner, c.source "
                "FROM scores s LEFT JOIN contributors c USING (contributor_id) "
                "WHERE s.set_name = ? AND s.generated_id = ? ORDER BY s.rank" + (" LIMIT ?" if limit else ""),
                [g["set_name"], g["generated_id"]] + ([limit] if limit else []),
            )
            out.append(g)
    return out


def contributor(con, cid: str, limit: int = 10) -> dict:
    rows = _rows(con, "SELECT * FROM contributors WHERE contributor_id = ?", [cid])
    if not rows:
        raise NotFound(f"contributor {cid}: not in the store; fix: find ids with `gmv values` or `gmv sql`")
    info = rows[0]
    info["sets"] = _rows(
        con,
        # rank = 1 + how many are worth more (as rank() OVER ...), counted per set without
        # ranking every contributor of every set
        "SELECT v.set_name, v.value, v.value_sum, v.n_credits,"
        " (SELECT count(*) + 1 FROM value_sums w WHERE w.set_name = v.set_name AND w.value_sum > v.value_sum) AS rank,"
        " (SELECT count(*) FROM value_sums w WHERE w.set_name = v.set_name AND w.n_credits > 0) AS n_valued"
        " FROM contributor_values v WHERE v.contributor_id = ? ORDER BY v.set_name",
        [cid],
    )
    info["top_generated"] = _rows(
        con,
        "SELECT s.set_name, s.generated_id, s.rank, s.distance, s.credit, g.label, g.source "
        "FROM scores s JOIN generated g USING (set_name, generated_id) "
        "WHERE s.contributor_id = ? ORDER BY s.credit DESC, s.set_name, s.generated_id LIMIT ?",
        [cid, limit],
    )
    return info


GROUPS = ("owner", "label")


def values(con, set_name: str, by: str | None = None, limit: int | None = 20, offset: int = 0) -> list[dict]:
    """The set's leaderboard (or its roll-up `by` owner or label); `offset` pages through it."""
    if not con.execute("SELECT count(*) FROM sets WHERE set_name = ?", [set_name]).fetchone()[0]:
        names = [r[0] for r in con.execute("SELECT set_name FROM sets ORDER BY 1").fetchall()]
        raise NotFound(f"set '{set_name}' does not exist; valued sets: {', '.join(names) or 'none yet'}")
    lim = (" LIMIT ?" if limit else "") + (" OFFSET ?" if offset else "")
    params = [set_name] + ([limit] if limit else []) + ([offset] if offset else [])
    if by is None:
        # rank and cut first, then join the page's rows only (not every training image)
        return _rows(con, "WITH v AS (SELECT row_number() OVER (ORDER BY value DESC, contributor_id) AS rank,"
                          " contributor_id, value, value_sum, n_credits FROM contributor_values WHERE set_name = ?"
                          " ORDER BY rank" + lim + ")"
                          " SELECT v.rank, v.contributor_id, v.value, v.value_sum, v.n_credits, c.label, c.owner, c.source"
                          " FROM v JOIN contributors c USING (contributor_id) ORDER BY v.rank", params)
    if by not in GROUPS:
        raise BadInput(f"{param('by')} {by!r}: choose one of {', '.join(GROUPS)}")
    return _rows(con, f"SELECT row_number() OVER (ORDER BY sum(v.value) DESC) AS rank, c.{by},"
                      " sum(v.value) AS value, sum(v.value_sum) AS value_sum, count(*) AS n_contributors,"
                      " sum(v.n_credits) AS n_credits"
                      " FROM contributor_values v JOIN contributors c USING (contributor_id)"
                      f" WHERE v.set_name = ? GROUP BY c.{by} ORDER BY value DESC" + lim, params)


def status(con) -> dict:
    one = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    return {
        "training_images": one("SELECT count(*) FROM contributors"),
        "owners": one("SELECT count(DISTINCT owner) FROM contributors"),
        "sets": _rows(con, "SELECT set_name, m AS generated, k, recall, exact FROM sets ORDER BY set_name"),
        "pending_journal": one("SELECT count(*) FROM journal"),
        "pending_refresh": one("SELECT (SELECT count(*) FROM pending_refresh) + (SELECT count(*) FROM pending_removal)"),
        "pending_removal": one("SELECT count(*) FROM pending_removal"),
        "refresh_queue": one("SELECT count(*) FROM refresh_queue"),
        "schema_version": one("SELECT max(version) FROM schema_migrations"),
    }
