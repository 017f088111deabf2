"""The append-only audit log with a hash chain.

Each entry stores the previous entry's hash (``prev_hash``; the first entry links to
``GENESIS``) and its own ``entry_hash`` = SHA-256 of its canonical JSON. Changing, inserting or
deleting a stored row breaks the chain at that row, which :func:`verify_chain` reports. Deleting
the newest rows leaves a shorter valid chain: compare the count and head hash that ``medassist
audit verify`` prints with a copy kept elsewhere to detect that too.

Entries hold who, when, what, which model bundle and the SHA-256 of the input, never the input.

Example:
    >>> with db.session(write=True) as s:
    ...     append_entry(s, user=user, action="predict", bundle_id="9f3c...", input_sha256=sha256_json(rows))
    >>> with db.session() as s:
    ...     verify_chain(s).ok
    True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from medassist.store.models import AuditEntry, User

GENESIS = "0" * 64
_PG_LOCK = 704_170_417  # pg_advisory_xact_lock key that serialises appends on PostgreSQL
_HASHED = ("at", "user_id", "username", "role", "action", "bundle_id", "input_sha256", "detail", "prev_hash")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> str:
    """One byte-exact JSON text per value (sorted keys, no spaces), for hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)


def sha256_json(value: Any) -> str:
    """The SHA-256 of ``value``'s canonical JSON: the input hash recorded for a prediction."""
    return sha256_bytes(canonical_json(value).encode("utf-8"))


def entry_hash(fields: dict[str, Any]) -> str:
    return sha256_json({k: fields[k] for k in _HASHED})


def _now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def append_entry(
    session: Session,
    *,
    user: User | None,
    action: str,
    bundle_id: str | None = None,
    input_sha256: str | None = None,
    detail: dict[str, Any] | None = None,
    username: str | None = None,
) -> AuditEntry:
    """Append one entry in ``session``'s transaction (open it with ``db.session(write=True)``).

    ``detail`` must not hold PHI: counts, statuses, names of things, never input values.
    ``username`` names the actor when there is no user row (a failed sign-in, the CLI).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
    last = session.scalar(select(AuditEntry.entry_hash).order_by(AuditEntry.id.desc()).limit(1))
    fields = {
        "at": _now_text(),
        "user_id": user.id if user is not None else None,
        "username": (user.username if user is not None else username or "-")[:64],
        "role": user.role if user is not None else "-",
        "action": action,
        "bundle_id": bundle_id,
        "input_sha256": input_sha256,
        "detail": canonical_json(detail or {}),
        "prev_hash": last or GENESIS,
    }
    entry = AuditEntry(**fields, entry_hash=entry_hash(fields))
    session.add(entry)
    # Appends are serialised (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL); should a
    # session without them race, the unique prev_hash makes the flush fail rather than fork the chain.
    session.flush()
    return entry


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    n_entries: int
    head: str
    broken_id: int | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"audit log intact: {self.n_entries} entries, head {self.head}"
        return f"audit log broken at entry #{self.broken_id}: {self.reason} ({self.n_entries} entries read)"


def iter_entries(session: Session, *, batch: int = 1000) -> Iterator[AuditEntry]:
    last_id = 0
    while True:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.id > last_id).order_by(AuditEntry.id).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


def verify_chain(session: Session) -> ChainCheck:
    """Walk the log in order; the first entry whose link or content does not check out fails it."""
    prev, n = GENESIS, 0
    for entry in iter_entries(session):
        n += 1
        fields = {k: getattr(entry, k) for k in _HASHED}
        if entry.prev_hash != prev:
            return ChainCheck(False, n, prev, entry.id, "its prev_hash does not match the previous entry's hash (an entry before it was removed, added or changed)")
        if entry_hash(fields) != entry.entry_hash:
            return ChainCheck(False, n, prev, entry.id, "its stored hash does not match its contents (the row was changed)")
        prev = entry.entry_hash
    return ChainCheck(True, n, prev)


def decode_detail(entry: AuditEntry) -> dict[str, Any]:
    try:
        value = json.loads(entry.detail)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
