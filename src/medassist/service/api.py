"""Core REST API (``/api/v1``): who am I, model bundles with their cards, the audit log, the
OpenAPI schema. Bearer tokens only; each route names its permission. Assistant routes come from
the plugins (``/api/v1/<assistant>/...``)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel
from sqlalchemy import select

from medassist.service.auth import Principal, Require, Surface
from medassist.service.context import DISCLAIMER, get_ctx
from medassist.service.permissions import ROLE_PERMISSIONS, Permission
from medassist.store.audit import AuditEntry, decode_detail, verify_chain

router = APIRouter()
BUNDLE_ID = Path(pattern=r"^[0-9a-f]{16}$", description="16 hex digits (from GET /api/v1/models)")
ACCOUNT = Require(Permission.ACCOUNT, surface=Surface.API)
MODELS = Require(Permission.MODELS_READ, surface=Surface.API)
AUDIT = Require(Permission.AUDIT_READ, surface=Surface.API)


class Me(BaseModel):
    username: str
    role: str
    permissions: list[str]


@router.get("/me", response_model=Me, summary="The signed-in user and what their role may do")
def me(principal: Principal = Depends(ACCOUNT)) -> Me:
    return Me(username=principal.username, role=principal.role.value,
              permissions=sorted(p.value for p in ROLE_PERMISSIONS[principal.role]))


@router.get("/models", summary="Model bundles on offer, with their model cards")
def list_models(request: Request, task: str | None = Query(None, max_length=64), principal: Principal = Depends(MODELS)) -> dict[str, Any]:
    ctx = get_ctx(request)
    out = []
    for info in ctx.catalog.list(tasks=(task,) if task else None):
        plugin = ctx.plugin_for_task(info.task)
        out.append({**info.summary(), "assistant": plugin.name if plugin else None, "model_card": info.model_card})
    return {"disclaimer": DISCLAIMER, "models": out}


@router.get("/models/{bundle_id}", summary="One bundle: model card and input schema")
def get_model(request: Request, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(MODELS)) -> dict[str, Any]:
    ctx = get_ctx(request)
    info = ctx.catalog.get(bundle_id)
    if info is None:
        raise HTTPException(404, f"No model bundle with id {bundle_id}.")
    plugin = ctx.plugin_for_task(info.task)
    schema_path = info.path / "schema.json"
    schema = json.loads(schema_path.read_text()) if schema_path.is_file() else {}
    return {"disclaimer": DISCLAIMER, **info.summary(), "assistant": plugin.name if plugin else None,
            "schema": schema, "model_card": info.model_card}


@router.get("/models/{bundle_id}/report", summary="The bundle's evaluation report (HTML)", response_class=FileResponse)
def get_report(request: Request, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(MODELS)) -> FileResponse:
    info = get_ctx(request).catalog.get(bundle_id)
    if info is None or not info.has_report:
        raise HTTPException(404, f"No report for model bundle {bundle_id}.")
    return FileResponse(info.path / "report.html", media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"})


@router.get("/audit", summary="Audit log entries, newest first (no PHI: inputs appear as SHA-256)")
def audit_entries(
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    before_id: int | None = Query(None, ge=1),
    action: str | None = Query(None, max_length=64),
    principal: Principal = Depends(AUDIT),
) -> dict[str, Any]:
    ctx = get_ctx(request)
    with ctx.db.session() as s:
        q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if before_id:
            q = q.where(AuditEntry.id < before_id)
        if action:
            q = q.where(AuditEntry.action == action)
        entries = s.scalars(q).all()
    return {"entries": [
        {"id": e.id, "at": e.at, "user_id": e.user_id, "username": e.username, "role": e.role, "action": e.action,
         "bundle_id": e.bundle_id, "input_sha256": e.input_sha256, "detail": decode_detail(e), "prev_hash": e.prev_hash,
         "entry_hash": e.entry_hash} for e in entries
    ]}


@router.get("/audit/verify", summary="Check the audit log's hash chain")
def audit_verify(request: Request, principal: Principal = Depends(AUDIT)) -> dict[str, Any]:
    with get_ctx(request).db.session() as s:
        check = verify_chain(s)
    return {"ok": check.ok, "entries": check.n_entries, "head": check.head, "broken_id": check.broken_id,
            "reason": check.reason, "message": check.describe()}


@router.get("/openapi.json", summary="This API's OpenAPI schema")
def openapi(request: Request, principal: Principal = Depends(ACCOUNT)) -> JSONResponse:
    return JSONResponse(request.app.openapi())
