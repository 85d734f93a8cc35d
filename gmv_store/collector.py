"""CPython's cycle collector kept out of the way of bulk work whose containers form no cycles
(reference counting frees them): refresh's batches and ingest's writes."""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The collector held off for a batch: a refresh batch makes some 10^4 containers at once
    (query vectors as lists of floats, queries, hits) that form no cycles and die with it, and
    the collector would otherwise walk the young ones dozens of times (40-90 ms a refresh of
    2,200 images). Left off where the caller had turned it off."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextmanager
def collector_frozen() -> Iterator[None]:
    """The objects that exist now (modules, the store's state) left out of the collector's
    full passes while a long write runs (`gc.freeze`); what the write makes is collected as
    usual. At 1M rows ingest's full passes walked them 42 times, 51 ms each."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
