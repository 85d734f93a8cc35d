"""Read what the criteria need from a store's ledger (any DuckDB connection to it: the
writer's `store.ledger` or a read-only one), through the documented views only."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gmv_store.errors import BadInput, NotFound
from gmv_store.ledger import evaluation as ledger

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection


def set_info(con: Connection, set_name: str) -> dict[str, int]:
    """The set's {"k", "recall", "m"}; NotFound naming the sets there are."""
    size = ledger.set_size(con, set_name)
    if size is None:
        names = ledger.sorted_set_names(con)
        raise NotFound(f"set '{set_name}' does not exist; fix: pass one of: {', '.join(names) or 'none (value a set first)'}")
    return size._asdict()


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


def all_values(con: Connection, set_name: str) -> Values:
    set_info(con, set_name)
    rows = ledger.values_in_set(con, set_name)
    if not rows:
        raise BadInput("the store has no training images; fix: ingest some first")
    cols = list(zip(*rows))
    return Values(np.array(cols[0], dtype=object), np.array(cols[1], dtype=object), np.array(cols[2], dtype=object),
                  np.array(cols[3], dtype=object), np.array(cols[4], dtype=np.float64))


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


def per_generated_rho(con: Connection, set_name: str, k: int) -> dict[str, float]:
    """rho of each labelled generated image of the set at k (its top-k is a prefix of the stored top-k)."""
    info = set_info(con, set_name)
    if k > info["k"]:
        raise BadInput(f"k={k} exceeds the set's k={info['k']}; fix: value into a set with --k {k} or more")
    rho = ledger.same_label_share(con, set_name, k)
    if not rho:
        raise BadInput(f"set '{set_name}' has no labelled generated images with labelled contributors; "
                       "fix: value with --label/--label-from and ingest labelled training images")
    return rho
