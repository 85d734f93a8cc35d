"""The `Reader` interface every input kind implements, and helpers they share.

A reader lists the images of a file lazily (`items`) and reads one back from the key in
its source string (`load`): plain image files have no key, `batch.npz#17` and
`train.parquet#17` the row, `shard-000000.tar#000017` the WebDataset sample key.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import numpy as np

from ..errors import BadInput
from .items import InputOptions, Item

HELP_WHOLE = "fix: store whole-number labels (pandas: .astype('Int64')) or text labels"


def label_text(value: object, column: str = "label") -> str | None:
    """A label from any array or column value, as the text stored in the ledger. A float
    label is a class number stored as a float (pandas turns an integer column with a missing
    value into floats): a whole one is stored as the integer ("7", not "7.0"), NaN or a
    fraction is refused, naming `column`."""
    if value is None:
        return None
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not float(value).is_integer():  # NaN and inf are not integers either
            raise BadInput(f"{column} holds {float(value)!r}, not a whole number; {HELP_WHOLE}")
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def json_value(value: Any) -> Any:
    """A column or .json value as plain JSON (NaN -> null, dates -> ISO text)."""
    if type(value) is str or type(value) is int:  # the common cases first: once per row and column
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def file_label(path: Path, opts: InputOptions) -> str | None:
    return path.parent.name if opts.label_from == "parent" else opts.label


def _refuse(reason: str) -> NoReturn:
    raise BadInput(reason)


def bad_item(source: str, reason: str) -> Item:
    """A place in a file that cannot be read (a truncated member, a corrupt row group): it
    becomes one `skipped:` line at its position in the input order, and reading goes on."""
    return Item(source, partial(_refuse, reason))


def file_stamp(path: Path) -> tuple[str, int, int]:
    """(path, mtime, size): a cache key that changes when the file is rewritten."""
    st = os.stat(path)
    return str(path), st.st_mtime_ns, st.st_size


class Reader:
    """A kind of input file. `keyed` readers hold many images, addressed as `path#key`."""

    name: ClassVar[str]
    suffixes: ClassVar[frozenset[str]]
    keyed: ClassVar[bool] = False

    def items(self, path: Path, opts: InputOptions) -> Iterator[Item]:
        """Every image of the file, in a stable order; raises BadInput for an unusable file."""
        raise NotImplementedError

    def item(self, path: Path, key: str, opts: InputOptions) -> Item:
        """The one image `path#key` (a recorded source given as an argument)."""
        return Item(f"{path}#{key}", partial(self.load, path, key), file_label(path, opts))

    def load(self, path: Path, key: str | None) -> np.ndarray:
        """Canonical pixels of one recorded source."""
        raise NotImplementedError
