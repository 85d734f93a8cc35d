"""Named entries of one kind (backends, profiles, generators), looked up by name.

An entry is either added as a value (`add`) or declared as "module:Attr", imported on its
first lookup, so that listing names costs nothing and a heavy optional library (torch) is
imported only by the entry that needs it:

    GENERATORS = Registry("generator", error=BadInput)
    GENERATORS.declare("vae", "gmv_store.generators.vae:VAEGenerator")
    GENERATORS.get("vae")    # imports gmv_store.generators.vae now
    GENERATORS.get("nope")   # BadInput: unknown generator 'nope'; choose one of: vae

An unknown name raises `error` (UnknownBackend unless given) listing the valid names; a
declared module that needs a package that is not installed raises MissingDependency naming it.
Each entry records where it comes from (`origin`): "built-in", or the plugin distribution
that declared it through an entry point (gmv_store/backends/plugins.py).
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Generic, TypeVar

from .errors import MissingDependency, UnknownBackend

T = TypeVar("T")


class _Declared:
    """A "module:Attr" reference not imported yet."""

    def __init__(self, target: str):
        self.module, sep, self.attr = target.partition(":")
        if not sep or not self.module or not self.attr:
            raise ValueError(f"registry entry {target!r} must read 'module:Attr'")


class Registry(Generic[T]):
    def __init__(self, kind: str, error: type[Exception] = UnknownBackend, hint: str = ""):
        """`kind` names the entries in messages ("embedder", "profile"); `hint` ends the
        unknown-name message, e.g. " (see `gmv backends`)"."""
        self.kind, self.error, self.hint = kind, error, hint
        self._entries: dict[str, T | _Declared] = {}
        self._origins: dict[str, str] = {}

    def declare(self, name: str, target: str, origin: str = "built-in") -> None:
        """Register `name` as the attribute `Attr` of module `module`, imported on first use."""
        self._put(name, _Declared(target), origin)

    def add(self, name: str, entry: T, origin: str = "built-in") -> T:
        self._put(name, entry, origin)
        return entry

    def _put(self, name: str, entry: T | _Declared, origin: str) -> None:
        if name in self._entries:  # two entries under one name is a programming error
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry
        self._origins[name] = origin

    def origin(self, name: str) -> str:
        """Where `name` comes from: "built-in" or "plugin <distribution> <version>"."""
        if name not in self._origins:
            self.get(name)  # raises the unknown-name error
        return self._origins[name]

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} '{name}'; choose one of: {', '.join(self._entries)}{self.hint}")
        entry = self._entries[name]
        if isinstance(entry, _Declared):
            entry = self._entries[name] = self._import(name, entry)
        return entry

    def _import(self, name: str, ref: _Declared) -> T:
        try:
            module = importlib.import_module(ref.module)
        except ModuleNotFoundError as e:
            if e.name is None or ref.module == e.name or ref.module.startswith(e.name + "."):
                raise  # the declaration itself is wrong, not a missing optional package
            raise MissingDependency(
                f"{self.kind} '{name}' needs the '{e.name}' package; fix: pip install {e.name}"
            ) from e
        return getattr(module, ref.attr)  # type: ignore[no-any-return]

    def names(self) -> list[str]:
        """Names in the order they were registered; imports nothing."""
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs in registration order; imports every declared entry."""
        return [(name, self.get(name)) for name in self._entries]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
