"""Backends by (kind, name): one registry per kind, each backend declared as "module:Class".

A backend's module is imported on its first lookup; heavy libraries (torch, open_clip, ...)
are imported inside the backends when they run, never here, so listing and checking names
stays cheap and works without torch. Other distributions add backends through the
entry-point group `gmv_store.backends` (plugins.py, docs/plugins.md), declared after the
built-ins when a name is not a built-in's, and checked when first looked up.
"""
from __future__ import annotations

from typing import Any, Literal, overload

from ..errors import BadPlugin, GmvError, UnknownBackend
from ..registry import Registry
from . import plugins
from .base import Backend, Embedder, Quality, Reranker

KINDS = ("embedder", "rerank", "quality")
_HINT = " (see `gmv backends`)"
EMBEDDERS: Registry[type[Backend]] = Registry("embedder", hint=_HINT)
RERANKERS: Registry[type[Backend]] = Registry("rerank", hint=_HINT)
QUALITY: Registry[type[Backend]] = Registry("quality", hint=_HINT)
REGISTRIES = dict(zip(KINDS, (EMBEDDERS, RERANKERS, QUALITY)))
BASES: dict[str, type[Backend]] = dict(zip(KINDS, (Embedder, Reranker, Quality)))

# In alphabetical order within a kind: the order `gmv backends` and error messages list them.
EMBEDDERS.declare("clip", "gmv_store.backends.clip:ClipEmbedder")
EMBEDDERS.declare("dreamsim", "gmv_store.backends.dreamsim_backend:DreamSimEmbedder")
EMBEDDERS.declare("effnet-lite0", "gmv_store.backends.effnet:EffNetLite0Embedder")
EMBEDDERS.declare("pixels", "gmv_store.backends.pixels:PixelsEmbedder")
EMBEDDERS.declare("precomputed", "gmv_store.backends.precomputed:PrecomputedEmbedder")
RERANKERS.declare("dreamsim", "gmv_store.backends.dreamsim_backend:DreamSimReranker")
RERANKERS.declare("embedding", "gmv_store.backends.embedding_rerank:EmbeddingReranker")
RERANKERS.declare("l2", "gmv_store.backends.pixels:L2Reranker")
RERANKERS.declare("lpips", "gmv_store.backends.lpips_backend:LPIPSReranker")
RERANKERS.declare("none", "gmv_store.backends.pixels:NoRerank")
QUALITY.declare("brisque", "gmv_store.backends.brisque:BrisqueQuality")
QUALITY.declare("maniqa", "gmv_store.backends.maniqa:ManiqaQuality")
QUALITY.declare("niqe", "gmv_store.backends.niqe:NiqeQuality")
QUALITY.declare("none", "gmv_store.backends.pixels:NoQuality")
QUALITY.declare("piqe", "gmv_store.backends.piqe:PiqeQuality")
# Plugins after the built-ins, and only once a name is not a built-in's or every backend is
# listed: scanning the installed distributions' entry points takes tens of milliseconds, which
# a store of built-in backends need not pay. A plugin never replaces a built-in (a clash is a
# listed problem instead), so loading them late changes no lookup.
_plugin_problems: list[dict[str, str]] | None = None


def plugin_problems() -> list[dict[str, str]]:
    """Load the plugins' entry points (once); the ones that were not registered."""
    global _plugin_problems
    if _plugin_problems is None:
        _plugin_problems = plugins.load(REGISTRIES)
    return _plugin_problems


def available(kind: str) -> dict[str, type[Backend]]:
    """name -> class of every backend of `kind` (imports their modules, not torch)."""
    plugin_problems()
    return {name: backend_class(kind, name) for name in REGISTRIES[kind].names()}


def origin(kind: str, name: str) -> str:
    """"built-in" or "plugin <distribution> <version>"."""
    if name not in REGISTRIES[kind]:
        plugin_problems()
    return REGISTRIES[kind].origin(name)


def backend_class(kind: str, name: str) -> type[Backend]:
    registry = REGISTRIES[kind]
    if name not in registry:
        for p in plugin_problems():  # a plugin's entry point that was not registered says why
            if p["kind"] == kind and p["name"] == name:
                raise UnknownBackend(f"{kind} '{name}' from {p['origin']}: {p['problem']}")
    where = registry.origin(name)
    if where == "built-in":
        return registry.get(name)
    try:  # a plugin's own fault is one line naming its distribution, never a traceback
        cls = registry.get(name)
    except GmvError:
        raise  # MissingDependency names the package to install
    except Exception as e:  # noqa: BLE001 - any fault in third-party code at import
        raise BadPlugin(f"{kind} '{name}' from {where} cannot be loaded ({type(e).__name__}: {e}); "
                        f"fix: reinstall or update that distribution") from e
    base = BASES[kind]
    if not (isinstance(cls, type) and issubclass(cls, base)) or getattr(cls, "name", None) != name:
        raise BadPlugin(f"{kind} '{name}' from {where} must be a subclass of gmv_store.backends.base."
                        f"{base.__name__} with name = {name!r}; fix the plugin")
    return cls


@overload
def create(kind: Literal["embedder"], name: str, params: dict[str, Any] | None = None) -> Embedder: ...
@overload
def create(kind: Literal["rerank"], name: str, params: dict[str, Any] | None = None) -> Reranker: ...
@overload
def create(kind: Literal["quality"], name: str, params: dict[str, Any] | None = None) -> Quality: ...
@overload
def create(kind: str, name: str, params: dict[str, Any] | None = None) -> Backend: ...
def create(kind: str, name: str, params: dict[str, Any] | None = None) -> Backend:
    """A backend of `kind` (an instance of that kind's base class: backend_class checks plugins)."""
    return backend_class(kind, name)(**(params or {}))


def describe() -> list[dict[str, Any]]:
    """One row per backend: kind, name, params, description, origin; a plugin that cannot
    be loaded, or was not registered, is a row whose description is the problem."""
    problems = plugin_problems()
    rows = []
    for kind in KINDS:
        for name in REGISTRIES[kind].names():
            where = origin(kind, name)
            try:
                cls = backend_class(kind, name)
            except GmvError as e:
                if where == "built-in":
                    raise
                rows.append({"kind": kind, "name": name, "params": {}, "description": f"unusable: {e}",
                             "origin": where})
                continue
            rows.append({"kind": kind, "name": name, "params": cls.defaults, "description": cls.description,
                         "origin": where})
    rows += [{"kind": p["kind"], "name": p["name"], "params": {}, "description": f"not registered: {p['problem']}",
              "origin": p["origin"]} for p in problems]
    return rows
