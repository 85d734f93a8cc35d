"""Attribution of images that are in no set (`gmv match`, the web UI's upload form).

The same input stage, embedding, quality score and two-stage search as valuation
(`query.value.score_batch`), and nothing written: no generated point, no ledger row, no
value. Each image gets the object `gmv top --json` gives a valued one — its top-k
contributors with rank, distance, credit (Eq. 6 with its own quality), label, owner and
source — plus the k and N it was matched with and the sets that already hold it.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gmv_store.errors import BadInput, param
from gmv_store.images import content_sha256, decode_bytes
from gmv_store.ledger.connection import Connection
from gmv_store.ledger.lookups import contributor_cards, nearest_distance_quantile, sets_holding
from gmv_store.options import DEFAULT_K
from gmv_store.sources import Decoded, InputOptions, InputReport
from gmv_store.store import Store

from .matches import Match
from .value import input_batches, require_training, score_batch

if TYPE_CHECKING:
    from gmv_store.distributed.settings import RaySettings

UPLOAD_NAME_MAX = 120


@dataclass(kw_only=True)
class MatchReport(InputReport):
    k: int
    recall: int
    exact: bool = False
    results: list[dict[str, Any]] = field(default_factory=list, repr=False)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=lambda: {"embed": 0.0, "quality": 0.0, "search": 0.0})


def check_sizes(k: int, recall: int | None) -> tuple[int, int]:
    """k and N as valuation checks them; N defaults to 10·k."""
    recall = 10 * k if recall is None else recall
    if k < 1:
        raise BadInput(f"{param('k')} {k}: must be at least 1")
    if recall < k:
        raise BadInput(f"{param('recall')} {recall}: must be at least {param('k')} ({k})")
    return k, recall


def match(store: Store, paths: Sequence[str], *, k: int = DEFAULT_K, recall: int | None = None, exact: bool = False,
          options: InputOptions | None = None, batch_size: int = 64, batches: Callable[[MatchReport], Iterable[list[Decoded]]] | None = None,
          ray: RaySettings | None = None) -> MatchReport:
    """Top-k contributors of each image found under `paths` (files, folders, arrays,
    datasets), in input order. Bad inputs go to `report.problems`; nothing is stored.
    `batches(report)`: the decoded batches, when not read from `paths` (`query.given`);
    `ray` (RaySettings): decode, embed and score quality on a Ray cluster."""
    t0 = time.perf_counter()
    k, recall = check_sizes(k, recall)
    report = MatchReport(k=k, recall=recall, exact=exact)
    require_training(store)
    source = batches(report) if batches else input_batches(store, [str(p) for p in paths], options, batch_size,
                                                           report, ray)
    for batch in source:
        report.results.extend(match_decoded(store, batch, k, recall, exact, report.timings))
    report.seconds = time.perf_counter() - t0
    return report


def match_decoded(store: Store, batch: list[Decoded], k: int, recall: int, exact: bool = False,
                  timings: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """One result object per decoded image (see the module docstring)."""
    if not batch:
        return []
    timings = timings if timings is not None else {"embed": 0.0, "quality": 0.0, "search": 0.0}
    matches, quality, _ = score_batch(store, batch, k, recall, timings, exact=exact)
    return describe(store.ledger, batch, matches, quality, k, recall, exact)


def decode_upload(data: bytes, filename: str | None) -> Decoded:
    """An uploaded file -> a decoded image, through the fences of ingest (empty, corrupt,
    non-image, smaller than 8×8, decompression bombs: BadInput naming the upload)."""
    name = "".join(c for c in (filename or "upload") if c.isprintable())[:UPLOAD_NAME_MAX] or "upload"
    pixels = decode_bytes(data, f"upload {name}")
    return Decoded(f"upload:{name}", None, pixels, content_sha256(pixels))


def describe(con: Connection, batch: list[Decoded], matches: list[Match], quality: np.ndarray, k: int, recall: int,
             exact: bool) -> list[dict[str, Any]]:
    """Result objects with the contributors' ledger rows (label, owner, source)."""
    info = contributor_cards(con, sorted({c for m in matches for c in m.contributors}))
    sets = sets_holding(con, [d.short_id for d in batch])
    out = []
    for d, m, q in zip(batch, matches, quality):
        contributors = []
        for rank, (cid, dist, credit) in enumerate(zip(m.contributors, m.distances, m.credits), start=1):
            row = info.get(cid, {})
            contributors.append({"rank": rank, "contributor_id": cid, "distance": float(dist), "credit": float(credit),
                                 "label": row.get("label"), "owner": row.get("owner"), "source": row.get("source")})
        out.append({"source": d.source, "generated_id": d.short_id, "sha256": d.sha256, "label": d.label,
                    "quality": float(q), "k": k, "recall": recall, "exact": exact,
                    "valued_in": sets.get(d.short_id, []), "contributors": contributors})
    return out


def usual_nearest(con: Connection, share: float = 0.99) -> float | None:
    """The `share` quantile of the stored top-1 distances (every set's generated images to
    their closest training image): beyond it, an image is unlike what the store has matched."""
    q, n = nearest_distance_quantile(con, share)
    return q if n >= 20 else None  # too few stored matches to say what is usual


def flag_unusual(result: dict[str, Any], p99: float | None) -> dict[str, Any]:
    """Adds `nearest_distance`, `usual_nearest_p99` and `unlike_training` (True when the
    nearest training image is farther than 99 % of stored matches' nearest ones)."""
    d1 = result["contributors"][0]["distance"] if result["contributors"] else None
    result.update(nearest_distance=d1, usual_nearest_p99=p99,
                  unlike_training=bool(d1 is not None and p99 is not None and d1 > p99))
    return result
