"""``medassist serve``: the web app and REST API (uvicorn)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console

from medassist.exceptions import ConfigError

err = Console(stderr=True)


def _settings(**overrides):
    from medassist.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "settings"
        raise ConfigError(f"{where}: {first.get('msg', 'invalid')}") from None


def log_config(level: str, *, access_log: bool = True) -> dict:
    """uvicorn's logging, with the PHI filter on every handler.

    Access lines come from ``medassist.access`` (route templates such as ``/cases/{case_ref}``,
    never the concrete path, which can carry an MRN); uvicorn's own access log, which quotes the
    path, is switched off by ``serve`` and still coarsened by the filter if someone turns it on.
    """
    return {
        "version": 1, "disable_existing_loggers": False,
        "filters": {"phi": {"()": "medassist.privacy.crypto.PHIFilter"}},
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["phi"], "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "medassist": {"handlers": ["stderr"], "level": level, "propagate": False},
            "medassist.access": {"handlers": ["stderr"], "level": "INFO" if access_log else "WARNING", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


def serve(
    host: str = typer.Option(None, "--host", help="Address to listen on (default 127.0.0.1; the dev profile allows loopback only)."),
    port: int = typer.Option(None, "--port", help="Port (default 8000)."),
    workers: int = typer.Option(1, "--workers", min=1, max=32, help="Worker processes."),
    bundles: list[Path] = typer.Option([], "--bundles", help="Another directory of model bundles to offer (repeatable)."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log one line per request: the route template (/cases/{case_ref}), never the path or query."),
) -> None:
    """Serve the web app and the REST API (/api/v1) over every assistant with model bundles."""
    import uvicorn
    from sqlalchemy import func, select

    from medassist.service.app import create_app
    from medassist.store.db import open_database
    from medassist.store.models import User

    extra = [str(Path(b).expanduser().resolve()) for b in bundles]
    settings = _settings(host=host, port=port, bundle_dirs=extra or None)
    if not settings.home.exists():
        settings.home.mkdir(parents=True, mode=0o700)  # database, keys and PHI: owner only
    settings.ensure_dirs()
    db = open_database(settings)  # migrate once, before any worker starts
    with db.session() as s:
        n_users = s.scalar(select(func.count(User.id)))
    db.dispose()
    url = f"http://{settings.host}:{settings.port}" if ":" not in settings.host else f"http://[{settings.host}]:{settings.port}"
    if n_users == 0:
        err.print("note: no users yet; add one with: medassist users add NAME --role admin", highlight=False)
    if settings.cookie_secure:
        err.print("note: prod profile: cookies are Secure, so serve behind TLS (a reverse proxy) and open the https:// address.", highlight=False)
    typer.echo(f"medassist web app and API: {url}  (profile {settings.profile.value}; Ctrl+C stops it)")
    level = "debug" if settings.debug else "warning"
    common = dict(host=settings.host, port=settings.port, log_config=log_config(level.upper(), access_log=access_log),
                  access_log=False,  # uvicorn's quotes concrete paths; medassist.access logs route templates
                  server_header=False, proxy_headers=False,
                  # longer than clients' usual 5 s keep-alive, so a client never reuses a connection
                  # at the moment the server closes it (a ReadError under load otherwise)
                  timeout_keep_alive=15)
    if workers == 1:
        uvicorn.run(create_app(settings), **common)
        return
    # Worker processes build their own app from the environment: hand the overrides down.
    os.environ.update({"MEDASSIST_HOST": settings.host, "MEDASSIST_PORT": str(settings.port)})
    if extra:
        os.environ["MEDASSIST_BUNDLE_DIRS"] = json.dumps(extra)
    uvicorn.run("medassist.service.app:app_from_env", factory=True, workers=workers, **common)


def register(app: typer.Typer) -> None:
    app.command()(serve)
