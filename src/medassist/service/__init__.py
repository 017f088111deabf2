"""The web app and REST API: ``create_app(settings)`` (FastAPI), auth and the one permission
table, assistant plugins (``plugins.py``), server-rendered pages (Jinja2 + vendored htmx)."""

from medassist.service.app import create_app

__all__ = ["create_app"]
