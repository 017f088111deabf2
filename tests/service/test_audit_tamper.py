"""An insider who can write the database but not read the key directory cannot rewrite the audit
log unnoticed: entries are HMAC-keyed, the head is anchored by a signed checkpoint file, keys
rotate without breaking old entries, and a missing key is a clear error (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import stat
import subprocess
import sys

import pytest
import sqlalchemy as sa

from medassist.settings import Settings
from medassist.store.audit import GENESIS, append_entry, entry_hash, sha256_json, verify_chain
from medassist.store.audit_keys import AuditKeyMissing
from medassist.store.db import open_database
from medassist.store.models import AuditEntry

_FIELDS = ("at", "user_id", "username", "role", "action", "bundle_id", "input_sha256", "detail", "prev_hash")


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    return Settings(home=tmp_path / "home", database_url=database_url, audit_checkpoint_every=5)


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MEDASSIST_HOME": str(settings.home),
            "MEDASSIST_DATABASE_URL": settings.database_url, "MEDASSIST_AUDIT_CHECKPOINT_EVERY": "5"}


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medassist", *args], capture_output=True, text=True, timeout=120, env=_env(settings))


def _append(db, n: int, *, who: str = "dr-a") -> None:
    for i in range(n):  # one transaction each, as the service does
        with db.session(write=True) as s:
            append_entry(s, user=None, username=who, action="predict", bundle_id="ab" * 8, input_sha256=sha256_json(i))


def _unlock(db) -> None:
    """What someone with direct database access can do first."""
    with db.engine.begin() as conn:
        if db.dialect == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_delete")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log")


def _verify(db):
    with db.session() as s:
        return verify_chain(s)


def _rows(conn) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM audit_log ORDER BY id"))]


def _rechain_plain(conn, rows: list[dict], start: int, *, downgrade: bool) -> None:
    """Recompute plain SHA-256 hashes from row ``start`` on, as a forger without the key would."""
    prev = rows[start - 1]["entry_hash"] if start else GENESIS
    for row in rows[start:]:
        row["prev_hash"] = prev
        row["entry_hash"] = entry_hash({k: row[k] for k in _FIELDS})
        conn.execute(sa.text("UPDATE audit_log SET username = :u, prev_hash = :p, entry_hash = :h"
                             + (", key_id = NULL" if downgrade else "") + " WHERE id = :i"),
                     {"u": row["username"], "p": row["prev_hash"], "h": row["entry_hash"], "i": row["id"]})
        prev = row["entry_hash"]


@pytest.mark.parametrize("downgrade", [False, True], ids=["keep-key-id", "made-to-look-legacy"])
def test_a_reattributed_entry_with_recomputed_sha256_chain_is_found(settings, downgrade):
    db = open_database(settings)
    _append(db, 8)
    assert _verify(db).ok
    _unlock(db)
    with db.engine.begin() as conn:
        rows = _rows(conn)
        rows[3]["username"] = "dr-b"  # re-attribute entry 4, then fix every later link
        _rechain_plain(conn, rows, 3, downgrade=downgrade)
    check = _verify(db)
    assert not check.ok and check.broken_id == rows[3]["id"]
    assert ("MAC does not match" in check.reason) if not downgrade else ("unkeyed" in check.reason)
    r = _cli(settings, "audit", "verify")
    assert r.returncode == 1 and f"audit log broken at entry #{rows[3]['id']}" in r.stderr
    db.dispose()


def test_every_entry_rewritten_as_legacy_is_found_through_the_checkpoint(settings):
    db = open_database(settings)
    _append(db, 6)
    _unlock(db)
    with db.engine.begin() as conn:
        rows = _rows(conn)
        _rechain_plain(conn, rows, 0, downgrade=True)
    check = _verify(db)
    assert not check.ok and check.broken_id == rows[0]["id"] and "legacy" in check.reason
    db.dispose()


def test_deleting_the_newest_entries_is_found_through_the_signed_checkpoint(settings):
    db = open_database(settings)
    _append(db, 12)  # checkpoints after entries 1, 6 and 11 (every 5)
    cp = json.loads(settings.audit_checkpoint_path.read_text())
    assert cp["entries"] == 11 and len(cp["head"]) == 64 and cp["mac"]
    assert stat.S_IMODE(settings.audit_checkpoint_path.stat().st_mode) == 0o600
    _unlock(db)
    with db.engine.begin() as conn:
        ids = [r["id"] for r in _rows(conn)]
        conn.execute(sa.text("DELETE FROM audit_log WHERE id >= :i"), {"i": ids[9]})
    check = _verify(db)
    assert not check.ok and check.broken_id == ids[10] and "newest entries were removed" in check.reason
    r = _cli(settings, "audit", "verify")
    assert r.returncode == 1 and f"#{ids[10]}" in r.stderr and "removed" in r.stderr
    # Appending after the truncation (SQLite reuses the ids) does not hide it either.
    _append(db, 3)
    check = _verify(db)
    assert not check.ok and "checkpoint" in check.reason
    db.dispose()


def test_an_altered_checkpoint_is_refused(settings):
    db = open_database(settings)
    _append(db, 3)
    doc = json.loads(settings.audit_checkpoint_path.read_text())
    settings.audit_checkpoint_path.write_text(json.dumps({**doc, "entries": doc["entries"] + 1}))
    check = _verify(db)
    assert not check.ok and "signature does not match" in check.reason
    r = _cli(settings, "audit", "verify")
    assert r.returncode == 1 and "audit_checkpoint.json" in r.stderr
    db.dispose()


def test_rotating_the_key_keeps_old_entries_verifiable(settings):
    db = open_database(settings)
    _append(db, 3)
    r = _cli(settings, "audit", "rotate-key")
    assert r.returncode == 0, r.stderr
    assert "rotated" in r.stdout and "1 older key(s) kept" in r.stdout
    _append(db, 3)
    with db.session() as s:
        key_ids = [e.key_id for e in s.scalars(sa.select(AuditEntry).order_by(AuditEntry.id))]
    assert len(set(key_ids)) == 2 and key_ids[0] == key_ids[2] != key_ids[-1]
    lines = [x for x in settings.audit_key_path.read_text().splitlines() if not x.startswith("#")]
    assert [x.split()[0] for x in lines] == [key_ids[-1], key_ids[0]]  # new key first, old one kept
    assert stat.S_IMODE(settings.audit_key_path.stat().st_mode) == 0o600
    r = _cli(settings, "audit", "verify")
    assert r.returncode == 0 and "audit log intact: 7 entries" in r.stdout, r.stderr
    db.dispose()


def test_a_missing_key_file_is_a_clear_error_never_a_silent_new_key(settings):
    db = open_database(settings)
    _append(db, 2)
    settings.audit_key_path.unlink()
    check = _verify(db)
    assert not check.ok and str(settings.audit_key_path) in check.reason and "missing" in check.reason
    r = _cli(settings, "audit", "verify")
    assert r.returncode == 1 and "audit key file" in r.stderr and "missing" in r.stderr
    with pytest.raises(AuditKeyMissing, match="Restore it from your backup"):
        _append(db, 1)
    assert not settings.audit_key_path.exists()
    db.dispose()


def test_legacy_sha256_entries_verify_as_legacy_and_are_anchored_by_the_first_keyed_one(settings):
    db = open_database(settings, upgrade=False)
    db.upgrade("0002")  # a database from before the keyed log
    with db.engine.begin() as conn:
        prev = GENESIS
        for i in range(3):
            f = {"at": f"2026-12-0{i + 1}T00:00:00.000000Z", "user_id": None, "username": "old", "role": "-", "action": "login",
                 "bundle_id": None, "input_sha256": None, "detail": "{}", "prev_hash": prev}
            h = entry_hash(f)
            conn.execute(sa.text("INSERT INTO audit_log (at, user_id, username, role, action, bundle_id, input_sha256, detail, "
                                 "prev_hash, entry_hash) VALUES (:at, :user_id, :username, :role, :action, :bundle_id, "
                                 ":input_sha256, :detail, :prev_hash, :h)"), {**f, "h": h})
            prev = h
    db.upgrade()
    check = _verify(db)
    assert check.ok and check.n_legacy == 3 and "legacy-unkeyed" in check.describe()
    _append(db, 2)
    check = _verify(db)
    assert check.ok and check.n_entries == 5 and check.n_legacy == 3 and "3 legacy entries" in check.describe()
    r = _cli(settings, "audit", "verify")
    assert r.returncode == 0 and "legacy" in r.stdout
    # Rewriting a legacy entry and its legacy successors breaks the link into the first keyed entry.
    _unlock(db)
    with db.engine.begin() as conn:
        rows = _rows(conn)
        rows[1]["username"] = "someone-else"
        _rechain_plain(conn, rows[:3], 1, downgrade=True)
    check = _verify(db)
    assert not check.ok and check.broken_id == rows[3]["id"] and "prev_hash" in check.reason
    db.dispose()


def test_the_service_signs_a_checkpoint_when_it_stops(tmp_path):
    from medassist.service import create_app

    settings = Settings(home=tmp_path / "home", audit_checkpoint_every=100)
    app = create_app(settings, plugins=[])
    db = app.state.ctx.db
    _append(db, 4)
    assert json.loads(settings.audit_checkpoint_path.read_text())["entries"] == 1  # the first keyed entry's

    async def run_lifespan() -> None:
        async with app.router.lifespan_context(app):
            pass

    # A fresh loop in its own thread: a browser test earlier in the session may leave one running here.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run_lifespan()).result()
    assert json.loads(settings.audit_checkpoint_path.read_text())["entries"] == 4
    assert _verify(db).ok
    db.dispose()
