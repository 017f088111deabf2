"""The store on SQLite and on PostgreSQL: migrations, the hash-chained audit log (append-only in
the database too), concurrent appends, PHI encrypted at rest."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from medassist.privacy.crypto import FieldCipher
from medassist.store.accounts import create_user
from medassist.store.audit import GENESIS, append_entry, sha256_json, verify_chain
from medassist.store.db import open_database
from medassist.store.models import AuditEntry, Base, Prediction


def _drop_append_only_triggers(db) -> None:
    """What someone with direct database access can do; the hash chain still catches them."""
    with db.engine.begin() as conn:
        if db.dialect == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_change ON audit_log")


def _fill(db, n: int = 5) -> int:
    with db.session(write=True) as s:
        user, _ = create_user(s, username="sam", role="clinician", password="correct horse battery")
        for i in range(n):
            append_entry(s, user=user, action="predict", bundle_id="ab" * 8, input_sha256=sha256_json({"i": i}), detail={"n_rows": 1})
        return user.id


def test_migrations_build_exactly_the_models_schema(database_url):
    db = open_database(url=database_url)
    assert db.revision() == db.head() == "0003"
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    db.upgrade()  # idempotent
    db.dispose()


def test_the_chain_verifies_and_names_the_first_changed_entry(database_url):
    db = open_database(url=database_url)
    _fill(db)
    with db.session() as s:
        check = verify_chain(s)
        first = s.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).first()
    assert check.ok and check.n_entries == 5 and first.prev_hash == GENESIS
    _drop_append_only_triggers(db)
    with db.engine.begin() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM audit_log ORDER BY id"))]
        conn.execute(sa.text("UPDATE audit_log SET bundle_id = 'ffffffffffffffff' WHERE id = :i"), {"i": ids[2]})
    with db.session() as s:
        check = verify_chain(s)
    assert not check.ok and check.broken_id == ids[2] and "changed" in check.reason
    assert f"#{ids[2]}" in check.describe()
    db.dispose()


def test_a_deleted_entry_breaks_the_chain_at_the_next_one(database_url):
    db = open_database(url=database_url)
    _fill(db)
    _drop_append_only_triggers(db)
    with db.engine.begin() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM audit_log ORDER BY id"))]
        conn.execute(sa.text("DELETE FROM audit_log WHERE id = :i"), {"i": ids[1]})
    with db.session() as s:
        check = verify_chain(s)
    assert not check.ok and check.broken_id == ids[2] and "prev_hash" in check.reason
    db.dispose()


def test_the_database_refuses_updates_and_deletes_of_audit_entries(database_url):
    db = open_database(url=database_url)
    _fill(db, n=2)
    for statement in ("UPDATE audit_log SET action = 'nothing'", "DELETE FROM audit_log"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(sa.text(statement))
    with db.session() as s:
        assert verify_chain(s).n_entries == 2
    db.dispose()


def test_concurrent_appends_keep_a_single_chain(database_url):
    db = open_database(url=database_url)
    user_id = _fill(db, n=1)
    errors = []

    def worker(k: int) -> None:
        try:
            for i in range(8):
                with db.session(write=True) as s:
                    append_entry(s, user=None, username=f"w{k}", action="test", input_sha256=sha256_json([k, i]))
        except Exception as e:  # collected and reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.session() as s:
        check = verify_chain(s)
        n_prev = s.scalar(sa.select(sa.func.count(sa.distinct(AuditEntry.prev_hash))))
    assert check.ok and check.n_entries == 41 and n_prev == 41
    assert user_id
    db.dispose()


def test_prediction_inputs_are_encrypted_at_rest(database_url, tmp_path):
    from medassist.settings import Settings

    db = open_database(url=database_url)
    cipher = FieldCipher.from_settings(Settings(home=tmp_path / "h"))
    row = {"id": "MRN-99812345", "name": "Jane Roe", "age": 61}
    with db.session(write=True) as s:
        user, _ = create_user(s, username="enc", role="clinician", password="correct horse battery")
        entry = append_entry(s, user=user, action="predict", bundle_id="ab" * 8, input_sha256=sha256_json([row]))
        s.add(Prediction(user_id=user.id, assistant="diagnosis", bundle_id="ab" * 8, input_sha256=sha256_json([row]), n_rows=1,
                         input_enc=cipher.encrypt(json.dumps([row])),
                         output_enc=cipher.encrypt("[]"), audit_id=entry.id))
    with db.engine.connect() as conn:
        raw = " ".join(str(v) for r in conn.execute(sa.text("SELECT * FROM predictions")) for v in r)
        audit_raw = " ".join(str(v) for r in conn.execute(sa.text("SELECT * FROM audit_log")) for v in r)
    assert "MRN-99812345" not in raw and "Jane Roe" not in raw
    assert "MRN-99812345" not in audit_raw and "Jane Roe" not in audit_raw
    with db.session() as s:
        stored = s.scalars(sa.select(Prediction)).one()
        assert "Jane Roe" in cipher.decrypt(stored.input_enc)
    db.dispose()
