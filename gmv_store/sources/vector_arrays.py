"""Arrays of vectors as `--vectors` reads them (sources/vectors.py): a float32 matrix from a
.npy (memory-mapped) or a Parquet list column, its dtype and size checked; integer arrays
refused, float64 converted (the caller says so); and each vector's digest, recorded so that
`gmv repair` can tell a file still holds the vector stored (ledger/origins.py)."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BadInput
from .items import Problem
from .parquet import _pa

if TYPE_CHECKING:
    import pyarrow as pa


def as_float32(a: np.ndarray, where: str, notes: list[str]) -> np.ndarray:
    """float16/32 as float32; float64 converted with a note; integers and others refused."""
    if a.dtype == np.float64:
        notes.append(f"{where}: float64 vectors converted to float32")
    elif a.dtype not in (np.float16, np.float32):
        raise BadInput(f"{where}: vectors have dtype {a.dtype}, refused (integer or quantized embeddings are not "
                       "distances the store can use); fix: store float16 or float32 embeddings")
    return np.asarray(a, dtype=np.float32)


def list_matrix(col: pa.Array, dim: int, where: str, first: int, problems: list[Problem]) -> tuple[np.ndarray, np.ndarray]:
    """A Parquet list column -> (rows × dim float array, ok mask); a null or wrong-length row
    is a problem naming it."""
    pa, _ = _pa()
    import pyarrow.compute as pc

    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        raise BadInput(f"{where}: vector column has type {t}, not a list of floats; fix: name the embedding column "
                       "with --vector-column")
    vt = t.value_type
    if not pa.types.is_floating(vt):
        raise BadInput(f"{where}: vectors have dtype {vt}, refused (integer or quantized embeddings are not "
                       "distances the store can use); fix: store float16 or float32 embeddings")
    if pa.types.is_fixed_size_list(t) and t.list_size != dim:
        raise BadInput(f"{where}: vectors have {t.list_size} dimensions, the store takes {dim}; fix: use the "
                       "embeddings of the store's model, or a store made for these (gmv init -p embedder.dim=...)")
    lengths = pc.fill_null(pc.list_value_length(col), -1).to_numpy(zero_copy_only=False)
    ok = lengths == dim
    # a whole file of another size is one line, said before any of its rows is used
    if first == 0 and not ok.any() and len(lengths) and (lengths == lengths[0]).all() and lengths[0] >= 0:
        raise BadInput(f"{where}: vectors have {lengths[0]} dimensions, the store takes {dim}; fix: use the "
                       "embeddings of the store's model, or a store made for these (gmv init -p embedder.dim=...)")
    for i in np.flatnonzero(~ok):
        reason = "no vector (null)" if lengths[i] < 0 else f"vector has {lengths[i]} dimensions, the store takes {dim}"
        problems.append(Problem(f"{where}#{first + i}", reason))
    vals = col.filter(pa.array(ok)).flatten().to_numpy(zero_copy_only=False)
    out = np.zeros((len(lengths), dim), np.float32)
    out[ok] = np.asarray(vals, np.float32).reshape(-1, dim) if len(vals) else 0
    return out, ok


def open_npy(path: Path, dim: int, what: str, notes: list[str]) -> np.ndarray:
    try:
        a: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise BadInput(f"{path}: unreadable .npy ({str(e).splitlines()[0]}); fix: re-save it with numpy") from None
    if a.ndim != 2 or a.shape[1] != dim:
        raise BadInput(f"{path}: {what} vectors have shape {a.shape}, the store takes (rows, {dim}); fix: use the "
                       "embeddings of the store's model, or a store made for these (gmv init -p embedder.dim=...)")
    as_float32(a[:0], str(path), [])  # refuse an integer dtype before any row is read
    if a.dtype == np.float64:
        notes.append(f"{path}: float64 vectors converted to float32")
    return a


@lru_cache(maxsize=16)
def _weights(dim: int) -> np.ndarray:
    """Fixed odd 64-bit weights, from a hash (not a random generator, whose stream may change)."""
    raw = hashlib.shake_128(b"gmv-store vector digest").digest(8 * dim)
    weights: np.ndarray = np.frombuffer(raw, dtype="<u8").astype(np.uint64) | np.uint64(1)
    return weights


def vector_digests(vectors: np.ndarray) -> np.ndarray:
    """One 64-bit digest per row of a (n, dim) matrix taken as float32: its bits as unsigned
    32-bit integers dotted with fixed odd weights, modulo 2**64. Any one changed value changes
    it (an odd weight times a nonzero difference under 2**32 is never 0 mod 2**64). Not a
    defence against a forger: it finds files changed by accident. One matrix-vector product
    per batch, where a hash per row cost ingest several times more."""
    bits = np.ascontiguousarray(vectors, dtype=np.float32).view(np.uint32).astype(np.uint64)
    digests: np.ndarray = bits @ _weights(bits.shape[1])
    return digests
