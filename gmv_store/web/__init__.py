"""The browser UI of `gmv serve`: server-rendered pages (Starlette + Jinja2, no JavaScript
build step), images by id, JSON under /api/. Read-only; see docs/ui.md.

    from gmv_store.web import Settings, create_app
    app = create_app(Settings(store=Path("my-store")))     # any ASGI server, or gmv serve

Modules: app (settings, routes, error handlers), auth (token, host check, headers), pages,
jsonapi, images (thumbnails by id), attribution (uploads -> gmv match), charts (SVG),
render (templates, formats, error page).
"""
from .app import Settings, create_app

__all__ = ["Settings", "create_app"]
