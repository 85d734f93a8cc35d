"""Parquet tables with an image column, as Hugging Face `datasets` exports them.

The image column holds encoded image bytes: a binary column, or the `datasets` Image struct
`{bytes, path}`. `--image-column` names it (default: the first such column); the label comes
from `--label-column` (default `label` when present); every other scalar column goes into
the image's metadata. Rows stream a record batch at a time, one row group after another, so
memory stays bounded whatever the file's size. Sources are `train.parquet#ROW` (the row in
the whole file), with `@COLUMN` appended when the image column is not the default one.

Reading one row back (`load`) locates its row group from the footer and reads only that
group's image column; open files and the last few row-group columns are cached, so
thumbnails and image re-ranking of neighbouring rows cost one read.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from ..errors import BadInput
from ..images import decode_bytes
from .base import HELP_WHOLE, Reader, bad_item, file_label, file_stamp, json_value, label_text
from .items import InputOptions, Item

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

BATCH_ROWS = 1024  # rows per record batch: bounded memory, and few Python calls per row
HELP_IMAGE = "fix: name the column of encoded image bytes with --image-column"


def _pa() -> tuple[ModuleType, ModuleType]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - a declared dependency
        raise BadInput("reading Parquet needs pyarrow; fix: pip install pyarrow") from None
    return pa, pq


def _is_bytes(t: pa.DataType) -> bool:
    pa, _ = _pa()
    yes: bool = pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)
    return yes


def image_kind(t: pa.DataType) -> str | None:
    """'binary' for a bytes column, 'struct' for a `{bytes, path}` struct, else None."""
    pa, _ = _pa()
    if _is_bytes(t):
        return "binary"
    if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0 and _is_bytes(t.field("bytes").type):
        return "struct"
    return None


def _is_scalar(t: pa.DataType, label: bool = False) -> bool:
    """A label is an integer, a string, a bool or a float; metadata may also be a date or a
    decimal. Lists, structs, maps and bytes are neither."""
    pa, _ = _pa()
    ty = pa.types
    if ty.is_dictionary(t):
        return _is_scalar(t.value_type, label)
    ok = (ty.is_integer(t) or ty.is_floating(t) or ty.is_boolean(t) or ty.is_string(t) or ty.is_large_string(t)
          or ty.is_string_view(t))
    return ok or (not label and (ty.is_temporal(t) or ty.is_decimal(t)))


def _floats(t: pa.DataType) -> bool:
    pa, _ = _pa()
    yes: bool = pa.types.is_floating(t.value_type if pa.types.is_dictionary(t) else t)
    return yes


def _whole_labels(pf: pq.ParquetFile, path: Path, label: str) -> None:
    """A float label column holds class numbers stored as floats (pandas turns an integer
    column with a missing value into floats; the missing value becomes null, no label):
    refuse the file, before reading images, if any value is NaN or a fraction. One pass over
    that column alone."""
    import pyarrow.compute as pc

    row = 0
    for batch in pf.iter_batches(1 << 16, columns=[label], use_threads=False):
        col = batch.column(0)
        col = col.dictionary_decode() if hasattr(col, "dictionary_decode") else col
        whole = pc.and_(pc.is_finite(col), pc.equal(col, pc.floor(col)))
        bad = pc.indices_nonzero(pc.fill_null(pc.invert(whole), False))
        if len(bad):
            i = bad[0].as_py()
            raise BadInput(f"{path}: label column '{label}' holds {col[i].as_py()!r} at row {row + i:,}, not a whole "
                           f"number; {HELP_WHOLE}, or name another column with --label-column")
        row += batch.num_rows


def _columns(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} ({f.type})" for f in schema) or "none"


@dataclass(frozen=True)
class Layout:
    """Which columns of a file hold what."""

    image: str
    struct: bool          # the image is the `bytes` field of a struct
    label: str | None
    meta: tuple[str, ...]
    suffix: str           # "@COLUMN" in sources when the image column is not the default

    @property
    def columns(self) -> list[str]:
        return [self.image] + ([self.label] if self.label else []) + list(self.meta)


def default_image_column(schema: pa.Schema) -> str | None:
    return next((f.name for f in schema if image_kind(f.type)), None)


def layout(schema: pa.Schema, path: Path, opts: InputOptions) -> Layout:
    default = default_image_column(schema)
    image = opts.image_column or default
    if image is None:
        raise BadInput(f"{path}: no image column (columns: {_columns(schema)}); {HELP_IMAGE}, "
                       "or store images as binary bytes or a {bytes, path} struct")
    if schema.get_field_index(image) < 0:
        raise BadInput(f"{path}: no column '{image}' (columns: {_columns(schema)}); {HELP_IMAGE}")
    kind = image_kind(schema.field(image).type)
    if kind is None:
        raise BadInput(f"{path}: column '{image}' has type {schema.field(image).type}, not image bytes; {HELP_IMAGE}")
    label = opts.label_column or ("label" if schema.get_field_index("label") >= 0 and image != "label" else None)
    if label is not None:
        if schema.get_field_index(label) < 0:
            raise BadInput(f"{path}: no label column '{label}' (columns: {_columns(schema)}); "
                           "fix: name an existing column with --label-column")
        if not _is_scalar(schema.field(label).type, label=True):
            raise BadInput(f"{path}: label column '{label}' has type {schema.field(label).type}; fix: choose a column "
                           "of integers or strings with --label-column")
    meta = tuple(f.name for f in schema if f.name not in (image, label) and not f.name.startswith("__")
                 and _is_scalar(f.type))
    return Layout(image, kind == "struct", label, meta, "" if image == default else f"@{image}")


@lru_cache(maxsize=8)
def _open(path: str, mtime_ns: int, size: int) -> tuple[pq.ParquetFile, tuple[int, ...], int]:
    """An open ParquetFile with its row-group starts (cumulative row counts)."""
    _, pq = _pa()
    try:
        # buffer_size/pre_buffer: read column chunks a buffer at a time, not whole
        pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BadInput(f"{path}: not a readable Parquet file ({first[:160]}); fix: re-export it or remove it") from None
    starts: list[int] = []
    total = 0
    for i in range(pf.metadata.num_row_groups):
        starts.append(total)
        total += pf.metadata.row_group(i).num_rows
    return pf, tuple(starts), total


def _items(path: Path, batch: pa.RecordBatch, first_row: int, lay: Layout, opts: InputOptions) -> Iterator[Item]:
    col = batch.column(lay.image)
    data = (col.field("bytes") if lay.struct else col).to_pylist()
    if lay.struct and col.null_count:  # a null struct's child slot is undefined
        data = [None if n else d for d, n in zip(data, col.is_null().to_pylist())]
    labels = batch.column(lay.label).to_pylist() if lay.label else None
    metas = [batch.column(m).to_pylist() for m in lay.meta]
    fallback = file_label(path, opts)
    for i, blob in enumerate(data):
        src = f"{path}#{first_row + i}{lay.suffix}"
        lab = label_text(labels[i], f"label column '{lay.label}'") if labels is not None and labels[i] is not None \
            else fallback
        meta = {m: json_value(v[i]) for m, v in zip(lay.meta, metas)} or None
        if blob is None:
            yield bad_item(src, f"no image bytes in column '{lay.image}'; fix: export the dataset with the images "
                                "embedded (datasets: embed_external_files=True)")
        else:
            yield Item(src, partial(decode_bytes, blob, src), lab, meta)


class ParquetReader(Reader):
    name = "parquet"
    suffixes = frozenset({".parquet", ".pq"})
    keyed = True

    def items(self, path: Path, opts: InputOptions) -> Iterator[Item]:
        _, pq = _pa()
        pf, starts, total = _open(*file_stamp(path))
        lay = layout(pf.schema_arrow, path, opts)
        if lay.label and _floats(pf.schema_arrow.field(lay.label).type):
            _whole_labels(pf, path, lay.label)
        for rg, start in enumerate(starts):
            end = starts[rg + 1] if rg + 1 < len(starts) else total
            row = start
            try:
                for batch in pf.iter_batches(BATCH_ROWS, row_groups=[rg], columns=lay.columns, use_threads=False):
                    yield from _items(path, batch, row, lay, opts)
                    row += batch.num_rows
            except (OSError, ValueError) as e:  # pyarrow's errors derive from these
                if row < end:
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    yield bad_item(f"{path}#{row}-{end - 1}", f"unreadable rows {row}..{end - 1} (row group {rg}: "
                                                              f"{first[:160]}); fix: re-export the file")

    def _locate(self, path: Path, key: str) -> tuple[pq.ParquetFile, int, int, int, str | None]:
        row_text, _, column = key.partition("@")
        pf, starts, total = _open(*file_stamp(path))
        if not row_text.isdigit():
            raise BadInput(f"{path}#{key}: '{row_text}' is not a row number; fix: give one of #0 to #{total - 1} "
                           f"(the file holds {total:,} rows)")
        if int(row_text) >= total:
            raise BadInput(f"{path}#{key}: row out of range (the file holds {total:,} rows)")
        row = int(row_text)
        rg = bisect_right(starts, row) - 1
        return pf, row, rg, starts[rg], column or None

    def item(self, path: Path, key: str, opts: InputOptions) -> Item:
        pf, row, rg, start, column = self._locate(path, key)
        lay = layout(pf.schema_arrow, path, InputOptions(label_from=opts.label_from, label=opts.label,
                                                         image_column=column or opts.image_column,
                                                         label_column=opts.label_column))
        table = pf.read_row_group(rg, columns=lay.columns, use_threads=False).slice(row - start, 1)
        return next(_items(path, table.to_batches()[0], row, lay, opts))

    def load(self, path: Path, key: str | None) -> np.ndarray:
        if not path.exists():
            raise BadInput(f"{path}: no such file")
        _, row, rg, start, column = self._locate(path, key or "")
        blob = _image_column(*file_stamp(path), rg, column)[row - start].as_py()
        if blob is None:
            raise BadInput(f"{path}#{key}: no image bytes in this row")
        return decode_bytes(blob, f"{path}#{key}")


@lru_cache(maxsize=16)  # Hugging Face writes image tables in row groups of 100 rows: small
def _image_column(path: str, mtime_ns: int, size: int, rg: int, column: str | None) -> pa.Array:
    """The image bytes of one row group (read once for neighbouring rows)."""
    pf, _, _ = _open(path, mtime_ns, size)
    lay = layout(pf.schema_arrow, Path(path), InputOptions(image_column=column))
    col = pf.read_row_group(rg, columns=[lay.image], use_threads=False).column(0).combine_chunks()
    return col.field("bytes") if lay.struct else col
