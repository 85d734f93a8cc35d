"""The id rule, written once: an image's id is the first 16 hex digits of its content's
sha256, and its Qdrant point id is the same 16 hex digits read as an unsigned 64-bit integer.

Integer point ids, not UUIDs: ints cross from Qdrant to Python without per-hit string
conversions, and the id and the point id convert both ways without a lookup.
"""
from __future__ import annotations

import hashlib

import numpy as np


def short_id(sha256: str) -> str:
    """The id of an image (contributor or generated) with content digest `sha256`."""
    return sha256[:16]


def point_id(key: str) -> int:
    """The point id of a digest or id (its first 16 hex digits); any other text is hashed
    first, so that a key of any form maps to one id."""
    try:
        return int(key[:16], 16)
    except ValueError:
        return int(hashlib.sha256(key.encode()).hexdigest()[:16], 16)


def id_of_point(point: int) -> str:
    """The 16-hex-digit id of a point id (the inverse of `point_id` on ids)."""
    return f"{point:016x}"


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NIBBLE = np.zeros(256, dtype=np.uint8)
_NIBBLE[_HEX] = np.arange(16, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"ABCDEF", dtype=np.uint8)] = np.arange(10, 16, dtype=np.uint8)


def id_bytes_of_points(points: np.ndarray) -> np.ndarray:
    """`id_of_point` for an array of point ids at once: (n, 16) ASCII bytes, each row the
    16 lowercase hex digits (a batch of 60,000 in ~3 ms, against ~20 ms for SQL's printf)."""
    big = np.ascontiguousarray(points, dtype=np.uint64).astype(">u8").view(np.uint8).reshape(-1, 8)
    out = np.empty((len(big), 16), dtype=np.uint8)
    out[:, 0::2] = _HEX[big >> 4]
    out[:, 1::2] = _HEX[big & 15]
    return out


def points_of_id_bytes(digits: np.ndarray) -> np.ndarray:
    """`point_id` for (n, 16) ASCII bytes of hex ids (16 digits each): (n,) uint64."""
    v = _NIBBLE[np.asarray(digits, dtype=np.uint8)]
    packed = np.ascontiguousarray((v[:, 0::2] << 4) | v[:, 1::2])
    return packed.view(">u8").reshape(-1).astype(np.uint64)
