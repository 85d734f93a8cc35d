"""The records of the input stage: what was found, what went wrong, what was decoded."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..ids import short_id


@dataclass
class Item:
    """One image not yet decoded. `source` is the string `load_source` reads it back from
    (`path`, `path.npz#17`, `mnist:train#5`, `train.parquet#42`, `shard-000000.tar#000042`).

    `load` must pickle (a `functools.partial` of a module-level function, never a lambda):
    with `--workers` the items travel to decoding processes."""

    source: str
    load: Callable[[], np.ndarray]  # -> canonical pixels; raises BadInput
    label: str | None = None
    meta: dict[str, Any] | None = None  # the image's own metadata (Parquet columns, a WebDataset .json)


@dataclass
class Problem:
    """A skipped input: where it is and why (one line for the user)."""

    where: str
    reason: str


@dataclass
class Discovery:
    """What discovery found besides items: skipped inputs and ignored files."""

    problems: list[Problem] = field(default_factory=list)
    ignored: int = 0


@dataclass
class InputReport:
    """What a pipeline reading inputs reports about them: skipped inputs, ignored files."""

    problems: list[Problem] = field(default_factory=list, repr=False)  # `.skipped` counts them
    ignored_files: int = 0
    notes: list[str] = field(default_factory=list)  # kept but worth a line (e.g. float64 vectors converted)

    @property
    def skipped(self) -> int:
        return len(self.problems)


# images -> named vectors ("recall", and "rerank" when stored): what a decoding worker may run
Embed = Callable[[list[np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class InputOptions:
    """How to read labels and columns from the inputs."""

    label_from: str | None = None    # "parent": a file's parent folder name
    label: str | None = None         # one label for every image without its own
    image_column: str | None = None  # Parquet: the image column; WebDataset: the image extension
    label_column: str | None = None  # Parquet: the label column; WebDataset: the .json key [default: label]


class VectorOrigin(NamedTuple):
    """Where a given vector (`--vectors`) was read: the file, its Parquet column (None: a .npy),
    the row, and the vector's digest (`vector_arrays.vector_digests`)."""
    file: str
    column: str | None
    row: int
    digest: int


@dataclass
class Decoded:
    source: str
    label: str | None
    pixels: np.ndarray  # canonical (H, W, C) uint8
    sha256: str
    meta: dict[str, Any] | None = None
    vectors: dict[str, np.ndarray] | None = None  # named vectors, when a decoding worker embedded it
    quality: float | None = None  # its quality score, when a worker (--ray) scored it
    origins: dict[str, VectorOrigin] | None = None  # where given vectors were read (`gmv repair` reads them again)

    @property
    def short_id(self) -> str:
        return short_id(self.sha256)
