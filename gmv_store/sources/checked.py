"""Read a recorded source back and check that it still holds the image stored from it: a
file overwritten since ingest (or a stream such as /dev/stdin) must not lend its new
content to an old id. Used by `gmv repair`, thumbnails and pairwise re-ranking."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SourceChanged
from ..images import content_sha256


def load_checked(source: str, sha256: str, root: Path | None = None) -> np.ndarray:
    """`load_source`, then the content hash against the stored one (or an image id: its first
    16 hex digits); SourceChanged if they differ. `root`: the store's folder (store-relative sources)."""
    if len(sha256) < 16:
        raise ValueError(f"not a content hash or image id: {sha256!r}")
    from gmv_store import sources  # through the package, where callers (and tests) find load_source

    pixels = sources.load_source(source, root)
    now = content_sha256(pixels)
    if not now.startswith(sha256):
        raise SourceChanged(f"{source} now holds another image than the one stored from it (sha256 {sha256[:16]}..., "
                            f"now {now[:16]}...); fix: restore the original file there, or forget the image "
                            f"{sha256[:16]}")
    return pixels
