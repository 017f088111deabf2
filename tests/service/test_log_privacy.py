"""No identifier reaches a log line: a real ``medassist serve`` process (debug logging on), cases
imported from a table, a FHIR bundle, the CDISC pilot SDTM and a CSV with known MRNs and source
ids, every case route (API and pages, similar, risk, search, cohort, 404s) called with every form
of identifier, then every log stream of the process searched for each identifier."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

import httpx

from medassist.data.case_records import CaseRecord, OutcomeRecord, PatientRecord
from medassist.data.datasets.cases import load_cases
from medassist.data.io.fhir import read_fhir_bundle, write_fhir_bundle
from medassist.privacy.crypto import FieldCipher, IdentifierHasher
from medassist.settings import Settings
from medassist.store.accounts import new_api_token
from medassist.store.cases import CaseStore
from medassist.store.db import open_database
from medassist.store.models import User
from medassist.testing.server import PASSWORD, add_user, sign_in


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _import(home, tmp_path) -> dict[str, list[str]]:
    """Import four sources; returns {what: [identifier, ...]} of the references to call routes with."""
    from medassist.data.io.case_tables import read_case_csv
    from medassist.data.io.sdtm import read_sdtm

    settings = Settings(home=home)
    settings.ensure_dirs()
    db = open_database(settings)
    store = CaseStore(db=db, cipher=FieldCipher.from_settings(settings), hasher=IdentifierHasher.from_settings(settings))
    refs: dict[str, list[str]] = {}
    # a table with made-up MRNs and names (enough cases for the similar-case and risk models)
    veteran = []
    for i, case in enumerate(load_cases("veteran").cases):
        patient = replace(case.patient, name=f"Zebulon Quagmireson{i:03d}", mrn=f"QZMRN{i:05d}",
                          birth_date=date(1931, 2, 3) + timedelta(days=41 * i),
                          index_date=datetime(2002, 4, 5, tzinfo=UTC) + timedelta(days=i))
        veteran.append(replace(case, patient=patient))
    store.import_records(veteran, source="veteran", source_kind="table")
    refs["veteran"] = ["QZMRN00003", "QZMRN00004", "veteran:5", "Zebulon Quagmireson004"]
    # a FHIR bundle: Patient.id and MRN
    bundle = write_fhir_bundle([
        CaseRecord(patient=PatientRecord(source_system="fhir", source_id=f"fhirpt-xq{i}", mrn=f"FHMRN-88{i}41",
                                         name=f"Ottoline Brackenbury{i}", birth_date=date(1950, 3, 1 + i), sex="female"),
                   outcomes=(OutcomeRecord(name="death", time_days=90.0 + 7 * i, event=i % 2),))
        for i in range(8)
    ], tmp_path / "ward.json")
    store.import_records(read_fhir_bundle(bundle).cases, source="ward", source_kind="fhir")
    refs["fhir"] = ["fhirpt-xq2", "FHMRN-88341", "ward:fhirpt-xq4"]
    # the CDISC pilot (real USUBJIDs)
    sdtm = read_sdtm().cases[:12]
    store.import_records(sdtm, source="cdiscpilot", source_kind="sdtm")
    refs["sdtm"] = [sdtm[1].patient.source_id, f"cdiscpilot:{sdtm[2].patient.source_id}"]
    # a CSV with an ID column
    csv = tmp_path / "clinic.csv"
    csv.write_text("pid,days,died\n" + "".join(f"CSVQ-{7000 + i},{30 + i * 11},{i % 2}\n" for i in range(10)))
    store.import_records(read_case_csv(csv, id_column="pid", time_column="days", event_column="died").cases,
                         source="clinic", source_kind="csv")
    refs["csv"] = ["CSVQ-7003", "clinic:CSVQ-7004"]
    refs["unknown"] = ["QZMRN99999", "nobody:XQ-404404"]

    add_user(db, "clin", "clinician", PASSWORD)
    add_user(db, "res", "researcher", PASSWORD)
    tokens = {}
    with db.session(write=True) as s:
        for name in ("clin", "res"):
            user = s.query(User).filter_by(username=name).one()
            tokens[name] = new_api_token(s, user=user, name="t", days=1)[1]
    db.dispose()
    return refs, tokens


def _needles(refs: dict[str, list[str]]) -> set[str]:
    """What must not be in any log: every reference, its parts, and its URL-encoded forms."""
    out = {"Zebulon", "Quagmireson", "Ottoline", "Brackenbury", "QZMRN", "FHMRN", "fhirpt", "CSVQ", "XQ-404404"}
    for group in refs.values():
        for ref in group:
            out |= {ref, quote(ref, safe=""), ref.partition(":")[2]}
    return {n for n in out if len(n) >= 6}  # "5" of veteran:5 would match anything


def test_no_identifier_reaches_any_log_line(tmp_path):
    home = tmp_path / "home"
    refs, tokens = _import(home, tmp_path)
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDASSIST_HOME": str(home), "MEDASSIST_DEBUG": "true"}
    out_path, err_path = tmp_path / "serve.out", tmp_path / "serve.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "medassist", "serve", "--port", str(port)],
                                env=env, stdout=out, stderr=err, text=True)
    base = f"http://127.0.0.1:{port}"
    statuses: dict[str, set[int]] = {}
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("medassist serve did not come up:\n" + err_path.read_text()[-2000:])
        clients = {
            "clin-api": httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens['clin']}"}, timeout=120),
            "res-api": httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens['res']}"}, timeout=120),
            "clin-page": sign_in(base, "clin"),
            "anon": httpx.Client(base_url=base, timeout=30),
        }
        clients["clin-page"].timeout = httpx.Timeout(120)
        all_refs = [r for group in refs.values() for r in group]
        for ref in all_refs:
            p = quote(ref, safe=":")
            paths = [f"/api/v1/cases/{p}", f"/api/v1/cases/{p}?identified=true", f"/api/v1/cases/{p}/similar?k=3",
                     f"/api/v1/cases/{p}/risk", f"/api/v1/cases/{p}/nothing/here", f"/api/v1/{p}", f"/{p}",
                     f"/cases/{p}", f"/cases/{p}?identified=true", f"/cases/{p}/similar", f"/cases/{p}/risk",
                     f"/cases/{p}/x/y", f"/api/v1/cases/search?q={quote(ref)}", f"/cases?q={quote(ref)}",
                     f"/api/v1/cases/cohort?dataset=veteran&where={quote(ref)}", f"/cases/cohort?where={quote(ref)}"]
            for who, client in clients.items():
                for path in paths:
                    if who.endswith("api") != path.startswith("/api/") and who != "anon":
                        continue
                    r = client.get(path)
                    statuses.setdefault(path.split("?")[0].replace(p, "{ref}"), set()).add(r.status_code)
            # an HTTP method the route does not have, and a POST to a case path
            clients["clin-api"].delete(f"/api/v1/cases/{p}")
            clients["clin-api"].post(f"/api/v1/cases/{p}/risk", json={"mrn": ref})
        r = clients["clin-api"].get("/api/v1/cases/QZMRN00004")
        assert r.status_code == 200, r.text  # the routes were really reached with identifiers
        r = clients["clin-api"].get("/api/v1/cases/cohort", params={"dataset": "veteran", "by": "trt"})
        clients["clin-api"].post("/api/v1/cases/code", json={"text": "Pt Zebulon Quagmireson004, MRN QZMRN00004, seen today."})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    assert 200 in statuses["/api/v1/cases/{ref}"] and 404 in statuses["/api/v1/cases/{ref}"]
    assert 200 in statuses["/cases/{ref}"] and statuses["/api/v1/cases/{ref}/similar"] & {200, 202}
    streams = {"stdout": out_path.read_text(), "stderr": err_path.read_text()}
    for f in home.rglob("*.log"):
        streams[str(f)] = f.read_text(errors="replace")
    # the access log is on and names route templates (so the search below is not vacuous)
    assert '"GET /api/v1/cases/{case_ref}/similar" 200' in streams["stderr"], streams["stderr"][-3000:]
    assert '"GET /cases/{case_ref}/risk"' in streams["stderr"] and "/cases/[unmatched]" in streams["stderr"]
    assert '"GET /api/v1/[unmatched]" 404' in streams["stderr"]
    print(streams["stderr"][-6000:])  # shown with -s or on failure
    for needle in sorted(_needles(refs)):
        for name, text in streams.items():
            assert needle.lower() not in text.lower(), f"{needle!r} in {name}: ...{text[max(0, text.lower().find(needle.lower()) - 300):][:600]}"
