"""The append-only audit log: a hash chain keyed with HMAC, anchored by a signed checkpoint.

Each entry stores the previous entry's MAC (``prev_hash``; the first entry links to
``GENESIS``) and its own ``entry_hash`` = HMAC-SHA256 of its canonical JSON (``prev_hash`` and
``key_id`` included) under the audit key ``key_id``. The keys live outside the database
(:mod:`medassist.store.audit_keys`), so someone who can write the database but not read the key
directory cannot re-attribute an entry and recompute the chain: the first changed entry fails.
Every ``audit_checkpoint_every`` entries (and when the service stops) a checkpoint signed with
the same key records the entry count and head MAC in a file; :func:`verify_chain` checks it,
so deleting the newest rows is found as well (all but those appended after the last checkpoint).

Entries written before the keying (``key_id`` NULL) are *legacy*: their hash is a plain SHA-256,
which :func:`verify_chain` recomputes and reports as legacy-unkeyed. A legacy entry after a keyed
one is refused (a downgrade attack), and the first keyed entry's MAC covers the legacy head.

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
import hmac
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func, insert, select, text
from sqlalchemy.orm import Session

from medassist.exceptions import ConfigError
from medassist.store.audit_keys import AuditFiles, AuditKeyring, read_checkpoint, write_checkpoint
from medassist.store.models import AuditEntry, User, table_of

log = logging.getLogger("medassist.audit")

GENESIS = "0" * 64
_PG_LOCK = 704_170_417  # pg_advisory_xact_lock key that serialises appends on PostgreSQL
_HASHED = ("at", "user_id", "username", "role", "action", "bundle_id", "input_sha256", "detail", "prev_hash")
#: ``session.info`` keys: the Database a session came from, and "write a checkpoint after commit".
DB_INFO, CHECKPOINT_DUE = "medassist_db", "medassist_audit_checkpoint_due"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> str:
    """One byte-exact JSON text per value (sorted keys, no spaces), for hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)


def sha256_json(value: Any) -> str:
    """The SHA-256 of ``value``'s canonical JSON: the input hash recorded for a prediction."""
    return sha256_bytes(canonical_json(value).encode("utf-8"))


def entry_hash(fields: dict[str, Any]) -> str:
    """The plain SHA-256 of a legacy (unkeyed) entry."""
    return sha256_json({k: fields[k] for k in _HASHED})


def entry_message(fields: dict[str, Any], key_id: str) -> bytes:
    """The bytes a keyed entry's MAC covers: its hashed fields and the id of the key."""
    return canonical_json({**{k: fields[k] for k in _HASHED}, "key_id": key_id}).encode("utf-8")


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_files(session: Session) -> AuditFiles:
    """The keyring and checkpoint of the database ``session`` came from (``db.session()``);
    for a session made some other way, those the environment's settings name."""
    db = session.info.get(DB_INFO)
    if db is not None:
        return db.audit_files
    from medassist.settings import Settings

    return AuditFiles.from_settings(Settings())


def _chain_head(session: Session) -> tuple[AuditFiles, Any, AuditKeyring]:
    """Take the append lock (an advisory lock on PostgreSQL; SQLite's BEGIN IMMEDIATE is the
    session's own) and read the chain's head: the audit files, the newest entry's
    ``(entry_hash, key_id)`` row (``None`` in an empty log) and the keyring to sign with."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
    files = audit_files(session)
    last = session.execute(select(AuditEntry.entry_hash, AuditEntry.key_id).order_by(AuditEntry.id.desc()).limit(1)).first()
    # The first keyed entry of a log may create the keyring; after that it must be there.
    ring = files.keyring(create=last is None or last.key_id is None)
    if last is not None and last.key_id is not None and last.key_id not in ring.keys:
        raise ConfigError(f"{files.key_path}: the newest audit entry was signed with key {last.key_id!r}, which this key file "
                          "does not hold (was it replaced instead of rotated?); restore the key file from backup.")
    return files, last, ring


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

    Raises:
        medassist.store.audit_keys.AuditKeyMissing: the log already has keyed entries but the audit key file is gone (a new
            key is never made silently: restore the file).
    """
    files, last, ring = _chain_head(session)
    fields = {
        "at": _now_text(),
        "user_id": user.id if user is not None else None,
        "username": (user.username if user is not None else username or "-")[:64],
        "role": user.role if user is not None else "-",
        "action": action,
        "bundle_id": bundle_id,
        "input_sha256": input_sha256,
        "detail": canonical_json(detail or {}),
        "prev_hash": last.entry_hash if last is not None else GENESIS,
    }
    key_id = ring.active_id
    entry = AuditEntry(**fields, key_id=key_id, entry_hash=ring.sign(entry_message(fields, key_id)))
    session.add(entry)
    # Appends are serialised (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL); should a
    # session without them race, the unique prev_hash makes the flush fail rather than fork the chain.
    session.flush()
    if files.checkpoint_due(entry.id):
        session.info[CHECKPOINT_DUE] = True  # written after the commit: never for an entry that was rolled back
    return entry


@dataclass(frozen=True)
class Actor:
    """Who an entry names when the caller holds their identity but not their ``User`` row (the
    service's signed-in principal): the same three values ``append_entry`` reads from a user."""

    id: int
    username: str
    role: str


@dataclass(frozen=True)
class NewEntry:
    actor: Actor | None
    action: str
    bundle_id: str | None = None
    input_sha256: str | None = None
    detail: dict[str, Any] | None = None


def append_entries(session: Session, entries: list[NewEntry]) -> list[int]:
    """Append several entries in ``session``'s transaction, in order, each linked to the one
    before; the ids of the new entries. The same chain, MACs and checkpoint rule as
    :func:`append_entry`, written with one look-up of the head and plain INSERTs (no ORM unit
    of work): the service's group commit of one micro-batch of predictions.
    """
    if not entries:
        return []
    files, last, ring = _chain_head(session)
    key_id = ring.active_id
    prev = last.entry_hash if last is not None else GENESIS
    table = table_of(AuditEntry)
    # one statement with bound parameters: compiled once and cached, not once per entry's values
    stmt = insert(table).returning(table.c.id)
    ids: list[int] = []
    for e in entries:
        fields = {
            "at": _now_text(),
            "user_id": e.actor.id if e.actor is not None else None,
            "username": (e.actor.username if e.actor is not None else "-")[:64],
            "role": e.actor.role if e.actor is not None else "-",
            "action": e.action,
            "bundle_id": e.bundle_id,
            "input_sha256": e.input_sha256,
            "detail": canonical_json(e.detail or {}),
            "prev_hash": prev,
        }
        mac = ring.sign(entry_message(fields, key_id))
        ids.append(session.execute(stmt, {**fields, "key_id": key_id, "entry_hash": mac}).scalar_one())
        prev = mac
    if files.checkpoint_due(ids[-1]):
        session.info[CHECKPOINT_DUE] = True  # written after the commit: never for an entry that was rolled back
    return ids


def checkpoint_now(db: Any) -> bool:
    """Sign and write a checkpoint of ``db``'s audit log as it is now (no-op when empty or not
    longer than the last checkpoint). Returns whether one was written."""
    files: AuditFiles = db.audit_files
    with db.session() as s:
        # One statement, so count and newest id agree even under READ COMMITTED.
        n, last_id, n_legacy = s.execute(select(
            func.count(AuditEntry.id), func.max(AuditEntry.id),
            func.coalesce(func.sum(case((AuditEntry.key_id.is_(None), 1), else_=0)), 0),
        )).one()
        if not n:
            return False
        head = s.scalar(select(AuditEntry.entry_hash).where(AuditEntry.id == last_id))
    return write_checkpoint(files.checkpoint_path, files.keyring(create=True), entries=int(n), last_id=int(last_id),
                            head=head, legacy_entries=int(n_legacy))


def checkpoint_after_commit(db: Any, session: Session) -> None:
    """The ``after_commit`` hook of :class:`~medassist.store.db.Database` sessions. A failure is
    logged, not raised: the entries are committed, and ``audit verify`` reports a stale checkpoint."""
    if not session.info.pop(CHECKPOINT_DUE, False):
        return
    try:
        checkpoint_now(db)
    except (OSError, ConfigError) as e:
        log.error("could not write the audit checkpoint %s: %s", db.audit_files.checkpoint_path, e)


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    n_entries: int
    head: str
    broken_id: int | None = None
    reason: str = ""
    #: How many leading entries are legacy (plain SHA-256, written before the log was keyed).
    n_legacy: int = 0
    legacy_ids: tuple[int, int] | None = None
    checkpoint: str = ""

    def describe(self) -> str:
        if not self.ok and self.broken_id is None:
            return f"audit log cannot be verified: {self.reason}"
        if not self.ok:
            return f"audit log broken at entry #{self.broken_id}: {self.reason} ({self.n_entries} entries read)"
        text_ = f"audit log intact: {self.n_entries} entries, head {self.head}"
        if self.n_legacy:
            a, b = self.legacy_ids or (0, 0)
            text_ += (f"; {self.n_legacy} legacy entries (#{a}-#{b}) predate the keyed log: they verify as plain SHA-256 "
                      "(legacy-unkeyed), and are protected only through the first keyed entry after them")
        text_ += f"; {self.checkpoint}" if self.checkpoint else "; no signed checkpoint yet"
        return text_


def iter_entries(session: Session, *, batch: int = 1000) -> Iterator[AuditEntry]:
    last_id = 0
    while True:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.id > last_id).order_by(AuditEntry.id).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


def verify_chain(session: Session) -> ChainCheck:
    """Walk the log in order; the first entry whose link, MAC or place does not check out fails it.

    Checks, in order: each entry links to the previous one; a keyed entry's MAC under its key
    (from the key file, never from the database); a legacy entry's SHA-256, and that no legacy
    entry follows a keyed one; the entry the signed checkpoint names is where and what it says;
    the log is not shorter than the checkpoint.
    """
    files = audit_files(session)
    ring = files.keyring() if files.has_keyring() else None
    unchecked_cp = ring is None and files.checkpoint_path.exists()  # reported below, after naming the first keyed entry
    try:
        cp = None if ring is None else read_checkpoint(files.checkpoint_path, ring)
    except ConfigError as e:
        return ChainCheck(False, 0, GENESIS, None, str(e))
    prev, n, n_legacy, first_legacy, last_legacy, keyed, last_id = GENESIS, 0, 0, None, None, False, None

    def fail(entry_id: int | None, reason: str) -> ChainCheck:
        return ChainCheck(False, n, prev, entry_id, reason, n_legacy)

    for entry in iter_entries(session):
        n += 1
        fields = {k: getattr(entry, k) for k in _HASHED}
        if entry.prev_hash != prev:
            return fail(entry.id, "its prev_hash does not match the previous entry's hash (an entry before it was removed, added or changed)")
        if entry.key_id is None:
            if keyed:
                return fail(entry.id, "it is unkeyed (plain SHA-256) but follows keyed entries: a rewritten entry made to look legacy")
            if cp is not None and n > cp.legacy_entries:
                return fail(entry.id, f"it is unkeyed (plain SHA-256) but the {cp.describe()} says only the first "
                                      f"{cp.legacy_entries} entries are legacy: a rewritten entry made to look legacy")
            if entry_hash(fields) != entry.entry_hash:
                return fail(entry.id, "its stored hash does not match its contents (the row was changed; legacy-unkeyed entry)")
            n_legacy += 1
            first_legacy = entry.id if first_legacy is None else first_legacy
            last_legacy = entry.id
        else:
            keyed = True
            if ring is None:
                return fail(entry.id, f"it is HMAC-keyed but the audit key file {files.key_path} is missing; "
                                      "restore it from backup to verify the log")
            expected = ring.mac(entry.key_id, entry_message(fields, entry.key_id))
            if expected is None:
                return fail(entry.id, f"it was signed with audit key {entry.key_id!r}, which {files.key_path} does not hold "
                                      "(a key was lost, or the file replaced instead of rotated)")
            if not hmac.compare_digest(expected, entry.entry_hash):
                return fail(entry.id, "its stored MAC does not match its contents (the row was changed)")
        if cp is not None and n == cp.entries and (entry.id != cp.last_id or entry.entry_hash != cp.head):
            return fail(entry.id, f"the {cp.describe()} names entry #{cp.last_id} with another MAC as entry {n}: "
                                  "the log was rewritten or rows were removed and others appended")
        prev, last_id = entry.entry_hash, entry.id
    if cp is not None and n < cp.entries:
        return fail(cp.last_id, f"the log ends after {n} entries (newest #{last_id}) but the {cp.describe()}: "
                                "the newest entries were removed")
    if unchecked_cp:
        return fail(None, f"the audit key file {files.key_path} is missing, so the signed checkpoint "
                          f"{files.checkpoint_path} cannot be checked; restore the key file from backup")
    if cp is None and keyed:
        return fail(last_id, f"the log has keyed entries but there is no signed checkpoint at {files.checkpoint_path} "
                             "(it was removed, or the process stopped before writing the first one); deleted newest "
                             "entries cannot be ruled out. If you know why, write one with 'medassist audit checkpoint'.")
    legacy_ids = (first_legacy, last_legacy) if first_legacy is not None and last_legacy is not None else None
    note = f"{cp.describe()} matches" if cp is not None else ""
    return ChainCheck(True, n, prev, n_legacy=n_legacy, legacy_ids=legacy_ids, checkpoint=note)


def decode_detail(entry: AuditEntry) -> dict[str, Any]:
    try:
        value = json.loads(entry.detail)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
