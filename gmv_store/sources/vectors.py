"""Vectors that come with the data (`--vectors PATH`): the recall embedding of each row read
from files, in three layouts, as `Decoded` records whose `vectors` are set, so both
pipelines take them where they would embed.

  clip-retrieval output   PATH/img_emb/img_emb_N.npy + PATH/metadata/metadata_N.parquet,
                          row-aligned file by file (float16 or float32)
  Parquet                 files (or a folder of them) with --vector-column NAME
                          (a list or fixed-size list of floats per row)
  one .npy matrix         with --metadata FILE.parquet, row-aligned

A row's identity is its image when the row names one (an `image_path` column, an image
column of the same table, or `--images SHARDS` joined on the `key` column): the image is
read for its sha256, size and thumbnail, and never embedded; its source is the image's own.
Otherwise `--id-column NAME` gives the identity: sha256 of the value, the value recorded as
the source, and a row with no pixels (size 0×0×0). Re-rank vectors come the same way
(`--rerank-vectors`): a folder or .npy row-aligned with PATH, or a column of the Parquet.

Bad input is one problem per file or row, and the good rows go on: a file is refused for
the wrong dimension, an integer dtype, row counts that differ or a different named model;
a row for NaN/inf, an all-zero vector under cosine, an image it cannot read, a `key` missing
from the shards, or an id seen before in the same call. float64 is converted (a note says so).
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BadInput
from ..images import decode_bytes, decode_file
from .base import json_value, label_text
from .decode import decode_one
from .items import Decoded, InputOptions, InputReport, Item, Problem, VectorOrigin
from .parquet import _is_scalar, _open, _pa, image_kind
from .vector_arrays import as_float32, list_matrix, open_npy, vector_digests
from .webdataset import WebDatasetReader, _index

if TYPE_CHECKING:
    import pyarrow as pa

NO_PIXELS = np.zeros((0, 0, 0), np.uint8)  # a row identified by --id-column: no image, size 0×0×0
MODEL_KEYS = (b"embedder", b"model")        # Parquet key-value metadata naming the model, when a file has it
NORM_TOLERANCE = 0.05


@dataclass(frozen=True)
class VectorOptions:
    """Where the vectors are (`path`) and how to read them and the rows' identities (the
    CLI's --vectors, --vector-column ... --vectors-model)."""

    path: str
    vector_column: str | None = None
    metadata: str | None = None          # .npy input: its row-aligned Parquet table
    id_column: str | None = None         # identity without images
    images: tuple[str, ...] = ()         # WebDataset shards, joined on the `key` column
    rerank_vectors: str | None = None    # folder/.npy row-aligned with PATH, or a Parquet column
    model: str | None = None             # the model that made the vectors, as the user states it


@dataclass(frozen=True)
class Expect:
    """What the store takes: sizes, the recall metric, acceptable model names (None: any)."""

    dim: int
    metric: str
    rerank_dim: int | None = None
    names: tuple[str, ...] | None = None
    check_norm: bool = False             # a real cosine model: a norm far from 1 is a note


def vector_options(v: VectorOptions | Mapping[str, Any] | str | os.PathLike[str]) -> VectorOptions:
    """`vectors=` of the Python API: a path, a dict of VectorOptions fields, or VectorOptions."""
    if isinstance(v, VectorOptions):
        return v
    if isinstance(v, Mapping):
        unknown = sorted(set(v) - set(VectorOptions.__dataclass_fields__))
        if unknown or "path" not in v:
            raise BadInput(f"vectors=: unknown or missing fields {unknown or ['path']}; fields: "
                           f"{', '.join(VectorOptions.__dataclass_fields__)}")
        return VectorOptions(**{**v, "images": tuple(v.get("images") or ())})
    return VectorOptions(str(v))


@dataclass(frozen=True)
class Part:
    """A unit of rows: a vector file and its table, or one Parquet file holding both."""

    where: str
    table: Path
    npy: Path | None = None
    rerank_npy: Path | None = None


def _num(p: Path) -> int:
    m = re.search(r"(\d+)$", p.stem)
    return int(m.group(1)) if m else -1


def parts(path: Path, vo: VectorOptions) -> list[Part]:
    """The parts of PATH in order; BadInput for a PATH none of the layouts fits."""
    if not path.exists():
        raise BadInput(f"--vectors {path}: no such file or folder")
    rr = Path(vo.rerank_vectors) if vo.rerank_vectors and Path(vo.rerank_vectors).exists() else None
    if path.is_dir() and (path / "img_emb").is_dir():
        out = []
        for npy in sorted((path / "img_emb").glob("img_emb_*.npy"), key=_num):
            rnpy = (rr / "img_emb" / npy.name if rr and rr.is_dir() else None)
            # the partition number as written (clip-retrieval zero-pads it: img_emb_07, metadata_07)
            table = path / "metadata" / f"metadata_{npy.stem.removeprefix('img_emb_')}.parquet"
            out.append(Part(str(npy), table, npy, rnpy))
        if not out:
            raise BadInput(f"{path}/img_emb: no img_emb_N.npy files; fix: point --vectors at clip-retrieval's output folder")
        if rr is not None and not rr.is_dir():
            raise BadInput(f"--rerank-vectors {rr}: PATH is a clip-retrieval folder, so this must be one too")
        return out
    if path.suffix.lower() == ".npy":
        if not vo.metadata:
            raise BadInput(f"{path}: a .npy matrix needs its rows' table; fix: add --metadata FILE.parquet (row-aligned)")
        return [Part(str(path), Path(vo.metadata), path, rr)]
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".parquet", ".pq")) if path.is_dir() else [path]
    if path.is_dir() and not files:
        raise BadInput(f"{path}: no img_emb/ folder and no Parquet files; fix: see docs/precomputed.md for the layouts")
    if not vo.vector_column:
        raise BadInput(f"{path}: Parquet input needs --vector-column NAME (the column of float lists)")
    return [Part(str(f), f) for f in files]


class _Rows:
    """The identity of each row of one table: its image (path, column, shard) or its id."""

    def __init__(self, part: Part, schema: pa.Schema, vo: VectorOptions, opts: InputOptions,
                 shards: dict[str, Path] | None):
        names = set(schema.names)
        self.part, self.vo, self.opts, self.shards = part, vo, opts, shards
        default = next((f.name for f in schema if image_kind(f.type)), None)
        img = opts.image_column or default
        self.image_col = img if img in names and image_kind(schema.field(img).type) else None
        self.suffix = "" if self.image_col == default else f"@{self.image_col}"  # as ParquetReader's sources
        self.path_col = "image_path" if "image_path" in names else None
        # clip-retrieval writes a WebDataset sample's key in `image_path` (and in `key` with its metadata)
        self.key_col = "key" if "key" in names else self.path_col
        if shards is not None:
            self.mode = "shard"
            if self.key_col is None:
                raise BadInput(f"{part.table}: --images joins on the `key` (or `image_path`) column, which this "
                               "table lacks")
        elif self.image_col:
            self.mode = "column"
        elif self.path_col:
            self.mode = "path"
        elif vo.id_column:
            if vo.id_column not in names:
                raise BadInput(f"{part.table}: no column '{vo.id_column}' for --id-column (columns: "
                               f"{', '.join(schema.names)})")
            self.mode = "id"
        else:
            raise BadInput(f"{part.table}: its rows name no image (no image_path column, no image column) and no "
                           "identity; fix: pass --images SHARDS (joined on `key`) or --id-column NAME (e.g. url)")
        self.label = opts.label_column or ("label" if "label" in names else None)
        if self.label and self.label not in names:
            raise BadInput(f"{part.table}: no label column '{self.label}'; fix: name one with --label-column")
        skip = {vo.vector_column, self.image_col, self.label, vo.rerank_vectors, self.path_col if shards is None else None}
        self.meta = [f.name for f in schema if f.name not in skip and not f.name.startswith("__") and _is_scalar(f.type)]
        t = _pa()[0].types  # columns whose values are JSON as read (text, integers): no json_value per value
        self._plain = {f.name for f in schema if t.is_string(f.type) or t.is_large_string(f.type) or t.is_integer(f.type)}
        used = {"column": self.image_col, "path": self.path_col, "id": vo.id_column, "shard": self.key_col}[self.mode]
        self.columns = sorted(c for c in {used, self.label, *self.meta} if c is not None)

    def metas(self, cols: dict[Any, list[Any]], n: int) -> list[dict[str, Any] | None]:
        """Each row's metadata (its scalar columns as JSON values), for n rows at once."""
        if not self.meta:
            return [None] * n
        values = [cols[m] if m in self._plain else [json_value(x) for x in cols[m]] for m in self.meta]
        return [dict(zip(self.meta, vs)) for vs in zip(*values)]

    def item(self, cols: dict[Any, list[Any]], i: int, row: int, meta: dict[str, Any] | None) -> Item | Decoded | Problem:
        """An Item for an image row (to decode), a Decoded without pixels for an id row, or
        the row's problem; `meta`: the row's from `metas`."""
        lab = cols[self.label][i] if self.label else None
        lab = label_text(lab) if lab is not None else self.opts.label
        if self.mode == "id":
            ident = cols[self.vo.id_column][i]
            if ident is None or str(ident) == "":
                return Problem(f"{self.part.where}#{row}", f"no value in --id-column '{self.vo.id_column}'")
            ident = str(ident)
            return Decoded(ident, lab, NO_PIXELS, id_sha256(ident), meta)
        if self.mode == "shard":
            key = cols[self.key_col][i]
            shard = (self.shards or {}).get(str(key))  # mode "shard" has shards
            if shard is None:
                return Problem(f"{self.part.where}#{row}", f"key {key!r} is in none of the --images shards")
            try:
                item = WebDatasetReader().item(shard, str(key), self.opts)
            except BadInput as e:
                return Problem(f"{self.part.where}#{row}", str(e))
            return Item(item.source, item.load, lab if self.label else item.label, meta)
        if self.mode == "column":
            src = f"{self.part.table.absolute()}#{row}{self.suffix}"
            blob = cols[self.image_col][i]
            blob = blob.get("bytes") if isinstance(blob, dict) else blob
            if blob is None:
                return Problem(src, f"no image bytes in column '{self.image_col}'")
            return Item(src, partial(decode_bytes, blob, src), lab, meta)
        p = cols[self.path_col][i]
        if not p:
            return Problem(f"{self.part.where}#{row}", "empty image_path")
        path = Path(p).absolute()
        return Item(str(path), partial(decode_file, path), lab, meta)


def id_sha256(ident: str) -> str:
    """The identity of a row without an image: its id's digest (kept apart from pixel digests)."""
    return hashlib.sha256(b"gmv-id\0" + ident.encode("utf-8", "surrogatepass")).hexdigest()


def shard_keys(shards: tuple[str, ...]) -> dict[str, Path]:
    from .base import file_stamp

    out: dict[str, Path] = {}
    for s in shards:
        p = Path(s).absolute()
        if not p.is_file():
            raise BadInput(f"--images {s}: no such shard")
        for key in _index(*file_stamp(p)):
            out.setdefault(key, p)
    return out


def _model_name(schema: pa.Schema) -> str | None:
    md = schema.metadata or {}
    v = next((md[k] for k in MODEL_KEYS if k in md), None)
    return v.decode("utf-8", "replace") if v is not None else None


def check_model(vo: VectorOptions, expect: Expect) -> None:
    """The model the user states (--vectors-model) is the store's, where the store names one."""
    if vo.model and expect.names is not None and vo.model not in expect.names:
        raise BadInput(f"--vectors-model {vo.model}: the store's recall vectors are {expect.names[0]}'s; fix: use "
                       "a store made for this model (gmv init --embedder precomputed -p embedder.name=...)")


def identity_modes(vo: VectorOptions, opts: InputOptions | None = None) -> set[str]:
    """How the rows of each readable table are identified: "path", "column", "shard" (an
    image) or "id" (no image); read from the tables' schemas only."""
    from .base import file_stamp

    out = set()
    for part in parts(Path(vo.path), vo):
        try:
            if part.table.is_file():
                schema = _open(*file_stamp(part.table.absolute()))[0].schema_arrow
                out.add(_Rows(part, schema, vo, opts or InputOptions(), {} if vo.images else None).mode)
        except BadInput:
            pass  # reported when the rows are read
    return out


def read_vector_batches(vo: VectorOptions, opts: InputOptions | None, expect: Expect, batch_size: int,
                        report: InputReport) -> Iterator[list[Decoded]]:
    """Decoded rows with their `vectors` ({"recall"[, "rerank"]}) in batches; bad files and
    rows go to `report.problems`, notes (float64 converted, norms) to `report.notes`."""
    opts = opts or InputOptions()
    root = Path(vo.path)
    check_model(vo, expect)
    shards = shard_keys(vo.images) if vo.images else None
    seen: set[str] = set()
    batch: list[Decoded] = []
    for part in parts(root, vo):
        try:
            for d in _part_rows(part, vo, opts, expect, shards, report, seen):
                batch.append(d)
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
        except BadInput as e:
            report.problems.append(Problem(part.where, str(e).removeprefix(f"{part.where}: ")))
        except (OSError, ValueError) as e:  # pyarrow's and numpy's errors for a damaged file derive from these
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            report.problems.append(Problem(part.where, f"unreadable from some row on ({first[:160]}); the rows "
                                                       "before it are kept; fix: re-export the file"))
    if batch:
        yield batch


def _part_rows(part: Part, vo: VectorOptions, opts: InputOptions, expect: Expect, shards: dict[str, Path] | None,
               report: InputReport, seen: set[str]) -> Iterator[Decoded]:
    from .base import file_stamp

    if not part.table.is_file():
        raise BadInput(f"{part.where}: its table {part.table} is missing; fix: keep img_emb/ and metadata/ together")
    pf, _, total = _open(*file_stamp(part.table.absolute()))
    schema = pf.schema_arrow
    name = _model_name(schema)
    if name and expect.names is not None and name not in expect.names:
        raise BadInput(f"{part.table}: vectors made by {name}, the store's are {expect.names[0]}'s; fix: use a store "
                       "made for this model")
    rows = _Rows(part, schema, vo, opts, shards)
    if part.npy is None and vo.vector_column not in schema.names:
        raise BadInput(f"{part.where}: no column '{vo.vector_column}' for --vector-column (columns: "
                       f"{', '.join(schema.names)}); fix: name the column of float lists")
    notes: list[str] = []
    vec = open_npy(part.npy, expect.dim, "recall", notes) if part.npy else None
    rvec = None
    if vo.rerank_vectors and expect.rerank_dim is None:
        raise BadInput(f"--rerank-vectors {vo.rerank_vectors}: the store keeps no re-rank vector (its re-rank compares "
                       "images or none); fix: drop --rerank-vectors")
    want_rerank = bool(vo.rerank_vectors)
    rdim = expect.rerank_dim or 0  # used only when want_rerank, which has a rerank_dim (checked above)
    if want_rerank:
        if part.npy is not None:
            if part.rerank_npy is None or not part.rerank_npy.is_file():
                raise BadInput(f"{part.where}: no re-rank vectors beside it under --rerank-vectors {vo.rerank_vectors}; "
                               "fix: give a folder or .npy row-aligned with --vectors")
            rvec = open_npy(part.rerank_npy, rdim, "re-rank", notes)
        elif vo.rerank_vectors not in schema.names:
            raise BadInput(f"{part.where}: no column '{vo.rerank_vectors}' for --rerank-vectors; fix: name the column "
                           "of re-rank vectors")
    for a, what in ((vec, "recall"), (rvec, "re-rank")):
        if a is not None and len(a) != total:
            raise BadInput(f"{part.where}: {len(a):,} {what} vectors but {total:,} rows in {part.table.name}; fix: "
                           "write them row-aligned (one vector per row, same order)")
    report.notes.extend(notes)
    cols = rows.columns + ([vo.vector_column] if vec is None else []) + \
        ([vo.rerank_vectors] if want_rerank and part.npy is None else [])
    row, norm_noted = 0, False
    # recorded with each row (gmv repair reads a lost collection's vectors again from them)
    origin = (str(part.npy.absolute()), None) if part.npy else (str(part.table.absolute()), vo.vector_column)
    rorigin = (str(part.rerank_npy.absolute()), None) if rvec is not None and part.rerank_npy else \
        (str(part.table.absolute()), vo.rerank_vectors)
    for b in pf.iter_batches(4096, columns=list(dict.fromkeys(cols)), use_threads=False):
        m = b.num_rows
        where = part.where
        if vec is not None:
            v, ok = as_float32(np.asarray(vec[row:row + m]), where, []), np.ones(m, bool)
        else:
            if b.column(vo.vector_column).type.value_type == _pa()[0].float64() and not row:
                report.notes.append(f"{where}: float64 vectors converted to float32")
            v, ok = list_matrix(b.column(vo.vector_column), expect.dim, where, row, report.problems)
        r = None
        if want_rerank:
            if rvec is not None:
                r = as_float32(np.asarray(rvec[row:row + m]), where, [])
            else:
                r, rok = list_matrix(b.column(vo.rerank_vectors), rdim, where, row, report.problems)
                ok &= rok
        bad = np.asarray(~np.isfinite(v).all(1) | (~np.isfinite(r).all(1) if r is not None else False))
        dv, dr = vector_digests(v).tolist(), (vector_digests(r).tolist() if r is not None else [])
        zero = np.asarray(~v.any(1)) if expect.metric == "cosine" else np.zeros(m, bool)
        if expect.check_norm and not norm_noted:
            norms = np.linalg.norm(v[ok & ~bad], axis=1)
            if len(norms) and np.abs(norms - 1).max() > NORM_TOLERANCE:
                report.notes.append(f"{where}: vector norms from {norms.min():.3g} to {norms.max():.3g}, far from 1 for "
                                    "a cosine model: are these the store's model's embeddings?")
                norm_noted = True
        data = {c: b.column(c).to_pylist() for c in rows.columns}
        metas = rows.metas(data, m)
        # per row below: plain Python values (a numpy scalar per test costs several times more)
        okl, badl, zerol, vl = ok.tolist(), bad.tolist(), zero.tolist(), list(v)
        rl = list(r) if r is not None else None
        for i in range(m):
            if not okl[i]:
                continue
            if badl[i]:
                report.problems.append(Problem(f"{where}#{row + i}", "vector holds NaN or inf; fix: re-compute it"))
                continue
            if zerol[i]:
                report.problems.append(Problem(f"{where}#{row + i}", "all-zero vector, which has no cosine; fix: "
                                                                      "re-compute it"))
                continue
            d = _decoded(rows.item(data, i, row + i, metas[i]), report, seen)
            if d is not None:
                d.vectors = {"recall": vl[i]} if rl is None else {"recall": vl[i], "rerank": rl[i]}
                d.origins = {"recall": VectorOrigin(*origin, row + i, dv[i])} if rl is None else \
                    {"recall": VectorOrigin(*origin, row + i, dv[i]), "rerank": VectorOrigin(*rorigin, row + i, dr[i])}
                yield d
        row += m


def _decoded(item: Item | Decoded | Problem, report: InputReport, seen: set[str]) -> Decoded | None:
    if isinstance(item, Problem):
        report.problems.append(item)
        return None
    if isinstance(item, Decoded):  # an id row
        if item.sha256 in seen:
            report.problems.append(Problem(item.source, "the same id twice in this call; the first row is kept"))
            return None
        seen.add(item.sha256)
        return item
    d = decode_one(item)
    if isinstance(d, Problem):
        report.problems.append(d)
        return None
    return d
