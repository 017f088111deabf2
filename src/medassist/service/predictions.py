"""Recording a served prediction: one transaction writes the audit entry (who, when, which bundle,
SHA-256 of the input; no PHI) and the prediction row (input and output Fernet-encrypted). A
result is shown only after this commit, so every prediction served is in the audit log.

:func:`record_predictions` records the requests of one micro-batch in one transaction (a group
commit): one write lock and one commit instead of one per request, and still nothing is shown
before it is committed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert

from medassist.service.auth import Principal
from medassist.service.context import ServiceContext
from medassist.store.audit import Actor, NewEntry, append_entries, append_entry, canonical_json
from medassist.store.models import Prediction, User, table_of, utcnow


@dataclass(frozen=True)
class Recorded:
    audit_id: int
    prediction_id: int


@dataclass(frozen=True, kw_only=True)
class ToRecord:
    """One served request's prediction, waiting for its audit entry."""

    principal: Principal
    assistant: str
    bundle_id: str
    task: str
    input_value: Any
    input_sha256: str
    output: Any
    n_rows: int
    via: str


def record_predictions(ctx: ServiceContext, items: list[ToRecord]) -> list[Recorded]:
    """Record several predictions in one transaction (a group commit; encryption is done before
    it opens): their audit entries, in order and chained, then their prediction rows. Returns
    only after the commit, so a caller shows nothing whose entry is not in the log."""
    if not items:
        return []
    sealed = [(ctx.cipher.encrypt(item.input_value if isinstance(item.input_value, str) else canonical_json(item.input_value)),
               ctx.cipher.encrypt(canonical_json(item.output))) for item in items]
    entries = [NewEntry(actor=Actor(id=item.principal.user_id, username=item.principal.username, role=item.principal.role.value),
                        action="predict", bundle_id=item.bundle_id, input_sha256=item.input_sha256,
                        detail={"assistant": item.assistant, "task": item.task, "n_rows": item.n_rows, "via": item.via})
               for item in items]
    table = table_of(Prediction)
    stmt = insert(table).returning(table.c.id)  # bound parameters: compiled once, cached
    with ctx.db.session(write=True) as s:
        audit_ids = append_entries(s, entries)
        pred_ids: list[int] = [s.execute(stmt, {
            "at": utcnow(), "user_id": item.principal.user_id, "assistant": item.assistant, "bundle_id": item.bundle_id,
            "input_sha256": item.input_sha256, "n_rows": item.n_rows, "input_enc": input_enc, "output_enc": output_enc,
            "audit_id": audit_id,
        }).scalar_one() for item, (input_enc, output_enc), audit_id in zip(items, sealed, audit_ids, strict=True)]
    # the session has committed: every entry is in the log before anyone sees a result
    return [Recorded(audit_id=a, prediction_id=p) for a, p in zip(audit_ids, pred_ids, strict=True)]


def record_prediction(
    ctx: ServiceContext,
    principal: Principal,
    *,
    assistant: str,
    bundle_id: str,
    task: str,
    input_value: Any,
    input_sha256: str,
    output: Any,
    n_rows: int,
    via: str,
) -> Recorded:
    input_enc = ctx.cipher.encrypt(input_value if isinstance(input_value, str) else canonical_json(input_value))
    output_enc = ctx.cipher.encrypt(canonical_json(output))
    with ctx.db.session(write=True) as s:
        user = s.get(User, principal.user_id)
        entry = append_entry(s, user=user, action="predict", bundle_id=bundle_id, input_sha256=input_sha256,
                             detail={"assistant": assistant, "task": task, "n_rows": n_rows, "via": via})
        pred = Prediction(user_id=principal.user_id, assistant=assistant, bundle_id=bundle_id, input_sha256=input_sha256,
                          n_rows=n_rows, input_enc=input_enc, output_enc=output_enc, audit_id=entry.id)
        s.add(pred)
        s.flush()
        return Recorded(audit_id=entry.id, prediction_id=pred.id)
