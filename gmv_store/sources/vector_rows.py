"""Rows of a vector file read again (`gmv repair` of a store whose vectors came with the data):
the rows of a .npy matrix or of a Parquet list column, as `--vectors` read them (float32)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import BadInput
from .items import Problem
from .vector_arrays import as_float32, list_matrix, open_npy


def read_rows(file: str, column: str | None, rows: Sequence[int], dim: int) -> np.ndarray:
    """float32 (len(rows), dim): these rows of a .npy (`column` None) or of a Parquet file's
    list column. A row the column holds no `dim` floats for is all zeros. FileNotFoundError
    for a missing file, BadInput for one that no longer fits (fewer rows, another size or
    dtype, no such column), OSError/ValueError for an unreadable one."""
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(file)
    need = max(rows, default=-1) + 1
    if column is None:
        a = open_npy(path, dim, "recall", [])
        if len(a) < need:
            raise BadInput(f"{file}: {len(a):,} rows, row {need - 1:,} was read from it")
        return as_float32(np.asarray(a[np.asarray(rows, dtype=np.int64)]), file, [])
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    if column not in schema.names:
        raise BadInput(f"{file}: no column '{column}' any more")
    col = pq.read_table(path, columns=[column]).column(column)
    if len(col) < need:
        raise BadInput(f"{file}: {len(col):,} rows, row {need - 1:,} was read from it")
    taken = col.take(pa.array(rows, pa.int64())).combine_chunks()
    problems: list[Problem] = []
    out, _ = list_matrix(taken, dim, file, 0, problems)
    return out
