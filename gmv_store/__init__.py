"""gmv-store: which training images made this generated image, and what is each worth?

    import gmv_store
    store = gmv_store.init("my-store", profile="basic")      # or gmv_store.open("my-store")
    store.ingest(["train/"], owner="mnist", label_from="parent")
    store.value(["samples/"], "gan-v1", label_from="parent", k=10)
    store.values("gan-v1", limit=10)                          # pandas DataFrame
    store.match(["new.png"], k=5)                             # attribution, nothing stored

`GmvStore` (gmv_store.handle) returns DataFrames; `gmv_store.api` has the same calls as
module-level functions returning plain records (what the CLI prints). Both load on first
use, so importing a submodule (`gmv_store.errors`, ...) stays cheap.
"""
from __future__ import annotations

from typing import Any

__all__ = ["GmvStore", "init", "open"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import handle

        return getattr(handle, name)
    raise AttributeError(f"module 'gmv_store' has no attribute {name!r}")
