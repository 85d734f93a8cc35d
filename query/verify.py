"""`gmv verify`: recompute and compare. Checks that Qdrant and the ledger hold the same ids,
that running value sums equal the sums of stored credits, and that re-matching generated
images from their stored vectors (a from-scratch valuation) gives the stored matches."""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from gmv_store.ledger.credits import GeneratedRow, generated_rows, orphan_credits, point_ids_of, sum_mismatches
from gmv_store.store import GENERATED, TABLES, TRAINING, Store

from .matches import Match, read_matches
from .refresh import refresh_due, rescore

SHOWN = 10  # differences of one kind printed before a count


@dataclass
class VerifyReport:
    checked_generated: int = 0
    differences: list[str] = field(default_factory=list)  # the lines to show (SHOWN of each kind at most)
    differing_images: int = 0  # generated images whose recompute differs (all of them, shown or not)

    @property
    def ok(self) -> bool:
        return not self.differences


def _ids_agree(store: Store, report: VerifyReport) -> set[int]:
    """Returns the generated point ids Qdrant holds."""
    held: dict[str, set[int]] = {}
    for collection, table in TABLES.items():
        ledger = point_ids_of(store.ledger, table)
        qdrant = store.vectors.ids(collection)
        held[collection] = qdrant
        for pid in sorted(qdrant - ledger)[:SHOWN]:
            report.differences.append(f"{collection}: point {pid} is in Qdrant but not in the ledger")
        for pid in sorted(ledger - qdrant)[:SHOWN]:
            report.differences.append(f"{collection}: ledger row {pid} has no Qdrant point")
        if qdrant != ledger:
            report.differences.append(f"{collection}: Qdrant holds {len(qdrant):,} points, the ledger {len(ledger):,} rows")
    return held[GENERATED]


def _sums_agree(store: Store, report: VerifyReport, stale: bool = False) -> None:
    rows = sum_mismatches(store.ledger, SHOWN)
    for set_name, cid, vs, total, n1, n2 in rows:
        report.differences.append(f"set {set_name}: contributor {cid} running sum {vs} ({n1} credits) "
                                  f"but its credits add to {total} ({n2})")
    orphans = orphan_credits(store.ledger)
    if orphans and not stale:
        report.differences.append(f"{orphans:,} credits name contributors that are no longer stored (refresh due)")


def verify(store: Store, sample: int | None = 200, seed: int = 0) -> VerifyReport:
    """sample=None checks every generated image; otherwise a seeded random sample of them."""
    report = VerifyReport()
    pending, queued = refresh_due(store.ledger)
    if pending or queued:
        report.differences.append(f"refresh due: {pending:,} training images added or removed and not yet matched, "
                                  f"{queued:,} generated images queued; fix: run `gmv refresh`")
    in_qdrant = _ids_agree(store, report)
    _sums_agree(store, report, stale=bool(pending or queued))
    if pending or queued:
        return report  # scores are stale by design until the refresh runs
    rows = generated_rows(store.ledger)
    if sample is not None and len(rows) > sample:
        rows = random.Random(seed).sample(rows, sample)
    rows = [r for r in rows if r.point_id in in_qdrant]  # missing points were reported above
    fresh = rescore(store, rows) if rows else []
    by_set: defaultdict[str, list[tuple[str, Match]]] = defaultdict(list)
    rows_of: defaultdict[str, list[GeneratedRow]] = defaultdict(list)
    for r, m in zip(rows, fresh):
        by_set[r.set_name].append((r.generated_id, m))
        rows_of[r.set_name].append(r)
    n_diff = 0
    indexed = store.config.index.mode != "exact" and store.vectors.index_state(TRAINING)["indexed_points"] > 0
    for set_name, items in by_set.items():
        stored = read_matches(store.ledger, set_name, [g for g, _ in items], recall_metric=store.embedder.metric)
        for (gid, m), r in zip(items, rows_of[set_name]):
            old = stored.get(gid)
            if old is None and not m.contributors:
                continue
            where = None
            if old is None:
                where = "no stored match"
            elif not old.same_scores(m):
                where = old.first_difference(m)
            elif r.exact or not indexed:
                # an exact search has one answer: the stored recall list (refresh's state) must
                # be a prefix of it; an index's answer may differ a little from one search to
                # the next, so there only the top-k is compared
                where = old.list_difference(m)
            if where is not None:
                n_diff += 1
                if n_diff <= SHOWN:
                    report.differences.append(f"set {set_name}: generated {gid} differs from a recompute at {where}")
    if n_diff > SHOWN:
        report.differences.append(f"... {n_diff:,} generated images differ from a recompute in all")
    report.checked_generated = len(rows)
    report.differing_images = n_diff
    return report
