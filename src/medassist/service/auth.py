"""Sign-in, sessions, API tokens, CSRF and the route guards.

- Web app: a session cookie (random token; the table stores its SHA-256), ``HttpOnly``,
  ``SameSite=Strict``, ``Secure`` outside the dev profile, idle and absolute expiry. Every
  state-changing form carries the session's CSRF token (checked with ``compare_digest``), and a
  cross-site ``Origin`` or ``Sec-Fetch-Site`` is refused. The sign-in form, before any session,
  uses a signed double-submit token (HMAC of a cookie nonce with the secret key).
- REST API: ``Authorization: Bearer mat_...`` tokens only (no cookies, so no CSRF surface). A
  resolved token is kept for ``TOKEN_CACHE_S`` seconds (keyed by its SHA-256), so a busy client
  does not cost a database look-up per request; any write to users or API tokens made through
  this process (revoking a token, disabling a user, changing a role or password) empties that
  cache at once, and a change made by another process (the CLI, another worker) is seen within
  ``TOKEN_CACHE_S``.
- Sign-in: a per-client rate limit (attempts per minute) and a per-account lockout after
  ``login_max_failures`` wrong passwords in a row; unknown users cost the same argon2 time.

Every route declares its guard: ``Depends(Require(Permission.X, surface=Surface.PAGE))`` or
``Depends(Public(...))``; the authorisation matrix test reads them.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from urllib.parse import quote, urlparse

from fastapi import HTTPException, Request, Response
from sqlalchemy import delete, event, func, select, update
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool

from medassist.service.context import ServiceContext, get_ctx
from medassist.service.permissions import Permission, allowed
from medassist.store import accounts
from medassist.store.accounts import Role
from medassist.store.audit import append_entry
from medassist.store.models import ApiToken, LoginAttempt, User, WebSession, utcnow

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class Surface(StrEnum):
    PAGE = "page"  # cookie session, HTML, CSRF on unsafe methods
    API = "api"    # bearer token, JSON


@dataclass(frozen=True, kw_only=True)
class Principal:
    """The signed-in user of one request (plain values, safe to pass between threads)."""

    user_id: int
    username: str
    role: Role
    via: Surface
    csrf_token: str | None = None
    must_change_password: bool = False

    def can(self, permission: Permission) -> bool:
        return allowed(self.role, permission)


class LoginRequired(Exception):
    """A page needs a signed-in user; the app redirects to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class PageDenied(Exception):
    """A signed-in user asked for a page their role may not see, or a form failed CSRF."""

    def __init__(self, message: str, status_code: int = 403) -> None:
        self.message, self.status_code = message, status_code


class PasswordChangeRequired(Exception):
    """A one-time password was used; the account page comes first."""


def session_cookie_name(ctx: ServiceContext) -> str:
    return "__Host-medassist_session" if ctx.settings.cookie_secure else "medassist_session"


def login_cookie_name(ctx: ServiceContext) -> str:
    return "__Host-medassist_login" if ctx.settings.cookie_secure else "medassist_login"


# --------------------------------------------------------------------------------------------
# Resolving the principal


def _principal_from_session(ctx: ServiceContext, token: str) -> Principal | None:
    with ctx.db.session() as s:
        found = accounts.find_web_session(s, token, idle_s=ctx.settings.session_idle_s)
        if found is None:
            return None
        ws, user = found
        principal = Principal(user_id=user.id, username=user.username, role=Role(user.role), via=Surface.PAGE,
                              csrf_token=ws.csrf_token, must_change_password=user.must_change_password)
        stale = utcnow() - ws.last_seen_at > timedelta(seconds=60)
        ws_id = ws.id
    if stale:  # sliding idle timeout, written at most once a minute
        with ctx.db.session() as s:
            s.execute(update(WebSession).where(WebSession.id == ws_id).values(last_seen_at=utcnow()))
    return principal


def _principal_from_token(ctx: ServiceContext, token: str) -> tuple[Principal, float] | None:
    """The token's principal and how many seconds the token stays valid, or None."""
    with ctx.db.session() as s:
        found = accounts.find_api_token(s, token)
        if found is None:
            return None
        tok, user = found
        principal = Principal(user_id=user.id, username=user.username, role=Role(user.role), via=Surface.API,
                              must_change_password=user.must_change_password)
        now = utcnow()
        stale = tok.last_used_at is None or now - tok.last_used_at > timedelta(seconds=60)
        tok_id, valid_s = tok.id, (tok.expires_at - now).total_seconds()
    if stale:
        with ctx.db.session() as s:
            s.execute(update(ApiToken).where(ApiToken.id == tok_id).values(last_used_at=utcnow()))
    return principal, valid_s


#: Seconds a resolved API token is trusted without a database look-up (see the module docstring).
TOKEN_CACHE_S = 2.0
_AUTH_TABLES = frozenset({"users", "api_tokens"})
#: Bumped by every flush or bulk statement that writes users or API tokens, in any session of
#: this process; a cache that sees it change forgets everything it holds.
_auth_generation = itertools.count()
_generation = [next(_auth_generation)]
_listening = threading.Lock()
_listeners_on = [False]


def _bump(*_: object) -> None:
    _generation[0] = next(_auth_generation)


_WROTE_AUTH = "medassist_wrote_auth"


def _after_flush(session: Session, flush_context: object) -> None:
    for obj in itertools.chain(session.new, session.dirty, session.deleted):
        if getattr(obj, "__tablename__", None) in _AUTH_TABLES:
            session.info[_WROTE_AUTH] = True
            _bump()
            return


def _on_execute(state) -> None:
    if state.is_update or state.is_delete:
        table = getattr(getattr(state.statement, "table", None), "name", None)
        if table in _AUTH_TABLES or table is None:
            state.session.info[_WROTE_AUTH] = True
            _bump()


def _after_commit(session: Session) -> None:
    # again once committed: a look-up that read the row between the flush and the commit saw the
    # old state, and must not be the one that stays cached
    if session.info.pop(_WROTE_AUTH, False):
        _bump()


def _listen_for_auth_writes() -> None:
    with _listening:
        if not _listeners_on[0]:
            event.listen(Session, "after_flush", _after_flush)
            event.listen(Session, "do_orm_execute", _on_execute)
            event.listen(Session, "after_commit", _after_commit)
            _listeners_on[0] = True


class TokenCache:
    """API token digest → (principal, monotonic deadline); emptied when users or tokens change."""

    def __init__(self, *, ttl_s: float = TOKEN_CACHE_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._generation = _generation[0]
        self._lock = threading.Lock()
        _listen_for_auth_writes()

    def get(self, digest: str) -> Principal | None:
        if self._generation != _generation[0]:
            with self._lock:
                self._entries.clear()
                self._generation = _generation[0]
            return None
        hit = self._entries.get(digest)
        if hit is None or hit[1] <= time.monotonic():
            return None
        return hit[0]

    def put(self, digest: str, principal: Principal, *, valid_s: float, generation: int) -> None:
        if generation != _generation[0] or valid_s <= 0:
            return  # users or tokens changed while it was looked up: do not keep what may be stale
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (principal, time.monotonic() + min(self.ttl_s, valid_s))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _token_cache(ctx: ServiceContext) -> TokenCache:
    cache = ctx.state.get("_api_tokens")
    if cache is None:
        cache = ctx.state.setdefault("_api_tokens", TokenCache())
    return cache


async def principal_for_token(ctx: ServiceContext, token: str) -> Principal | None:
    """The principal of an API token: from the cache, else from the database (then cached)."""
    cache = _token_cache(ctx)
    key = accounts.digest(token)
    principal = cache.get(key)
    if principal is not None:
        return principal
    generation = _generation[0]
    found = await run_in_threadpool(_principal_from_token, ctx, token)
    if found is None:
        return None
    principal, valid_s = found
    cache.put(key, principal, valid_s=valid_s, generation=generation)
    return principal


def _same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return urlparse(origin).netloc == request.headers.get("host", "")
    return origin != "null"


async def _check_csrf(request: Request, expected: str) -> None:
    if not _same_origin(request):
        raise PageDenied("This form was sent from another site; it was refused (CSRF protection).")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise PageDenied("The form's security token is missing or out of date (CSRF protection). Reload the page and try again.")


class Require:
    """Route guard: a signed-in principal whose role has ``permission``.

    Pages: anonymous → redirect to sign-in; wrong role → 403 page; an unsafe method without the
    session's CSRF token → 403. API: anonymous → 401 with ``WWW-Authenticate: Bearer``; wrong
    role → 403. A user on a one-time password may only reach ``allow_password_change`` routes.
    """

    def __init__(self, permission: Permission, *, surface: Surface, allow_password_change: bool = False) -> None:
        self.permission = permission
        self.surface = surface
        self.allow_password_change = allow_password_change

    def __repr__(self) -> str:
        return f"Require({self.permission.value!r}, surface={self.surface.value!r})"

    async def __call__(self, request: Request) -> Principal:
        ctx = get_ctx(request)
        if self.surface is Surface.API:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            principal = None
            if scheme.lower() == "bearer" and token.strip():
                principal = await principal_for_token(ctx, token.strip())
            if principal is None:
                raise HTTPException(401, "Sign in: send 'Authorization: Bearer <token>' with a valid API token.",
                                    headers={"WWW-Authenticate": "Bearer"})
            if not principal.can(self.permission):
                raise HTTPException(403, f"Your role ({principal.role.value}) may not use this route (needs '{self.permission.value}').")
            if principal.must_change_password:
                raise HTTPException(403, "Change your one-time password in the web app before using the API.")
            request.state.principal = principal
            return principal
        cookie = request.cookies.get(session_cookie_name(ctx))
        principal = await run_in_threadpool(_principal_from_session, ctx, cookie) if cookie else None
        if principal is None:
            raise LoginRequired(request.url.path)
        request.state.principal = principal
        if not principal.can(self.permission):
            raise PageDenied(f"Your role ({principal.role.value}) may not open this page (it needs '{self.permission.value}').")
        if request.method in UNSAFE:
            await _check_csrf(request, principal.csrf_token or "")
        if principal.must_change_password and not self.allow_password_change:
            raise PasswordChangeRequired()
        return principal


class Public:
    """Route guard for routes anyone may call (sign-in, health, static files)."""

    def __init__(self, *, surface: Surface) -> None:
        self.surface = surface

    def __repr__(self) -> str:
        return f"Public(surface={self.surface.value!r})"

    async def __call__(self, request: Request) -> None:
        return None


def route_table(app: Starlette) -> list[tuple[str, str, object]]:
    """``(method, path, route)`` for every route of ``app``, routers' routes with their prefixes;
    a mount (static files) appears as ``("GET", path, mount)``."""
    try:  # FastAPI keeps included routers as nested objects; this flattens them with their prefixes
        from fastapi.routing import iter_route_contexts

        routes: list[object] = list(iter_route_contexts(app.routes))
    except ImportError:  # older FastAPI copies routes into app.routes
        routes = list(app.routes)
    table: list[tuple[str, str, object]] = []
    for route in routes:
        methods = getattr(route, "methods", None)
        path: str = getattr(route, "path", None) or ""
        for method in sorted(methods or {"GET"}):
            table.append((method, path, route))
    return table


def guards_of(route) -> list[Require | Public]:
    """The guards a route declares (its dependency tree, depth first); none for a mount."""
    found: list[Require | Public] = []
    if getattr(route, "dependant", None) is None:
        return found

    def walk(dependant) -> None:
        for dep in dependant.dependencies:
            if isinstance(dep.call, (Require, Public)):
                found.append(dep.call)
            walk(dep)

    walk(route.dependant)
    return found


# --------------------------------------------------------------------------------------------
# Sign-in


def login_csrf_pair(ctx: ServiceContext, nonce: str | None = None) -> tuple[str, str]:
    """(cookie nonce, form token): the form token is an HMAC of the nonce with the secret key."""
    nonce = nonce or secrets.token_urlsafe(24)
    return nonce, hmac.new(ctx.secret, nonce.encode(), hashlib.sha256).hexdigest()


def check_login_csrf(ctx: ServiceContext, request: Request, form_token: str) -> bool:
    nonce = request.cookies.get(login_cookie_name(ctx), "")
    if not nonce or not _same_origin(request):
        return False
    return hmac.compare_digest(login_csrf_pair(ctx, nonce)[1], form_token or "")


class LoginOutcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    LOCKED = "locked"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class LoginResult:
    outcome: LoginOutcome
    session_token: str | None = None
    must_change_password: bool = False


def attempt_login(ctx: ServiceContext, *, username: str, password: str, client: str) -> LoginResult:
    """Check a sign-in; counts failures, locks the account, limits attempts per client."""
    st = ctx.settings
    name = username.strip().lower()[:64]
    known_name = name if accounts.USERNAME.fullmatch(name) else "(invalid)"
    now = utcnow()
    with ctx.db.session(write=True) as s:
        recent = s.scalar(select(func.count(LoginAttempt.id)).where(
            LoginAttempt.client == client, LoginAttempt.at > now - timedelta(seconds=60))) or 0
        if recent >= st.login_rate_per_minute:
            return LoginResult(LoginOutcome.RATE_LIMITED)
        attempt = LoginAttempt(at=now, username=known_name, client=client[:64], success=False)
        s.add(attempt)
        s.flush()
        attempt_id = attempt.id
    with ctx.db.session() as s:
        user = accounts.get_user(s, name) if known_name != "(invalid)" else None
        user_id, password_hash = (user.id, user.password_hash) if user and user.is_active else (None, None)
    if password_hash is None:
        accounts.burn_verify(password)
        with ctx.db.session(write=True) as s:
            append_entry(s, user=None, username=known_name, action="login.failed", detail={"reason": "unknown or inactive user"})
        return LoginResult(LoginOutcome.FAILED)
    ok = accounts.verify_password(password_hash, password)  # outside any transaction: argon2 is slow on purpose
    with ctx.db.session(write=True) as s:
        user = s.get(User, user_id)
        if user is None:  # deleted since the password was read: as for an unknown user
            append_entry(s, user=None, username=known_name, action="login.failed", detail={"reason": "unknown or inactive user"})
            return LoginResult(LoginOutcome.FAILED)
        if accounts.is_locked(user):
            append_entry(s, user=user, action="login.refused", detail={"reason": "account locked"})
            return LoginResult(LoginOutcome.LOCKED)
        if not ok:
            user.failed_logins += 1
            detail = {"reason": "wrong password", "failures": user.failed_logins}
            if user.failed_logins >= st.login_max_failures:
                user.locked_until, user.failed_logins = now + timedelta(seconds=st.login_lockout_s), 0
                detail["locked_for_s"] = st.login_lockout_s
            append_entry(s, user=user, action="login.failed", detail=detail)
            return LoginResult(LoginOutcome.LOCKED if "locked_for_s" in detail else LoginOutcome.FAILED)
        user.failed_logins, user.locked_until = 0, None
        if accounts.needs_rehash(user.password_hash):
            user.password_hash = accounts.hash_password(password)
        s.execute(update(LoginAttempt).where(LoginAttempt.id == attempt_id).values(success=True))
        _, token = accounts.new_web_session(s, user=user, lifetime_s=st.session_lifetime_s)
        append_entry(s, user=user, action="login", detail={"via": "web"})
        return LoginResult(LoginOutcome.OK, session_token=token, must_change_password=user.must_change_password)


def end_session(ctx: ServiceContext, token: str | None, *, principal: Principal) -> None:
    with ctx.db.session(write=True) as s:
        if token:
            s.execute(delete(WebSession).where(WebSession.token_hash == accounts.digest(token)))
        user = s.get(User, principal.user_id)
        append_entry(s, user=user, action="logout")


def set_session_cookie(ctx: ServiceContext, response: Response, token: str) -> None:
    response.set_cookie(session_cookie_name(ctx), token, max_age=ctx.settings.session_lifetime_s, path="/",
                        httponly=True, samesite="strict", secure=ctx.settings.cookie_secure)


def clear_session_cookie(ctx: ServiceContext, response: Response) -> None:
    response.delete_cookie(session_cookie_name(ctx), path="/", httponly=True, samesite="strict", secure=ctx.settings.cookie_secure)


def login_redirect(next_url: str) -> str:
    safe = next_url if next_url.startswith("/") and not next_url.startswith("//") else "/"
    return f"/login?next={quote(safe)}"
