"""gmv-store: which training images made this generated image, and what is each worth?

    import gmv_store
    store = gmv_store.init("my-store", profile="basic")      # or gmv_store.open("my-store")
    store.ingest(["mnist:train"], owner="mnist")
    store.value(["samples/"], "gan-v1", label_from="parent")
    store.values("gan-v1", limit=10)                          # pandas DataFrame

The object form lives in `gmv_store.handle`, the functions it calls (which the CLI calls too)
in `gmv_store.api`; both load on first use, so importing a submodule stays cheap.
"""
from __future__ import annotations

__all__ = ["GmvStore", "init", "open"]


def __getattr__(name: str):
    if name in __all__:
        from . import handle

        return getattr(handle, name)
    raise AttributeError(f"module 'gmv_store' has no attribute {name!r}")
