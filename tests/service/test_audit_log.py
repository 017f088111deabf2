"""Every prediction served is in the audit log (who, when, which bundle, SHA-256 of the input,
no PHI); tampering with a stored row makes ``medassist audit verify`` fail naming the entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import sqlalchemy as sa

from medassist.store.audit import append_entry, sha256_json
from medassist.store.db import open_database
from medassist.store.models import AuditEntry, Prediction
from medassist.testing.server import csrf_of, example_row


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medassist", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def test_an_api_prediction_is_audited_with_user_bundle_and_input_hash(site, tiny_bundle):
    row = {**example_row(tiny_bundle), "id": "MRN-4471902"}
    r = site.api("clinician").post(f"/api/v1/diagnosis/{site.bundle_id}/predict", json={"row": row})
    assert r.status_code == 200
    body = r.json()
    with site.db.session() as s:
        entry = s.get(AuditEntry, body["audit_id"])
        pred = s.get(Prediction, body["prediction_id"])
        assert (entry.username, entry.role, entry.action) == ("clinician", "clinician", "predict")
        assert entry.user_id == site.user_ids["clinician"]
        assert entry.bundle_id == site.bundle_id == body["bundle"]["id"]
        assert entry.input_sha256 == sha256_json([row]) == pred.input_sha256
        assert pred.audit_id == entry.id and pred.n_rows == 1
        assert "MRN-4471902" not in entry.detail and "MRN-4471902" not in pred.input_enc
        assert json.loads(site.app.state.ctx.cipher.decrypt(pred.input_enc)) == [row]
        assert json.loads(site.app.state.ctx.cipher.decrypt(pred.output_enc))[0]["patient_ref"] == "MRN-4471902"
    # The auditor sees it (API and page); the input itself appears nowhere.
    entries = site.api("auditor").get("/api/v1/audit", params={"action": "predict"}).json()["entries"]
    assert entries[0]["id"] == body["audit_id"] and entries[0]["input_sha256"] == sha256_json([row])
    page = site.browser("auditor").get("/audit")
    assert site.bundle_id in page.text and "MRN-4471902" not in page.text


def test_a_web_form_prediction_is_audited_too(site):
    client = site.browser("clinician")
    page = client.get(f"/diagnosis/{site.bundle_id}?example=1")
    n = site.count(AuditEntry)
    r = client.post(f"/diagnosis/{site.bundle_id}/predict", data={"csrf_token": csrf_of(page.text), "c0": "63"}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and "audit log as entry #" in r.text
    assert site.count(AuditEntry) == n + 1
    with site.db.session() as s:
        last = s.scalars(sa.select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert last.action == "predict" and json.loads(last.detail)["via"] == "web"


def test_tampering_is_found_by_the_cli_and_the_auditor_page(fresh_site, tiny_bundle):
    site = fresh_site
    for _ in range(3):
        assert site.api("clinician").post(f"/api/v1/diagnosis/{site.bundle_id}/predict",
                                          json={"row": example_row(tiny_bundle)}).status_code == 200
    env = {"MEDASSIST_HOME": str(site.settings.home)}
    ok = _cli("audit", "verify", env=env)
    assert ok.returncode == 0 and "audit log intact" in ok.stdout
    with site.db.session() as s:
        target = s.scalars(sa.select(AuditEntry).where(AuditEntry.action == "predict").order_by(AuditEntry.id)).all()[1].id
    # Someone with the database file rewrites who asked (after removing the append-only trigger).
    with site.db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
        conn.execute(sa.text("UPDATE audit_log SET username = 'someone-else' WHERE id = :i"), {"i": target})
    bad = _cli("audit", "verify", env=env)
    assert bad.returncode == 1
    assert f"audit log broken at entry #{target}" in bad.stderr
    page = site.browser("auditor").get("/audit?verify=1")
    assert f"broken at entry #{target}" in page.text
    assert site.api("auditor").get("/api/v1/audit/verify").json()["broken_id"] == target


def test_cli_verify_works_against_postgresql_or_sqlite_urls(database_url):
    db = open_database(url=database_url)
    with db.session(write=True) as s:
        for i in range(3):
            append_entry(s, user=None, username="cli:test", action="test", input_sha256=sha256_json(i))
    env = {"MEDASSIST_DATABASE_URL": database_url}
    assert _cli("audit", "verify", env=env).returncode == 0
    with db.engine.begin() as conn:
        if db.dialect == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_change ON audit_log")
        first = conn.execute(sa.text("SELECT min(id) FROM audit_log")).scalar()
        conn.execute(sa.text("UPDATE audit_log SET detail = :d WHERE id = :i"), {"d": '{"x":1}', "i": first})
    r = _cli("audit", "verify", env=env)
    assert r.returncode == 1 and f"#{first}" in r.stderr
    db.dispose()
