"""Backends from other distributions, found through the entry-point group `gmv_store.backends`.

A plugin declares each backend in its own pyproject.toml, the entry-point name saying the
kind and the backend's name, so that listing names imports nothing (docs/plugins.md):

    [project.entry-points."gmv_store.backends"]
    "embedder.tiny" = "gmv_tiny:TinyEmbedder"

The class is imported on first lookup and checked then (a subclass of the kind's base class
whose `name` is the entry point's). An entry point that cannot be registered (a malformed
name, a name a built-in already holds) never stops the other backends: it is kept as a
problem, listed by `gmv backends`, and looking its name up names the problem.
"""
from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from ..registry import Registry

GROUP = "gmv_store.backends"


def origin_of(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"plugin {dist.name} {dist.version}" if dist is not None else "plugin (unknown distribution)"


def load(registries: Mapping[str, Registry[Any]]) -> list[dict[str, str]]:
    """Declare every entry point of GROUP in its kind's registry; returns the problems, one
    {"kind", "name", "origin", "problem"} per entry point that was not registered."""
    problems = []
    for ep in entry_points(group=GROUP):
        origin = origin_of(ep)
        kind, dot, name = ep.name.partition(".")
        problem = None
        if not dot or kind not in registries or not name:
            problem = (f"entry point {ep.name!r} must be named KIND.NAME with KIND one of "
                       f"{', '.join(registries)}; fix the plugin's pyproject.toml")
        elif name in registries[kind]:
            problem = (f"{kind} '{name}' is already provided by {registries[kind].origin(name)}; "
                       f"the plugin's entry point is ignored until one of them is renamed")
        else:
            try:
                registries[kind].declare(name, ep.value, origin=origin)
            except ValueError:
                problem = f"entry point {ep.name!r} = {ep.value!r} must point at 'module:Class'"
        if problem:
            problems.append({"kind": kind, "name": name or ep.name, "origin": origin, "problem": problem})
    return problems
