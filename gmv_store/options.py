"""Each command's options as one record: names, defaults and limits written once.

The three surfaces take them from here: the CLI builds its click types and defaults from a
record's fields (`gmv_store/cli/options.py`), the Python API (`gmv_store.api`) builds the
record from its keyword arguments, which checks the limits, and the `GmvStore` methods pass
the same keywords on. tests/test_options.py checks that the CLI's options, the API's
signatures and the handle's name the same options with the same defaults.

A value out of its limits is refused with the line click prints for the flag, so the CLI
and Python say the same: `Invalid value for k: 0 is not in the range 1<=x<=10000.`
(`--k` on the command line, see `gmv_store.errors.param`).
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .errors import BadInput, param

if TYPE_CHECKING:
    from .sources.vectors import VectorOptions

    # `vectors=`: a path, a dict of VectorOptions fields, or VectorOptions (docs/precomputed.md)
    Vectors = str | Mapping[str, Any] | VectorOptions | None

IndexMode = Literal["auto", "hnsw", "exact"]  # auto: HNSW once a segment is large enough (config.IndexConfig)
Quantization = Literal["none", "int8"]
DEFAULT_K = 50  # contributors credited (value) or listed (match) per generated image
K_RANGE = (1, 10_000)  # k of `value`, `match` and `repair`
RECALL_RANGE = (1, 100_000)  # N, the candidates recalled before re-ranking
DEFAULT_SQL_TIMEOUT_S: float = 60  # `gmv sql` stops a query after this long (`--help` shows 60)


@dataclass(frozen=True)
class Limit:
    """A closed numeric range, `lo` and/or `hi` (None: unbounded on that side)."""

    lo: float | None = None
    hi: float | None = None
    whole: bool = True  # an integer option (click.IntRange), else a float one (click.FloatRange)

    def describe(self) -> str:
        """As click writes a range: `1<=x<=10000`, `x>=1`, `x<=9`."""
        if self.lo is not None and self.hi is not None:
            return f"{self.lo}<=x<={self.hi}"
        return f"x>={self.lo}" if self.lo is not None else f"x<={self.hi}"

    def problem(self, value: object) -> str | None:
        """None when `value` is within the range, else the reason in click's words."""
        if not isinstance(value, numbers.Real):
            return f"{value!r} is not a valid {'integer' if self.whole else 'float'} range."
        v = float(value)
        if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            return f"{value if self.whole else v} is not in the range {self.describe()}."
        return None


def _opt(default: Any, lo: float | None = None, hi: float | None = None, whole: bool = True,
         flag: str | None = None) -> Any:
    """A field with its default and, where given, its limit and its command-line flag (when
    not `--` + the name with dashes)."""
    meta: dict[str, Any] = {"limit": Limit(lo, hi, whole)} if lo is not None or hi is not None else {}
    return field(default=default, metadata={**meta, **({"flag": flag} if flag else {})})


def limit_of(record: type, name: str) -> Limit | None:
    """The limit of option `name` of a record class (None: unbounded)."""
    return next(f.metadata.get("limit") for f in fields(record) if f.name == name)


def default_of(record: type, name: str) -> Any:
    return next(f.default for f in fields(record) if f.name == name)


def check_limits(record: object) -> None:
    """BadInput naming the first option out of its limits: `Invalid value for k: ...` (`'--k'`
    in the CLI's spelling, as click quotes it)."""
    for f in fields(record):  # type: ignore[arg-type]
        value, limit = getattr(record, f.name), f.metadata.get("limit")
        if limit is None or value is None or isinstance(value, bool):
            continue
        problem = limit.problem(value)
        if problem:
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            raise BadInput(f"Invalid value for {param(f.name, repr(flag))}: {problem}")


R = TypeVar("R")


def options_of(record: type[R], given: Mapping[str, Any]) -> R:
    """The record from a call's keyword arguments (`options_of(ValueOptions, locals())` as
    the first line of an API call), its limits checked."""
    return record(**{f.name: given[f.name] for f in fields(record)})  # type: ignore[arg-type]


class _Checked:
    def __post_init__(self) -> None:
        check_limits(self)


# ------------------------------------------------------------------------ the store


@dataclass(frozen=True)
class IndexOptions(_Checked):
    """The index settings of `gmv init` / `gmv index` and of `api.init_store(index=)` /
    `api.index(settings=)`: the fields of `config.IndexConfig`, whose defaults are these."""

    mode: IndexMode = "auto"
    hnsw_m: int = _opt(16, 4, 128)
    hnsw_ef_construct: int = _opt(100, 16, 4096)
    quantization: Quantization = "none"
    ef_factor: float = _opt(2.0, 1.0, 16.0, whole=False, flag="--hnsw-ef-factor")
    shard_number: int | None = _opt(None, 1, flag="--shards")
    replication_factor: int | None = _opt(None, 1, flag="--replicas")
    write_consistency_factor: int | None = _opt(None, 1, flag="--write-consistency")
    on_disk_vectors: bool = _opt(False, flag="--on-disk")


def check_index_settings(settings: Mapping[str, Any]) -> None:
    """The limits of IndexOptions on a dict of index settings (other keys are IndexConfig's
    to judge)."""
    names = {f.name for f in fields(IndexOptions)}
    IndexOptions(**{k: v for k, v in settings.items() if k in names})


# ------------------------------------------------------------------------ writers


# The groups that several commands share, each written once: how inputs are read (and where
# models run), the file-format columns, rows given with their vectors or read on a Ray
# cluster, and the search's k and N (one rule for `value` and `match`).


@dataclass(frozen=True)
class _Reading(_Checked):
    label_from: str | None = None  # "parent": a file's parent folder name
    label: str | None = None
    batch_size: int | None = _opt(None, 1, 100_000)
    wait: float = 0.0
    device: str | None = None


@dataclass(frozen=True)
class _Columns(_Checked):
    image_column: str | None = None
    label_column: str | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Elsewhere(_Checked):
    vectors: Vectors = None
    ray: str | None = None
    ray_workers: int | None = _opt(None, 1)
    ray_gpus_per_worker: float | None = _opt(None, 0, whole=False)


@dataclass(frozen=True)
class _Search(_Checked):
    k: int = _opt(DEFAULT_K, *K_RANGE)
    recall: int | None = _opt(None, *RECALL_RANGE)
    exact: bool = False


@dataclass(frozen=True)
class IngestOptions(_Reading, _Columns, _Elsewhere):
    """`gmv ingest` / `api.ingest` / `GmvStore.ingest`."""

    owner: str | None = None
    owner_column: str | None = None
    workers: int | None = _opt(None, 0, 512)
    refresh: bool = True
    index: bool = True
    progress: bool = False


@dataclass(frozen=True)
class ValueOptions(_Search, _Reading, _Columns, _Elsewhere):
    """`gmv value` / `api.value` / `GmvStore.value`."""

    progress: bool = False


@dataclass(frozen=True)
class MatchOptions(_Search, _Reading, _Elsewhere):
    """`gmv match` / `api.match` / `GmvStore.match`: k and N under the same rule as `value`."""


@dataclass(frozen=True)
class RefreshOptions(_Checked):
    wait: float = 0.0
    progress: bool = False


@dataclass(frozen=True)
class ForgetOptions(_Checked):
    owner: str | None = None
    source: str | None = None
    refresh: bool = True
    wait: float = 0.0
    progress: bool = False


@dataclass(frozen=True)
class RepairOptions(_Checked):
    """`k` and `recall` of sets whose points do not record them, under the rule of `value`."""

    k: int | None = _opt(None, *K_RANGE)
    recall: int | None = _opt(None, *RECALL_RANGE)
    drop_unreadable: bool = False
    wait: float = 0.0


@dataclass(frozen=True)
class RelocateOptions(_Checked):
    dry_run: bool = False
    wait: float = 0.0


@dataclass(frozen=True)
class VerifyOptions(_Checked):
    full: bool = False
    sample: int = _opt(200, 1)
    seed: int = 0
    wait: float = 0.0


# ------------------------------------------------------------------------ readers


@dataclass(frozen=True)
class TopOptions(_Checked):
    set_name: str | None = None
    limit: int | None = _opt(None, 1)


@dataclass(frozen=True)
class ContributorOptions(_Checked):
    limit: int = _opt(10, 1)


@dataclass(frozen=True)
class ValuesOptions(_Checked):
    """`limit` None (or 0 on the command line): every row."""

    by: str | None = None
    limit: int | None = _opt(20, 0)


@dataclass(frozen=True)
class SqlOptions(_Checked):
    """`timeout` seconds (0 or None: no limit); `memory_limit` a DuckDB size or a share of RAM."""

    timeout: float | None = _opt(DEFAULT_SQL_TIMEOUT_S, 0, whole=False)
    memory_limit: str | None = None
