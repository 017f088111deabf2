"""Taking results away: CSV downloads of served predictions and screening jobs.

Every download is a page route (the browser's session cookie) or an API route (bearer token)
guarded like the page it comes from; it is only ever of the caller's own results, and it is
written to the audit log (who, when, which bundle, which prediction). Cells that a spreadsheet
would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR at the start of a text) are
neutralised with a leading apostrophe by ``data.io.tables.write_table`` (the one CSV writer)
before it is sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pandas as pd
from fastapi import HTTPException
from fastapi.responses import Response

from medassist.data.io.tables import write_table
from medassist.service.auth import Principal
from medassist.service.context import ServiceContext
from medassist.service.plugin_common import scratch_dir
from medassist.store.audit import append_entry
from medassist.store.models import Prediction, User


def csv_bytes(ctx: ServiceContext, rows: list[dict[str, Any]] | pd.DataFrame) -> bytes:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)  # write_table neutralises formulas
    with scratch_dir(ctx, "download-") as work:
        return write_table(frame, work / "results.csv").read_bytes()


def csv_response(data: bytes, *, filename: str) -> Response:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename)[:80] or "results.csv"
    return Response(data, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{safe}"', "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def audit_download(ctx: ServiceContext, principal: Principal, *, assistant: str, bundle_id: str | None, what: str,
                   n_rows: int) -> int:
    with ctx.db.session(write=True) as s:
        entry = append_entry(s, user=s.get(User, principal.user_id), action="download", bundle_id=bundle_id,
                             detail={"assistant": assistant, "what": what, "n_rows": n_rows, "format": "csv", "via": principal.via.value})
        return entry.id


def prediction_csv_response(ctx: ServiceContext, principal: Principal, prediction_id: int, *, assistant: str,
                            rows: Callable[[ServiceContext, str, list[dict[str, Any]]], list[dict[str, Any]]]) -> Response:
    """One of the caller's own recorded predictions as CSV; someone else's is 404 (not 403:
    the id says nothing about whether it exists)."""
    import json

    with ctx.db.session() as s:
        pred = s.get(Prediction, prediction_id)
        if pred is None or pred.user_id != principal.user_id or pred.assistant != assistant:
            raise HTTPException(404, f"No {assistant} prediction #{prediction_id} of yours.")
        bundle_id, output_enc = pred.bundle_id, pred.output_enc
    output = json.loads(ctx.cipher.decrypt(output_enc))
    table = rows(ctx, bundle_id, output if isinstance(output, list) else [output])
    data = csv_bytes(ctx, table)
    audit_download(ctx, principal, assistant=assistant, bundle_id=bundle_id, what=f"prediction {prediction_id}", n_rows=len(table))
    return csv_response(data, filename=f"{assistant}-prediction-{prediction_id}.csv")
