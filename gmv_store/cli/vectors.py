"""`--vectors PATH` and its options, written once for `ingest`, `value` and `match`: rows
whose recall vectors come with the data (docs/precomputed.md). The command receives one
`vectors` argument (None, or the options as a dict for the API's `vectors=`)."""
from __future__ import annotations

import functools
from typing import Any, cast

import click

from .options import F

_OPTIONS = (
    click.option("--vectors", "vectors_path", default=None, metavar="PATH",
                 help="Rows with their recall vectors instead of images: a clip-retrieval folder (img_emb/ + "
                      "metadata/), Parquet with --vector-column, or a .npy with --metadata (docs/precomputed.md)."),
    click.option("--vector-column", default=None, metavar="NAME", help="--vectors Parquet: the column of float lists."),
    click.option("--metadata", default=None, metavar="FILE.parquet", help="--vectors .npy: its row-aligned table."),
    click.option("--id-column", default=None, metavar="NAME",
                 help="--vectors rows without images: the column giving identity (e.g. url), recorded as the source."),
    click.option("--images", multiple=True, metavar="SHARD.tar",
                 help="--vectors: WebDataset shards holding the rows' images, joined on the `key` column (or "
                      "`image_path`) (repeatable)."),
    click.option("--rerank-vectors", default=None, metavar="PATH|COLUMN",
                 help="--vectors: re-rank vectors row-aligned with PATH (folder or .npy), or a Parquet column."),
    click.option("--vectors-model", default=None, metavar="NAME",
                 help="--vectors: the model that made them; refused when the store's is another."),
)
_FIELDS = ("vector_column", "metadata", "id_column", "images", "rerank_vectors", "vectors_model")


def vector_options(f: F) -> F:
    """Adds the options; the command gets `paths` (may be empty with --vectors) and `vectors`."""
    @functools.wraps(f)
    def wrapper(*args: Any, vectors_path: str | None = None, **kwargs: Any) -> Any:
        given = {k: kwargs.pop(k) for k in _FIELDS}
        if vectors_path is None:
            extra = [f"--{k.replace('_', '-')}" for k, v in given.items() if v]
            if extra:
                raise click.UsageError(f"{', '.join(extra)} need --vectors PATH")
            if not kwargs.get("paths"):
                raise click.UsageError("give PATHS (images) or --vectors PATH (rows with their vectors)")
            return f(*args, vectors=None, **kwargs)
        if kwargs.get("paths"):
            raise click.UsageError("give either PATHS (images) or --vectors PATH, not both")
        model = given.pop("vectors_model")
        spec = {"path": vectors_path, **{k: v for k, v in given.items() if v}, **({"model": model} if model else {})}
        return f(*args, vectors=spec, **kwargs)

    decorated: Any = wrapper
    for opt in reversed(_OPTIONS):
        decorated = opt(decorated)
    return cast(F, decorated)
