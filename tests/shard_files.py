"""Training data as it ships, written from real MNIST digits for tests: Parquet tables (a
bytes column or the Hugging Face `{bytes, path}` struct) and WebDataset tar shards."""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def write_parquet(path, images, labels=None, *, struct=True, column="image", label_column="label",
                  extra: dict | None = None, row_group_size=64):
    """One row per image; `extra` columns as given (lists or pyarrow arrays)."""
    blobs = [png(a) for a in images]
    cols = {}
    if struct:
        cols[column] = pa.StructArray.from_arrays([pa.array(blobs, pa.binary()),
                                                   pa.array([f"{i}.png" for i in range(len(blobs))])],
                                                  names=["bytes", "path"])
    else:
        cols[column] = pa.array(blobs, pa.binary())
    if labels is not None:
        cols[label_column] = pa.array(np.asarray(labels).astype(np.int64))
    cols.update(extra or {})
    pq.write_table(pa.table(cols), path, row_group_size=row_group_size)
    return path


def write_tar(path, images, labels=None, *, json_docs=None, key_start=0, corrupt=()):
    """WebDataset shard: KEY.png (+ KEY.cls, + KEY.json); keys listed in `corrupt` get bytes
    that are no image."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i, a in enumerate(images):
            key = f"{key_start + i:06d}"
            members = [("png", b"not a png at all" if key in corrupt else png(a))]
            if labels is not None:
                members.append(("cls", str(int(labels[i])).encode()))
            if json_docs is not None:
                members.append(("json", json.dumps(json_docs[i]).encode()))
            for ext, data in members:
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def member_offsets(path) -> list[tuple[str, int, int]]:
    """(name, data offset, size) of every member, to cut a shard at a chosen place."""
    with tarfile.open(path) as tar:
        return [(m.name, m.offset_data, m.size) for m in tar.getmembers()]
