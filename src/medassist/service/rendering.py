"""Server-rendered pages: one Jinja2 environment (autoescaped) over the core templates and each
plugin's templates (``"<plugin>/<file>.html"``)."""

from __future__ import annotations

import json
import math
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

import medassist
from medassist.service.auth import Principal
from medassist.service.clinical import sig
from medassist.service.context import DISCLAIMER, ServiceContext, get_ctx
from medassist.service.permissions import Permission
from medassist.service.plugins import TEMPLATES, AssistantPlugin


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def _interval(metric: Any) -> str:
    if not isinstance(metric, dict) or metric.get("value") is None:
        return "n/a"
    lo, hi = metric.get("ci_low"), metric.get("ci_high")
    ci = f" [{_fmt(lo)}, {_fmt(hi)}]" if lo is not None and hi is not None else ""
    return f"{_fmt(metric['value'])}{ci}"


def make_environment(plugins: list[AssistantPlugin]) -> jinja2.Environment:
    loader = jinja2.ChoiceLoader([
        jinja2.FileSystemLoader(str(TEMPLATES)),
        jinja2.PrefixLoader({p.name: jinja2.FileSystemLoader(str(p.templates_dir)) for p in plugins}),
    ])
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(fmt=_fmt, pct=_pct, interval=_interval, sig=sig, tojson_pretty=lambda v: json.dumps(v, indent=1, default=str))
    env.globals.update(DISCLAIMER=DISCLAIMER, VERSION=medassist.__version__)
    return env


def nav_entries(ctx: ServiceContext, principal: Principal | None) -> list[dict[str, str]]:
    if principal is None:
        return []
    entries = [{"label": p.title, "path": p.path} for p in ctx.plugins if principal.can(p.permission)]
    core = [("Models", "/models", Permission.MODELS_READ), ("Audit log", "/audit", Permission.AUDIT_READ),
            ("Users", "/admin/users", Permission.USERS_MANAGE), ("API", "/api/docs", Permission.ACCOUNT),
            ("Account", "/account", Permission.ACCOUNT)]
    entries += [{"label": label, "path": path} for label, path, perm in core if principal.can(perm)]
    return entries


def render(request: Request, name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    ctx = get_ctx(request)
    principal: Principal | None = getattr(request.state, "principal", None)
    html = ctx.templates.get_template(name).render(
        request_path=request.url.path, principal=principal, nav=nav_entries(ctx, principal),
        csrf_token=principal.csrf_token if principal else "", profile=ctx.settings.profile.value,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"
