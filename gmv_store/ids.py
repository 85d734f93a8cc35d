"""The id rule, written once: an image's id is the first 16 hex digits of its content's
sha256, and its Qdrant point id is the same 16 hex digits read as an unsigned 64-bit integer.

Integer point ids, not UUIDs: ints cross from Qdrant to Python without per-hit string
conversions, and the id and the point id convert both ways without a lookup.
"""
from __future__ import annotations

import hashlib


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
