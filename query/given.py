"""Generated images given as vectors (`gmv value --vectors`, `gmv match --vectors`): their
recall (and re-rank) vectors come with the data, in the layouts of `ingest --vectors`.

Quality is scored from the images when the rows name them; rows without images need a
store whose quality is `none`, and one that does not re-rank from images (or falls back to
the recall distance): both are checked before anything is read.
"""
from __future__ import annotations

from collections.abc import Iterator

from gmv_store.errors import BadInput
from gmv_store.ingest.vectors_in import complete, expect
from gmv_store.sources import Decoded, InputOptions, InputReport
from gmv_store.sources.vectors import VectorOptions, identity_modes, read_vector_batches
from gmv_store.store import Store


def given_batches(store: Store, vo: VectorOptions, options: InputOptions | None, batch_size: int,
                  report: InputReport) -> Iterator[list[Decoded]]:
    """Decoded generated rows with their vectors set; refuses (BadInput) rows without
    images where the store needs images to score or re-rank them."""
    if "id" in identity_modes(vo, options):
        if store.config.quality.name != "none":
            raise BadInput(f"--vectors {vo.path}: rows without images, but the store scores quality with "
                           f"'{store.config.quality.name}' from images; fix: name the images (image_path column, "
                           "--images SHARDS) or use a store made with --quality none")
        if store.reranker.name != "none" and not vo.rerank_vectors:
            raise BadInput(f"--vectors {vo.path}: rows without images or --rerank-vectors, but the store re-ranks with "
                           f"'{store.config.rerank.name}'; fix: name the images (image_path column, --images SHARDS), "
                           "pass --rerank-vectors, or use a store made with --rerank none")
    for batch in read_vector_batches(vo, options, expect(store), batch_size, report):
        yield complete(store, batch)
