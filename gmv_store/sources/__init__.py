"""The input stage both pipelines share: PATH arguments -> items -> decoded, deduplicated
images, and any recorded source read back by its source string.

    from gmv_store.sources import InputOptions, discover, decode_items, batched, load_source
    found = Discovery()
    for batch in batched(decode_items(discover(["train/", "extra.npz"], InputOptions(), found), problems), 512):
        ...
    pixels = load_source("extra.npz#17")

Each kind of input is a `Reader` (base.py; readers.py lists them) chosen by the argument's
form: image files, .npz/.npy arrays, Parquet tables (parquet.py), WebDataset shards
(webdataset.py), and datasets such as `mnist:train`. `read_batches(..., workers=N)` decodes
in N processes (parallel.py) with the same results.
"""
from .decode import batched, decode_items, unique_new
from .discover import discover
from .items import Decoded, Discovery, InputOptions, InputReport, Item, Problem
from .load import load_source
from .parallel import default_workers
from .read import read_batches

__all__ = ["Decoded", "Discovery", "InputOptions", "InputReport", "Item", "Problem", "batched", "decode_items",
           "default_workers", "discover", "load_source", "read_batches", "unique_new"]
