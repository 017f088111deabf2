"""Core web pages: sign-in, home, account (password, API tokens), models, audit log, users,
API reference. Assistant pages come from the plugins."""

from __future__ import annotations

import dataclasses
from typing import Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from medassist.exceptions import ConfigError
from medassist.service import auth
from medassist.service.auth import Principal, Public, Require, Surface
from medassist.service.context import get_ctx
from medassist.service.permissions import ROLE_PERMISSIONS, Permission
from medassist.service.rendering import render
from medassist.store import accounts
from medassist.store.accounts import Role
from medassist.store.audit import AuditEntry, append_entry, decode_detail, verify_chain
from medassist.store.models import ApiToken, User, WebSession, table_of, utcnow

router = APIRouter(include_in_schema=False)
BUNDLE_ID = Path(pattern=r"^[0-9a-f]{16}$", description="16 hex digits (from the model list)")

PUBLIC = Public(surface=Surface.PAGE)
ACCOUNT = Require(Permission.ACCOUNT, surface=Surface.PAGE)
ACCOUNT_FIRST = Require(Permission.ACCOUNT, surface=Surface.PAGE, allow_password_change=True)
MODELS = Require(Permission.MODELS_READ, surface=Surface.PAGE)
AUDIT = Require(Permission.AUDIT_READ, surface=Surface.PAGE)
USERS = Require(Permission.USERS_MANAGE, surface=Surface.PAGE)
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox; frame-ancestors 'none'"


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# --------------------------------------------------------------------------------------------
# Sign-in


def _login_page(request: Request, *, next_url: str, message: str = "", status_code: int = 200) -> Response:
    ctx = get_ctx(request)
    nonce, token = auth.login_csrf_pair(ctx)
    safe_next = next_url if next_url.startswith("/") and not next_url.startswith("//") else "/"
    response = render(request, "login.html", status_code=status_code, login_token=token, next_url=safe_next, message=message)
    response.set_cookie(auth.login_cookie_name(ctx), nonce, max_age=3600, path="/", httponly=True, samesite="strict",
                        secure=ctx.settings.cookie_secure)
    return response


@router.get("/login", dependencies=[Depends(PUBLIC)])
def login_form(request: Request, next: str = Query("/", max_length=512)) -> Response:
    return _login_page(request, next_url=next)


@router.post("/login", dependencies=[Depends(PUBLIC)])
async def login_submit(
    request: Request,
    username: str = Form(..., max_length=256),
    password: str = Form(..., max_length=1024),
    login_token: str = Form("", max_length=256),
    next: str = Form("/", max_length=512),
) -> Response:
    ctx = get_ctx(request)
    if not auth.check_login_csrf(ctx, request, login_token):
        return _login_page(request, next_url=next, status_code=403,
                           message="The sign-in form expired or was sent from another site. Please try again.")
    result = await run_in_threadpool(auth.attempt_login, ctx, username=username, password=password, client=_client(request))
    if result.outcome is auth.LoginOutcome.RATE_LIMITED:
        response = _login_page(request, next_url=next, status_code=429,
                               message="Too many sign-in attempts from this computer. Wait a minute and try again.")
        response.headers["Retry-After"] = "60"
        return response
    if result.outcome is not auth.LoginOutcome.OK:
        return _login_page(request, next_url=next, status_code=401, message=(
            "Sign-in failed: wrong username or password, or the account is locked after too many failed attempts "
            "(it unlocks after a while, or an administrator can unlock it)."))
    target = "/account?first=1" if result.must_change_password else (next if next.startswith("/") and not next.startswith("//") else "/")
    response = RedirectResponse(target, status_code=303)
    auth.set_session_cookie(ctx, response, result.session_token or "")
    response.delete_cookie(auth.login_cookie_name(ctx), path="/")
    return response


@router.post("/logout")
def logout(request: Request, principal: Principal = Depends(ACCOUNT_FIRST)) -> Response:
    ctx = get_ctx(request)
    auth.end_session(ctx, request.cookies.get(auth.session_cookie_name(ctx)), principal=principal)
    response = RedirectResponse("/login", status_code=303)
    auth.clear_session_cookie(ctx, response)
    return response


@router.get("/healthz", dependencies=[Depends(PUBLIC)])
def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


# --------------------------------------------------------------------------------------------
# Home and account


@router.get("/")
def home(request: Request, principal: Principal = Depends(ACCOUNT)) -> Response:
    ctx = get_ctx(request)
    assistants = [p for p in ctx.plugins if principal.can(p.permission)]
    return render(request, "home.html", assistants=assistants, role_permissions=sorted(p.value for p in ROLE_PERMISSIONS[principal.role]))


def _account_page(request: Request, principal: Principal, *, message: str = "", error: str = "", new_token: str = "",
                  status_code: int = 200) -> Response:
    ctx = get_ctx(request)
    with ctx.db.session() as s:
        tokens = s.scalars(select(ApiToken).where(ApiToken.user_id == principal.user_id).order_by(ApiToken.id.desc())).all()
    now = utcnow()
    rows = [{"id": t.id, "name": t.name, "prefix": t.prefix, "created": t.created_at, "expires": t.expires_at,
             "last_used": t.last_used_at, "active": t.revoked_at is None and t.expires_at > now} for t in tokens]
    first = request.query_params.get("first") == "1" or principal.must_change_password
    return render(request, "account.html", status_code=status_code, tokens=rows, message=message, error=error,
                  new_token=new_token, first=first, token_days=ctx.settings.api_token_days)


@router.get("/account")
def account(request: Request, principal: Principal = Depends(ACCOUNT_FIRST)) -> Response:
    return _account_page(request, principal)


def _own_user(s: Session, principal: Principal) -> User:
    """The signed-in user's row (accounts are deactivated, never deleted, so it is there)."""
    user = s.get(User, principal.user_id)
    if user is None:
        raise HTTPException(401, "Your account no longer exists; sign in again.")
    return user


def _web_sessions() -> Table:
    """WebSession's table: signing sessions out is a Core DELETE, outside the ORM session's bookkeeping."""
    return table_of(WebSession)


@router.post("/account/password")
def change_password(
    request: Request,
    current: str = Form(..., max_length=1024),
    new: str = Form(..., max_length=1024),
    confirm: str = Form(..., max_length=1024),
    principal: Principal = Depends(ACCOUNT_FIRST),
) -> Response:
    ctx = get_ctx(request)
    if new != confirm:
        return _account_page(request, principal, error="The new password and its confirmation differ.", status_code=422)
    with ctx.db.session() as s:
        stored = _own_user(s, principal).password_hash
    if not accounts.verify_password(stored, current):
        return _account_page(request, principal, error="The current password is wrong.", status_code=422)
    if new == current:
        return _account_page(request, principal, error="The new password must differ from the current one.", status_code=422)
    token = request.cookies.get(auth.session_cookie_name(ctx), "")
    with ctx.db.session(write=True) as s:
        user = _own_user(s, principal)
        try:
            accounts.set_password(user, new, one_time=False)
        except ConfigError as e:
            s.rollback()
            return _account_page(request, principal, error=str(e), status_code=422)
        # Other browsers signed in as this user are signed out.
        s.execute(delete(_web_sessions()).where(WebSession.user_id == user.id, WebSession.token_hash != accounts.digest(token)))
        append_entry(s, user=user, action="password.change")
    request.state.principal = dataclasses.replace(principal, must_change_password=False)
    return _account_page(request, request.state.principal, message="Your password was changed.")


@router.post("/account/tokens")
def create_token(request: Request, name: str = Form("api", max_length=64), principal: Principal = Depends(ACCOUNT)) -> Response:
    ctx = get_ctx(request)
    with ctx.db.session(write=True) as s:
        user = _own_user(s, principal)
        token, plaintext = accounts.new_api_token(s, user=user, name=name, days=ctx.settings.api_token_days)
        append_entry(s, user=user, action="token.create", detail={"token_id": token.id, "prefix": token.prefix})
    return _account_page(request, principal, new_token=plaintext, message="New API token (shown once; copy it now).")


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(request: Request, token_id: int = Path(ge=1), principal: Principal = Depends(ACCOUNT)) -> Response:
    ctx = get_ctx(request)
    with ctx.db.session(write=True) as s:
        token = s.get(ApiToken, token_id)
        if token is None or token.user_id != principal.user_id:
            raise HTTPException(404, "No such API token of yours.")
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            append_entry(s, user=s.get(User, principal.user_id), action="token.revoke", detail={"token_id": token.id})
    return _account_page(request, principal, message=f"Token {token.prefix}… was revoked.")


# --------------------------------------------------------------------------------------------
# Models


@router.get("/models")
def models(request: Request, principal: Principal = Depends(MODELS)) -> Response:
    ctx = get_ctx(request)
    rows = []
    for info in ctx.catalog.list():
        plugin = ctx.plugin_for_task(info.task)
        rows.append({"info": info, "plugin": plugin if plugin and principal.can(plugin.permission) else None})
    return render(request, "models.html", rows=rows)


def _info_or_404(request: Request, bundle_id: str):
    info = get_ctx(request).catalog.get(bundle_id)
    if info is None:
        raise HTTPException(404, f"No model bundle with id {bundle_id}.")
    return info


@router.get("/models/{bundle_id}")
def model_card(request: Request, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(MODELS)) -> Response:
    info = _info_or_404(request, bundle_id)
    plugin = get_ctx(request).plugin_for_task(info.task)
    data = info.model_card.get("data") or {}
    inputs = data.get("inputs")
    if not inputs:  # cards written before dictionaries: describe the inputs from the bundle's dictionary
        from medassist.evaluation.model_card import input_descriptions
        from medassist.service.clinical import dictionary_of

        columns = data.get("features") or data.get("covariates") or []
        inputs = input_descriptions([str(c) for c in columns], dictionary_of(get_ctx(request), info)) if columns else []
    return render(request, "model.html", info=info, card=info.model_card, inputs=inputs,
                  plugin=plugin if plugin and principal.can(plugin.permission) else None)


@router.get("/models/{bundle_id}/report")
def model_report(request: Request, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(MODELS)) -> Response:
    info = _info_or_404(request, bundle_id)
    if not info.has_report:
        raise HTTPException(404, f"Model bundle {bundle_id} has no report.html.")
    return FileResponse(info.path / "report.html", media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": REPORT_CSP})


# --------------------------------------------------------------------------------------------
# Audit log


@router.get("/audit")
def audit_page(
    request: Request,
    before: int | None = Query(None, ge=1),
    action: str | None = Query(None, max_length=64),
    verify: bool = Query(False),
    principal: Principal = Depends(AUDIT),
) -> Response:
    ctx = get_ctx(request)
    with ctx.db.session() as s:
        q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(50)
        if before:
            q = q.where(AuditEntry.id < before)
        if action:
            q = q.where(AuditEntry.action == action)
        entries = s.scalars(q).all()
        total = s.scalar(select(func.count(AuditEntry.id)))
        actions = s.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)).all()
        check = verify_chain(s) if verify else None
    rows = [{"e": e, "detail": decode_detail(e)} for e in entries]
    next_before = entries[-1].id if len(entries) == 50 else None
    return render(request, "audit.html", rows=rows, total=total, actions=actions, action=action or "", check=check,
                  next_before=next_before)


# --------------------------------------------------------------------------------------------
# Users (admin)


def _users_page(request: Request, *, message: str = "", error: str = "", one_time: dict | None = None, status_code: int = 200) -> Response:
    ctx = get_ctx(request)
    with ctx.db.session() as s:
        users = s.scalars(select(User).order_by(User.username)).all()
    now = utcnow()
    rows = [{"u": u, "locked": accounts.is_locked(u, now=now)} for u in users]
    return render(request, "admin_users.html", status_code=status_code, rows=rows, roles=[r.value for r in Role],
                  message=message, error=error, one_time=one_time)


@router.get("/admin/users")
def users_page(request: Request, principal: Principal = Depends(USERS)) -> Response:
    return _users_page(request)


@router.post("/admin/users")
def users_create(request: Request, username: str = Form(..., max_length=64), role: str = Form(..., max_length=16),
                 principal: Principal = Depends(USERS)) -> Response:
    ctx = get_ctx(request)
    with ctx.db.session(write=True) as s:
        try:
            user, password = accounts.create_user(s, username=username, role=role)
        except ConfigError as e:
            s.rollback()
            return _users_page(request, error=str(e), status_code=422)
        append_entry(s, user=s.get(User, principal.user_id), action="user.create", detail={"user": user.username, "role": user.role})
    return _users_page(request, message=f"User '{user.username}' ({user.role}) created.",
                       one_time={"username": user.username, "password": password})


@router.post("/admin/users/{user_id}/{action}")
def users_action(
    request: Request,
    user_id: int = Path(ge=1),
    action: Literal["unlock", "reset-password", "deactivate", "activate"] = Path(),
    principal: Principal = Depends(USERS),
) -> Response:
    ctx = get_ctx(request)
    one_time = None
    with ctx.db.session(write=True) as s:
        user = s.get(User, user_id)
        if user is None:
            raise HTTPException(404, f"No user with id {user_id}.")
        if user.id == principal.user_id and action == "deactivate":
            return _users_page(request, error="You cannot deactivate your own account.", status_code=422)
        if action == "unlock":
            user.failed_logins, user.locked_until = 0, None
        elif action == "reset-password":
            password = accounts.generate_password()
            accounts.set_password(user, password, one_time=True)
            s.execute(delete(_web_sessions()).where(WebSession.user_id == user.id))
            one_time = {"username": user.username, "password": password}
        elif action == "deactivate":
            user.is_active = False
            s.execute(delete(_web_sessions()).where(WebSession.user_id == user.id))
            s.execute(update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow()))
        else:
            user.is_active = True
        append_entry(s, user=s.get(User, principal.user_id), action=f"user.{action}", detail={"user": user.username})
        name = user.username
    return _users_page(request, message=f"{action.replace('-', ' ').capitalize()}: '{name}'.", one_time=one_time)


# --------------------------------------------------------------------------------------------
# API reference (rendered from the OpenAPI schema; no CDN assets)


@router.get("/api/docs")
def api_docs(request: Request, principal: Principal = Depends(ACCOUNT)) -> Response:
    schema = request.app.openapi()
    guards = {}
    for method, path, route in auth.route_table(request.app):
        for g in auth.guards_of(route):
            if isinstance(g, Require):
                guards[(method, path)] = g.permission.value
    ops = []
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            ops.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                        "description": (op.get("description") or "").strip().split("\n\n")[0],
                        "permission": guards.get((method.upper(), path), "public"),
                        "roles": [r.value for r, perms in ROLE_PERMISSIONS.items() if guards.get((method.upper(), path)) in perms]})
    return render(request, "api_docs.html", ops=ops, version=schema.get("info", {}).get("version", ""))
