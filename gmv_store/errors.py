"""Named exceptions. The CLI turns each into one line: `Error: <message>`.

Messages name the file, value or option at fault and the fix.
"""


class GmvError(Exception):
    """Base class of every error gmv-store reports to users."""


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
