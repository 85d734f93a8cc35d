"""Read what the criteria need from a store's ledger (any DuckDB connection to it: the
writer's `store.ledger` or a read-only one), through the documented views only."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gmv_store.errors import BadInput, NotFound


def set_info(con, set_name: str) -> dict:
    row = con.execute("SELECT k, recall, m FROM sets WHERE set_name = ?", [set_name]).fetchone()
    if row is None:
        names = [r[0] for r in con.execute("SELECT set_name FROM sets ORDER BY 1").fetchall()]
        raise NotFound(f"set '{set_name}' does not exist; fix: pass one of: {', '.join(names) or 'none (value a set first)'}")
    return {"k": int(row[0]), "recall": int(row[1]), "m": int(row[2])}


@dataclass
class Values:
    """Every training image of the store with its value in one set (0 when never credited)."""

    contributor_id: np.ndarray  # str
    owner: np.ndarray           # str or None
    label: np.ndarray           # str or None
    source: np.ndarray          # str
    value: np.ndarray           # float64, phi = value_sum / m

    def __len__(self) -> int:
        return len(self.value)


def all_values(con, set_name: str) -> Values:
    set_info(con, set_name)
    rows = con.execute(
        """
        SELECT c.contributor_id, c.owner, c.label, c.source, coalesce(v.value, 0.0)
        FROM contributors c
        LEFT JOIN contributor_values v ON v.contributor_id = c.contributor_id AND v.set_name = ?
        ORDER BY c.contributor_id
        """,
        [set_name],
    ).fetchall()
    if not rows:
        raise BadInput("the store has no training images; fix: ingest some first")
    cols = list(zip(*rows))
    return Values(*(np.array(c, dtype=object) for c in cols[:4]), np.array(cols[4], dtype=np.float64))


def select(values: Values, *, owner: str | None = None, source_glob: str | None = None,
           label: str | None = None, what: str = "group", hint: str = "") -> np.ndarray:
    """Boolean mask of the training images matching every given selector."""
    import fnmatch

    if owner is None and source_glob is None and label is None:
        raise BadInput(f"{what}: no selector given; fix: select its training images by owner, source pattern or label"
                       + (f" ({hint})" if hint else ""))
    mask = np.ones(len(values), dtype=bool)
    if owner is not None:
        mask &= np.array([o == owner for o in values.owner])
    if source_glob is not None:
        mask &= np.array([fnmatch.fnmatchcase(s, source_glob) for s in values.source])
    if label is not None:
        mask &= np.array([lab == label for lab in values.label])
    return mask


def per_generated_rho(con, set_name: str, k: int) -> dict[str, float]:
    """rho of each labelled generated image of the set at k (its top-k is a prefix of the stored top-k)."""
    info = set_info(con, set_name)
    if k > info["k"]:
        raise BadInput(f"k={k} exceeds the set's k={info['k']}; fix: value into a set with --k {k} or more")
    rows = con.execute(
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
    if not rows:
        raise BadInput(f"set '{set_name}' has no labelled generated images with labelled contributors; "
                       "fix: value with --label/--label-from and ingest labelled training images")
    return {g: float(r) for g, r in rows}
