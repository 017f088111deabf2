"""Recording a served prediction: one transaction writes the audit entry (who, when, which bundle,
SHA-256 of the input; no PHI) and the prediction row (input and output Fernet-encrypted). A
result is shown only after this commit, so every prediction served is in the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medassist.service.auth import Principal
from medassist.service.context import ServiceContext
from medassist.store.audit import append_entry, canonical_json
from medassist.store.models import Prediction, User


@dataclass(frozen=True)
class Recorded:
    audit_id: int
    prediction_id: int


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
        pred = Prediction(user_id=user.id, assistant=assistant, bundle_id=bundle_id, input_sha256=input_sha256,
                          n_rows=n_rows, input_enc=input_enc, output_enc=output_enc, audit_id=entry.id)
        s.add(pred)
        s.flush()
        return Recorded(audit_id=entry.id, prediction_id=pred.id)
