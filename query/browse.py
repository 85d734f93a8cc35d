"""Read-only views of a store for browsing (the web UI's pages and JSON): a set with its
sizes, its value distribution, a training or generated image's source, an owner's images
and values, where a training image's credit came from, sets that value the same images.
Every function takes a ledger connection (read-only in practice); the statements are in
`gmv_store.ledger.browse` (the plain lists the pages show as they are: `sets`, `owners`,
`owner_images`, ... come from there directly). Leaderboards, top-k lists and a
contributor's values come from `query.lookup`, so the UI and the CLI show the same numbers."""
from __future__ import annotations

import math
import re
from typing import Any

from gmv_store.errors import NotFound
from gmv_store.ledger import browse as ledger
from gmv_store.ledger.connection import Connection

from .lookup import no_such_set

HEX_ID = re.compile(r"^[0-9a-f]{16}$")


def is_id(text: str) -> bool:
    """A contributor or generated id: 16 lowercase hex digits (never a path)."""
    return bool(HEX_ID.match(text))


def one_set(con: Connection, set_name: str) -> dict[str, Any]:
    found = ledger.sets(con, set_name)
    if not found:
        raise no_such_set(con, set_name)
    return found[0]


def value_histogram(con: Connection, set_name: str, bins: int = 24) -> dict[str, Any]:
    """Counts of the credited contributors' values in `bins` equal steps of log10(value)
    (values span orders of magnitude), and how many training images got no credit."""
    lo, hi, n = ledger.value_range(con, set_name)
    total = ledger.training_count(con)
    out: dict[str, Any] = {"edges": [], "counts": [], "credited": n, "uncredited": max(total - n, 0)}
    if not n or lo is None or hi is None:
        return out
    a, b = math.log10(lo), math.log10(hi)
    width = (b - a) / bins if b > a else 1.0
    nb = bins if b > a else 1
    got = ledger.log_value_bins(con, set_name, a, width, nb)
    out["edges"] = [10 ** (a + i * width) for i in range(nb + 1)]
    out["counts"] = [got.get(i, 0) for i in range(nb)]
    return out


def training_source(con: Connection, contributor_id: str) -> tuple[str, str]:
    """(recorded source, sha256) of a training image; NotFound for an unknown id."""
    found = ledger.training_source(con, contributor_id)
    if found is None:
        raise NotFound(f"training image {contributor_id} is not in the store")
    return found


def generated_source(con: Connection, set_name: str, generated_id: str) -> tuple[str, str]:
    found = ledger.generated_source(con, set_name, generated_id)
    if found is None:
        raise NotFound(f"generated image {generated_id} is not in set '{set_name}'")
    return found


def owner(con: Connection, owner_name: str) -> dict[str, Any]:
    """An owner's images (count, labels) and per set: value, share of the set, rank among
    owners and how many of its images were credited."""
    n, labels = ledger.owner_counts(con, owner_name)
    if not n:
        raise NotFound(f"owner '{owner_name}' has no training images in the store")
    return {"owner": owner_name, "training_images": n, "labels": labels, "sets": ledger.owner_sets(con, owner_name)}


def contributed_to(con: Connection, contributor_id: str, per_set: int = 12) -> list[dict[str, Any]]:
    """Per set (its credits sum within a set only; k differs between sets): the generated
    images a training image is credited in most, with the credit's share of their quality q."""
    out: dict[str, dict[str, Any]] = {}
    for r in ledger.credited_in(con, contributor_id, per_set):
        n_generated = r.pop("n_generated")
        out.setdefault(r["set_name"], {"set_name": r["set_name"], "n_generated": n_generated, "rows": []})["rows"].append(r)
    return list(out.values())


def set_groups(con: Connection) -> list[list[dict[str, Any]]]:
    """Sets that value the same generated images (often one run at several k), each group's
    sets with their k and labelled count; groups of one included."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in ledger.set_fingerprints(con):
        out.setdefault(r.pop("fingerprint"), []).append(r)
    return list(out.values())
