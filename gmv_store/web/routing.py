"""Each handler names its address where it is defined: `@route("/owners")` adds a
Starlette Route to its module's `route.routes`, in the order the module defines them (the
order Starlette tries them in); app.py puts the modules' lists together."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.routing import Route

Handler = TypeVar("Handler", bound=Callable[..., Any])


class Routes:
    """A module's routes: `route = Routes()`, then `@route(path)` on each handler."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def __call__(self, path: str, methods: list[str] | None = None) -> Callable[[Handler], Handler]:
        """`methods` None: GET (and HEAD), as Starlette's default."""
        def add(handler: Handler) -> Handler:
            self.routes.append(Route(path, handler, methods=methods))
            return handler
        return add
