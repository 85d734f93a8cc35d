"""Read-only lookups over the ledger: top contributors of generated images, a contributor's
values, leaderboards and store status. Each returns plain dicts (the CLI formats them)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gmv_store.errors import BadInput, NotFound, param
from gmv_store.ids import short_id
from gmv_store.images import content_sha256
from gmv_store.ledger import lookups as ledger
from gmv_store.ledger.connection import Connection
from gmv_store.sources import load_source

_ID = re.compile(r"^[0-9a-f]{16}$")


def resolve_generated(con: Connection, ref: str) -> str:
    """A generated id, or an image path / source whose content was valued."""
    if _ID.match(ref):
        return ref
    if not (Path(ref).exists() or "#" in ref or ref.startswith("mnist:")):
        raise NotFound(f"{ref}: neither a 16-hex-digit generated id nor an existing image; fix: pass an id from `gmv values` or a path")
    sha = content_sha256(load_source(ref))
    return short_id(sha)


def top(con: Connection, refs: list[str], set_name: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Each generated image's rows (one per set that values it, or `set_name`'s) with its
    top-k contributors (the first `limit`) under "contributors"; NotFound for one not valued."""
    out = []
    for ref in refs:
        gid = resolve_generated(con, ref)
        gens = ledger.generated_by_id(con, gid, set_name)
        if not gens:
            where = f" in set '{set_name}'" if set_name else ""
            how = ("its image file with `gmv value IMAGE --set NAME` (`api.value(store, [IMAGE], NAME)`)" if _ID.match(ref)
                   else f"it with `gmv value {ref} --set NAME`")
            raise NotFound(f"{ref}: not a valued generated image{where}; fix: value {how}, or find valued ids "
                           "with `gmv values --set NAME`")
        for g in gens:
            g["contributors"] = ledger.top_contributors(con, g["set_name"], g["generated_id"], limit)
            out.append(g)
    return out


def contributor(con: Connection, cid: str, limit: int = 10) -> dict[str, Any]:
    """A training image's row with its value in each set ("sets") and the generated images
    it has most credit in ("top_generated", the first `limit`)."""
    info = ledger.contributor_row(con, cid)
    if info is None:
        raise NotFound(f"contributor {cid}: not in the store; fix: find ids with `gmv values` or `gmv sql`")
    info["sets"] = ledger.contributor_sets(con, cid)
    info["top_generated"] = ledger.contributor_top_generated(con, cid, limit)
    return info


GROUPS = ledger.GROUPS


def no_such_set(con: Connection, set_name: str) -> NotFound:
    """The error for an unknown set, naming the sets there are."""
    names = ledger.valued_set_names(con)
    return NotFound(f"set '{set_name}' does not exist; valued sets: {', '.join(names) or 'none yet'}")


def values(con: Connection, set_name: str, by: str | None = None, limit: int | None = 20,
           offset: int = 0) -> list[dict[str, Any]]:
    """The set's leaderboard (or its roll-up `by` owner or label); `offset` pages through it."""
    if not ledger.set_exists(con, set_name):
        raise no_such_set(con, set_name)
    if by is None:
        return ledger.leaderboard(con, set_name, limit, offset)
    if by not in GROUPS:
        raise BadInput(f"{param('by')} {by!r}: choose one of {', '.join(GROUPS)}")
    return ledger.leaderboard_by(con, set_name, by, limit, offset)


def status(con: Connection) -> dict[str, Any]:
    return ledger.status_counts(con)
