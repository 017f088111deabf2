"""``create_app(settings)``: the web app and the REST API (``/api/v1``) over every registered
assistant plugin.

Nothing here runs at import time; ``create_app`` opens the database (migrating it to the newest
schema), loads the keys and scans the bundle directories.

Example:
    >>> app = create_app(Settings())
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import medassist
from medassist.exceptions import BundleError, ConfigError, DataError, MedassistError
from medassist.privacy.crypto import FieldCipher, load_or_create_secret
from medassist.service.access_log import AccessLog, route_path
from medassist.service.auth import LoginRequired, PageDenied, PasswordChangeRequired, login_redirect
from medassist.service.bundles import BundleCatalog
from medassist.service.context import ServiceContext
from medassist.service.errors import ErrorBody, document_errors
from medassist.service.plugins import AssistantPlugin, load_plugins
from medassist.service.rendering import is_htmx, make_environment, render
from medassist.settings import Settings
from medassist.store.db import open_database

log = logging.getLogger("medassist.service")
STATIC = Path(__file__).parent / "static"
#: Multipart framing and form fields on top of the largest allowed file.
BODY_OVERHEAD = 64 * 1024

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


class SecurityHeaders:
    """Adds security headers to every response (a route may set its own CSP first)."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [
                    (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"), (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                    (b"content-security-policy", CSP.encode()),
                    (b"cache-control", b"public, max-age=3600" if static else b"no-store"),
                ]
                if self.hsts:
                    extra.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error(request: Request, status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    if _wants_json(request):
        return JSONResponse(ErrorBody(detail=message).model_dump(exclude_none=True), status_code=status, headers=headers)
    template = "partials/error.html" if is_htmx(request) else "error.html"
    response = render(request, template, status_code=status, status=status, message=message)
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def _install_handlers(app: FastAPI, settings: Settings) -> None:
    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        target = login_redirect(exc.next_url if request.method == "GET" else "/")
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(PasswordChangeRequired)
    async def _password_change(request: Request, exc: PasswordChangeRequired) -> Response:
        return RedirectResponse("/account?first=1", status_code=303)

    @app.exception_handler(PageDenied)
    async def _denied(request: Request, exc: PageDenied) -> Response:
        return _error(request, exc.status_code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(request, exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors()[:10]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            problems.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        message = "The request is not valid: " + "; ".join(problems)
        if _wants_json(request):
            body = ErrorBody(detail=message, errors=[
                {"loc": list(e.get("loc", ())), "msg": e.get("msg", "invalid"), "type": e.get("type", "value_error")} for e in exc.errors()[:50]
            ])
            return JSONResponse(body.model_dump(exclude_none=True), status_code=422)
        return _error(request, 422, message)

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> Response:
        return _error(request, 422, str(exc))

    @app.exception_handler(ConfigError)
    async def _config(request: Request, exc: ConfigError) -> Response:
        return _error(request, 422, str(exc))

    @app.exception_handler(BundleError)
    async def _bundle(request: Request, exc: BundleError) -> Response:
        log.error("model bundle unusable: %s", type(exc).__name__)
        return _error(request, 503, "The model bundle cannot be used (it is incomplete or was altered); ask an administrator.")

    @app.exception_handler(MedassistError)
    async def _medassist(request: Request, exc: MedassistError) -> Response:
        return _error(request, 422, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # the route template, not the path: a path can carry an MRN or a source id
        log.error("unexpected error on %s %s", request.method, route_path(request.scope), exc_info=exc)
        return _error(request, 500, "Something went wrong on the server; nothing was recorded. The error is in the server log.")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """On shutdown, sign an audit checkpoint of the log as it stands (so a later truncation shows)."""
    yield
    from medassist.store.audit import checkpoint_now

    db = app.state.ctx.db
    try:
        checkpoint_now(db)
    except (OSError, ConfigError) as e:  # shutting down anyway: say so, `audit verify` reports the gap
        log.error("could not write the audit checkpoint %s on shutdown: %s", db.audit_files.checkpoint_path, e)


def create_app(settings: Settings | None = None, *, plugins: list[AssistantPlugin] | None = None) -> FastAPI:
    """Build the service: database (migrated), keys, bundle catalog, core routes and plugins."""
    from medassist.service import api, pages  # routers import rendering/auth, which need nothing at import

    settings = settings or Settings()
    if not settings.home.exists():  # it will hold the database, keys and PHI: owner only
        settings.home.mkdir(parents=True, mode=0o700)
    db = open_database(settings)
    cipher = FieldCipher.from_settings(settings)
    if settings.secret_key is not None:
        secret = settings.secret_key.get_secret_value().encode()
    else:  # dev profile only (settings refuse this elsewhere): a generated key kept under keys/
        secret = load_or_create_secret(settings.keys_dir / "session_secret", what="session secret",
                                       make=lambda: secrets.token_urlsafe(48).encode())
    plugins = load_plugins() if plugins is None else plugins
    roots = [settings.bundles_dir, settings.home / "demo", *settings.bundle_dirs]
    catalog = BundleCatalog(roots=roots)
    catalog.refresh()
    ctx = ServiceContext(settings=settings, db=db, cipher=cipher, catalog=catalog, secret=secret,
                         templates=make_environment(plugins), plugins=plugins)

    app = FastAPI(
        title="medassist", version=medassist.__version__,
        description="Clinical decision support (not a medical device). Every prediction is audited.",
        openapi_url=None, docs_url=None, redoc_url=None, debug=False,
        max_body_size=settings.max_upload_bytes + BODY_OVERHEAD,
        lifespan=_lifespan,
    )
    app.state.ctx = ctx
    app.add_middleware(SecurityHeaders, hsts=settings.cookie_secure)
    app.add_middleware(AccessLog)  # outermost of ours: one line per request, route templates only
    _install_handlers(app, settings)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.include_router(pages.router)
    app.include_router(document_errors(api.router), prefix="/api/v1")
    for plugin in plugins:
        app.include_router(document_errors(plugin.api_router), prefix=f"/api/v1/{plugin.name}", tags=[plugin.name])
        app.include_router(plugin.page_router, prefix=plugin.path, include_in_schema=False)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each worker process reads the settings itself)."""
    return create_app(Settings())
