"""Named exceptions. The CLI turns each into one line: `Error: <message>`.

Messages name the file, value or option at fault and the fix. An option is written with
`param("recall")` so that each reader sees the name they type: `recall` in Python and in a
browser's form, `--recall` on the command line (`for_cli`).
"""
import re

_PARAM = re.compile(r"\x00([^\x00\x01]+)\x01([^\x00]*)\x00")


def param(name: str, cli: str | None = None, value: object = None) -> str:
    """An option inside a message: Python's keyword (`name` or `name=value`), or on the command
    line `cli` (default `--name-with-dashes`)."""
    py = name if value is None else f"{name}={value}"
    return f"\x00{py}\x01{cli or '--' + name.replace('_', '-')}\x00"


def for_cli(text: str) -> str:
    return _PARAM.sub(lambda m: m.group(2), text)


def for_python(text: str) -> str:
    return _PARAM.sub(lambda m: m.group(1), text)


class GmvError(Exception):
    """Base class of every error gmv-store reports to users."""

    def __str__(self) -> str:
        return for_python(super().__str__())

    def for_cli(self) -> str:
        return for_cli(super().__str__())


class BadInput(GmvError):
    """An input (image, array, dataset name, option value) cannot be used."""


class StoreNotFound(GmvError):
    pass


class StoreLocked(GmvError):
    pass


class StoreMismatch(GmvError):
    """The store was created with other backends, parameters or weights."""


class UnknownBackend(GmvError):
    pass


class BadPlugin(GmvError):
    """A backend from a plugin distribution cannot be imported or is not a backend."""


class MissingWeights(GmvError):
    pass


class MissingDependency(GmvError):
    pass


class MigrationError(GmvError):
    pass


class ReadOnlyViolation(GmvError):
    """An ad-hoc SQL statement tried to write, attach, load or touch files."""


class NotFound(GmvError):
    """An id or image that the store does not hold."""


class StoreDamaged(GmvError):
    """A part of the store (ledger, vector collections) is missing or unreadable."""


class RepairUnfinished(StoreDamaged):
    """A `gmv repair` was killed or stopped: the store is incomplete until one finishes."""


class SourceChanged(BadInput):
    """A recorded source now holds other content than the image stored from it."""


class VectorStoreUnavailable(GmvError):
    """The Qdrant server cannot be reached or refuses the request."""


class SqlError(GmvError):
    """An ad-hoc SQL statement failed: a syntax error, an unknown column, a bad parameter."""


class QueryTimeout(SqlError):
    """An ad-hoc SQL statement ran past its time limit and was stopped."""


class QueryInterrupted(SqlError):
    """An ad-hoc SQL statement was stopped by Ctrl-C (SIGINT)."""


class QueryMemoryLimit(SqlError):
    """An ad-hoc SQL statement needed more memory than its cap."""


class DiskFull(GmvError):
    """The store's filesystem has no room for a write; raised before the write where possible."""
