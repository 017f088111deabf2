"""The cases plugin against a real server: the veteran lung-cancer trial (137 cases) imported into
the site's case store with made-up names, MRNs and ICD-10 conditions, then searched, shown,
compared and coded through the REST API and the pages, as a clinician and as a researcher."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from medassist.data.case_records import ConditionRecord
from medassist.data.datasets.cases import load_cases
from medassist.privacy.crypto import IdentifierHasher
from medassist.service import create_app
from medassist.settings import Settings
from medassist.store.accounts import new_api_token
from medassist.store.audit import decode_detail, sha256_json, verify_chain
from medassist.store.case_models import CaseNote
from medassist.store.cases import CaseStore
from medassist.store.models import AuditEntry, Prediction, User
from medassist.testing.server import PASSWORD, add_user, csrf_of, running_server

DISCLAIMER = "Decision support, not a medical device."
C, R = "clinician", "researcher"
LUNG = ConditionRecord(code="C34.90", text="Malignant neoplasm of unspecified part of unspecified bronchus or lung")
COPD = ConditionRecord(code="J44.9", text="Chronic obstructive pulmonary disease, unspecified")


def _name(i: int) -> str:
    return f"Zephyrine Quaxley{i:03d}"


def _mrn(i: int) -> str:
    return f"MRN-T{i:05d}"


def veteran_with_identifiers():
    """The veteran cases with PHI-like fields made up for the test (every third one has COPD)."""
    out = []
    for i, case in enumerate(load_cases("veteran").cases):
        patient = replace(case.patient, name=_name(i), mrn=_mrn(i), birth_date=date(1930, 1, 1) + timedelta(days=37 * i),
                          index_date=datetime(2001, 3, 1, tzinfo=UTC) + timedelta(days=i))
        out.append(replace(case, patient=patient, conditions=(LUNG, COPD) if i % 3 == 0 else (LUNG,)))
    return out


@pytest.fixture(scope="module")
def cases(site):
    """Import once per module; returns {index in the table: case id}."""
    ctx = site.app.state.ctx
    store = CaseStore(db=ctx.db, cipher=ctx.cipher, hasher=IdentifierHasher.from_settings(site.settings))
    summary = store.import_records(veteran_with_identifiers(), source="veteran", source_kind="table")
    assert summary.n_added == 137
    return {i: store.resolve(_mrn(i)) for i in (0, 1, 5)}


def _audit(site, action: str) -> list[AuditEntry]:
    with site.db.session() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def _no_identifiers(text: str) -> None:
    for needle in ("Zephyrine", "Quaxley", "MRN-T", "2001-03", "1930-", "source_id", "birth_date", "index_date"):
        assert needle not in text, needle


def test_datasets_search_and_list(site, cases):
    api = site.api(R)
    r = api.get("/api/v1/cases")
    assert r.status_code == 200 and r.json()["datasets"] == [{"name": "veteran", "n_cases": 137}]
    r = api.get("/api/v1/cases/search", params={"dataset": "veteran", "limit": 5, "offset": 130})
    body = r.json()
    assert r.status_code == 200 and body["total"] == 137 and len(body["cases"]) == 5 and body["disclaimer"] == DISCLAIMER
    _no_identifiers(r.text)
    # a condition: code prefix or words of its text
    for q in ("J44", "j44.9", "obstructive pulmonary"):
        body = api.get("/api/v1/cases/search", params={"q": q, "limit": 100}).json()
        assert body["matched"] == "condition" and body["total"] == 46 and len(body["cases"]) == 46, q
        assert all(c["counts"]["conditions"] == 2 for c in body["cases"])
    assert api.get("/api/v1/cases/search", params={"q": "C34"}).json()["total"] == 137
    # LIKE wildcards and SQL are text, not syntax
    for q in ("%", "_", "' OR '1'='1", "J44%'; DROP TABLE patients;--"):
        r = api.get("/api/v1/cases/search", params={"q": q})
        assert r.status_code == 200 and r.json()["total"] == 0, q
    # a case id finds its case for anyone; an MRN only for a role that may see identifiers
    assert api.get("/api/v1/cases/search", params={"q": cases[5]}).json()["cases"][0]["case_id"] == cases[5]
    assert api.get("/api/v1/cases/search", params={"q": _mrn(5)}).json()["total"] == 0
    body = site.api(C).get("/api/v1/cases/search", params={"q": _mrn(5)}).json()
    assert body["matched"] == "identifier" and [c["case_id"] for c in body["cases"]] == [cases[5]]
    _no_identifiers(json.dumps(body["cases"]))
    # the query is audited by its hash only
    entry = _audit(site, "cases.search")[-1]
    assert entry.input_sha256 == sha256_json(_mrn(5)) and entry.username == C
    assert decode_detail(entry)["matched"] == "identifier" and "MRN-T" not in entry.detail
    assert site.api(R).get("/api/v1/cases/search", params={"dataset": "veterans"}).json()["detail"].startswith("Unknown data set 'veterans'")


def test_researcher_sees_no_identifiers(site, cases):
    api = site.api(R)
    r = api.get(f"/api/v1/cases/{cases[0]}")
    assert r.status_code == 200
    case = r.json()["case"]
    assert case["case_id"] == cases[0] and case["dataset"] == "veteran" and {c["code"] for c in case["conditions"]} == {"C34.90", "J44.9"}
    assert not {"name", "mrn", "source_id", "source_system", "birth_date", "index_date"} & set(case)
    _no_identifiers(r.text)
    r = api.get(f"/api/v1/cases/{cases[0]}", params={"identified": "true"})
    assert r.status_code == 403 and "may not" in r.json()["detail"]
    # an MRN or source id does not find a case for a researcher (it would tie a person to a record)
    for ref in (_mrn(0), "veteran:1", "1"):
        r = api.get(f"/api/v1/cases/{ref}")
        assert r.status_code == 404 and "case id" in r.json()["detail"], ref
    page = site.browser(R).get(f"/cases/{cases[0]}")
    assert page.status_code == 200 and DISCLAIMER in page.text and "C34.90" in page.text
    _no_identifiers(page.text)
    assert "Show identifiers" not in page.text
    page = site.browser(R).get(f"/cases/{cases[0]}", params={"identified": "true"})
    assert page.status_code == 403
    _no_identifiers(page.text)


def test_clinician_identified_view_works_and_is_audited(site, cases):
    api = site.api(C)
    before = len(_audit(site, "cases.view-identified"))
    r = api.get(f"/api/v1/cases/{_mrn(5)}", params={"identified": "true"})
    assert r.status_code == 200, r.text
    case = r.json()["case"]
    assert case["case_id"] == cases[5] and case["name"] == _name(5) and case["mrn"] == _mrn(5) and case["source_id"] == "6"
    assert case["index_date"].startswith("2001-03-06")
    assert api.get("/api/v1/cases/veteran:6", params={"identified": "true"}).json()["case"]["case_id"] == cases[5]
    entries = _audit(site, "cases.view-identified")
    assert len(entries) == before + 2
    entry = entries[-2]
    assert entry.username == C and decode_detail(entry) == {"case_id": cases[5], "dataset": "veteran", "via": "api"}
    with site.db.session() as s:
        assert verify_chain(s).ok
    # the default view is de-identified (and audited as such)
    r = api.get(f"/api/v1/cases/{cases[5]}")
    assert r.status_code == 200 and "name" not in r.json()["case"]
    assert decode_detail(_audit(site, "cases.view")[-1])["case_id"] == cases[5]
    # the page: identifiers only after asking for them
    browser = site.browser(C)
    page = browser.get(f"/cases/{cases[5]}")
    assert page.status_code == 200 and "Show identifiers" in page.text and _name(5) not in page.text
    page = browser.get(f"/cases/{cases[5]}", params={"identified": "true"})
    assert page.status_code == 200 and _name(5) in page.text and _mrn(5) in page.text
    assert decode_detail(_audit(site, "cases.view-identified")[-1])["via"] == "page"
    # unknown and ambiguous identifiers
    r = api.get("/api/v1/cases/no-such-person")
    assert r.status_code == 404 and "no-such-person" in r.json()["detail"]


def test_one_patients_risk_curve_against_the_cohort(site, cases):
    api = site.api(R)
    r = api.get(f"/api/v1/cases/{cases[1]}/risk")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["case_id"] == cases[1] and body["dataset"] == "veteran" and body["disclaimer"] == DISCLAIMER
    s = body["curve"]["survival"]
    assert s[0] == pytest.approx(1.0, abs=0.05) and all(a >= b - 1e-9 for a, b in zip(s, s[1:]))  # a survival curve falls
    assert 0 < body["restricted_mean_days"] <= body["horizon_days"]
    assert len(body["survival_at"]) == 3 and all(0 <= x["cohort"] <= 1 for x in body["survival_at"])
    assert body["top_factors"] and {"column", "value", "effect_days", "direction"} <= set(body["top_factors"][0])
    assert "plot" not in body
    _no_identifiers(r.text)
    assert decode_detail(_audit(site, "cases.risk")[-1]) == {"case_id": cases[1], "dataset": "veteran", "via": "api"}
    part = site.browser(C).get(f"/cases/{cases[1]}/risk", headers={"HX-Request": "true"})
    assert part.status_code == 200 and 'id="risk-plot" src="data:image/png;base64,' in part.text and DISCLAIMER in part.text
    assert api.get("/api/v1/cases/no-such-person/risk").status_code == 404

def test_similar_cases_with_reasons(site, cases):
    api = site.api(R)
    r = api.get(f"/api/v1/cases/{cases[1]}/similar", params={"k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [n["case_id"] for n in body["neighbours"]]
    assert len(ids) == 5 == len(set(ids)) and cases[1] not in ids and body["dataset"] == "veteran"
    assert "fitted in-process" in body["model"] and body["disclaimer"] == DISCLAIMER
    sims = [n["similarity"] for n in body["neighbours"]]
    assert sims == sorted(sims, reverse=True)
    for n in body["neighbours"]:
        assert n["reasons"]["closest_values"] and n["reasons"]["shared_conditions"] == ["C34.90"]
        assert n["outcome"]["event"] in (0, 1)
    _no_identifiers(r.text)
    aware = api.get(f"/api/v1/cases/{cases[1]}/similar", params={"k": 3, "outcome_aware": "true"}).json()
    assert len(aware["neighbours"]) == 3 and aware["embedding"] != body["embedding"]
    entry = _audit(site, "cases.similar")[-1]
    assert decode_detail(entry) == {"case_id": cases[1], "dataset": "veteran", "k": 3, "outcome_aware": True, "n_results": 3, "via": "api"}
    # the page part htmx loads, and the whole page without JavaScript
    part = site.browser(C).get(f"/cases/{cases[1]}/similar", params={"k": 4}, headers={"HX-Request": "true"})
    assert part.status_code == 200 and part.text.count('<td><a href="/cases/c') == 4 and "close values" in part.text
    assert DISCLAIMER in site.browser(C).get(f"/cases/{cases[1]}/similar").text
    assert api.get(f"/api/v1/cases/{cases[1]}/similar", params={"k": 0}).status_code == 422


def test_cohort_survival_and_plot(site, cases):
    api = site.api(R)
    r = api.get("/api/v1/cases/cohort", params={"dataset": "veteran", "by": "Celltype"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [g["label"] for g in body["groups"]] == ["adeno", "large", "smallcell", "squamous"]
    assert sum(g["n"] for g in body["groups"]) == body["n"] == 137 and body["events"] == 128
    assert body["logrank"]["df"] == 3 and body["logrank"]["p_value"] < 0.001
    assert len(body["hazard_ratios"]) == 3 and all(h["ci_low"] < h["hr"] < h["ci_high"] for h in body["hazard_ratios"])
    assert all(g["median"] is not None and g["median_ci"][0] <= g["median"] for g in body["groups"])
    png = api.get(body["plot_url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    assert decode_detail(_audit(site, "cases.cohort-plot")[-1])["dataset"] == "veteran"
    sub = api.get("/api/v1/cases/cohort", params={"dataset": "veteran", "where": 'Karnofsky_score >= 60 and Treatment == "test"',
                                                   "by": "Prior_therapy"}).json()
    assert 0 < sub["n"] < 137 and len(sub["groups"]) == 2
    assert api.get("/api/v1/cases/cohort", params={"where": 'conditions contains "J44"'}).json()["n"] == 46
    # a bad filter or column: 422 with the analysis' message, naming the columns
    for params, expected in [({"where": "Karnofsky > 50"}, "Unknown column 'Karnofsky'"), ({"where": "age >> 3"}, "position"),
                             ({"by": "celltype"}, "did you mean 'Celltype'"), ({"where": "age > 200"}, "selects no cases"),
                             ({"where": "__import__('os').system('id')"}, "Filter expression")]:
        r = api.get("/api/v1/cases/cohort", params={"dataset": "veteran", **params})
        assert r.status_code == 422 and expected in r.json()["detail"], (params, r.text)
    assert "Karnofsky_score" in api.get("/api/v1/cases/cohort", params={"where": "nope == 1"}).json()["detail"]
    # the page: the plot inline, the log-rank line and the hazard ratio table
    page = site.browser(C).get("/cases/cohort", params={"dataset": "veteran", "by": "Celltype", "where": ""})
    assert page.status_code == 200 and 'id="km-plot" src="data:image/png;base64,' in page.text
    assert "Log-rank test" in page.text and 'id="hazard-ratios"' in page.text and DISCLAIMER in page.text
    bad = site.browser(C).get("/cases/cohort", params={"dataset": "veteran", "where": "<script>alert(1)</script>"})
    assert bad.status_code == 422 and "<script>alert(1)" not in bad.text and "Filter expression" in bad.text


def test_note_coding_suggests_and_excludes_and_stores_nothing(site, cases):
    note = ("Patient: Zephyrine Quaxley, MRN 99887766, seen 03/04/2021, phone 555-123-4567. Assessment: type 2 diabetes "
            "mellitus with diabetic chronic kidney disease. Chest x-ray: no evidence of pneumonia.")
    predictions, notes = site.count(Prediction), site.count(CaseNote)
    r = site.api(R).post("/api/v1/cases/code", json={"text": note, "top": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    status = {s["code"]: s["status"] for s in body["suggestions"]}
    assert status["E11.22"] == "suggested" and status["J18.9"] == "excluded"
    for secret in ("Zephyrine", "Quaxley", "99887766", "03/04/2021", "555-123-4567"):
        assert secret not in body["deidentified_text"] and secret not in json.dumps(body["suggestions"])
    assert body["stored"] is False and DISCLAIMER == body["disclaimer"]
    assert site.count(Prediction) == predictions and site.count(CaseNote) == notes
    entry = _audit(site, "cases.code")[-1]
    assert entry.input_sha256 == sha256_json(note) and "Quaxley" not in entry.detail
    # the page form (CSRF) renders the same answer
    browser = site.browser(C)
    csrf = csrf_of(browser.get("/cases/code").text)
    page = browser.post("/cases/code", data={"csrf_token": csrf, "text": note}, headers={"HX-Request": "true"})
    assert page.status_code == 200 and 'data-code="E11.22"' in page.text and 'class="excluded" data-code="J18.9"' in page.text
    assert "Quaxley" not in page.text and DISCLAIMER in page.text
    assert browser.post("/cases/code", data={"text": note}).status_code == 403  # no CSRF token


def test_pages_search_and_case(site, cases):
    browser = site.browser(R)
    page = browser.get("/cases")
    assert page.status_code == 200 and "veteran (137 cases)" in page.text and 'id="cases"' in page.text
    part = browser.get("/cases", params={"dataset": "veteran", "q": "J44", "limit": 10}, headers={"HX-Request": "true"})
    assert part.status_code == 200 and "46 cases matching the condition" in part.text and part.text.count('<td><a href="/cases/c') == 10
    assert "<html" not in part.text
    nav = browser.get("/").text
    assert 'href="/cases"' in nav
    # an auditor has no Cases page
    assert site.browser("auditor").get("/cases").status_code == 403


def test_search_view_and_cohort_on_sqlite_and_postgresql(database_url, tmp_path):
    """The queries the plugin adds (condition search with escaped LIKE, store revision) on both databases."""
    settings = Settings(home=tmp_path / "home", database_url=database_url)
    app = create_app(settings)
    ctx = app.state.ctx
    uid = add_user(ctx.db, "clara", C, PASSWORD)
    with ctx.db.session(write=True) as s:
        token = new_api_token(s, user=s.get(User, uid), name="test", days=1)[1]
    store = CaseStore(db=ctx.db, cipher=ctx.cipher, hasher=IdentifierHasher.from_settings(settings))
    store.import_records(veteran_with_identifiers()[:40], source="veteran", source_kind="table")
    try:
        with running_server(app) as base, httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as api:
            assert api.get("/api/v1/cases/search", params={"q": "obstructive PULMONARY"}).json()["total"] == 14
            assert api.get("/api/v1/cases/search", params={"q": "J44_9"}).json()["total"] == 0
            hit = api.get("/api/v1/cases/search", params={"q": _mrn(3)}).json()["cases"][0]["case_id"]
            assert api.get(f"/api/v1/cases/{hit}", params={"identified": "true"}).json()["case"]["name"] == _name(3)
            body = api.get("/api/v1/cases/cohort", params={"by": "Prior_therapy"}).json()
            assert body["n"] == 40 and len(body["groups"]) == 2
    finally:
        ctx.db.dispose()


def test_demo_imports_cases_once_and_the_service_uses_its_survival_bundle(tmp_path):
    """``medassist demo --assistant cases`` twice: the second run adds nothing; the server then
    answers similar-case queries with the demo's whas500 bundle instead of fitting one."""
    import os
    import subprocess
    import sys

    from medassist.service.cases import cases_state

    env = {**os.environ, "MEDASSIST_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    runs = [subprocess.run([sys.executable, "-m", "medassist", "demo", "--assistant", "cases", "--epochs", "2"], env=env,
                           capture_output=True, text=True, timeout=300) for _ in range(2)]
    assert all(p.returncode == 0 for p in runs), runs[-1].stderr[-2000:]
    assert "cdisc_pilot: 254 cases added" in runs[0].stderr and "cdisc_pilot_fhir: 20 cases added" in runs[0].stderr
    for name, n in (("cdisc_pilot", 254), ("cdisc_pilot_fhir", 20), ("whas500", 500)):
        assert f"{name}: {n} cases already stored; nothing added" in runs[1].stderr
    app = create_app(Settings(home=tmp_path / "home"))
    try:
        state = cases_state(app.state.ctx)
        assert state.store.datasets() == {"cdisc_pilot": 254, "cdisc_pilot_fhir": 20, "whas500": 500}
        fitted = state.fitted("whas500", wait=120)
        assert fitted.bundle is not None and fitted.bundle.path.name == "cases-survival-whas500"
        # the FHIR copy of a subject and the SDTM original share a USUBJID: the data set disambiguates
        first = state.store.list_cases(dataset="cdisc_pilot_fhir", limit=1, deidentified=False)[0]["source_id"]
        assert state.store.resolve(f"cdisc_pilot:{first}") != state.store.resolve(f"cdisc_pilot_fhir:{first}")
        assert len(fitted.analysis.similar(state.store.resolve("whas500:1"), k=3)["neighbours"]) == 3
    finally:
        app.state.ctx.db.dispose()


def test_similar_cases_without_outcomes_use_the_feature_profile(site, cases):
    """Issue 14: an ordinary EHR import (no outcomes) still answers similar-case queries."""
    from medassist.data.synthetic import synthetic_cases

    ctx = site.app.state.ctx
    store = CaseStore(db=ctx.db, cipher=ctx.cipher, hasher=IdentifierHasher.from_settings(site.settings))
    store.import_records(synthetic_cases(n_patients=25, seed=7, outcomes="none", notes=False), source="ehr", source_kind="fhir")
    query = store.resolve("ehr:syn-0")
    api = site.api(R)
    r = api.get(f"/api/v1/cases/{query}/similar", params={"k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dataset"] == "ehr" and len(body["neighbours"]) == 4 and body["model"].startswith("no model")
    assert all(n["outcome"] is None and n["reasons"]["closest_values"] for n in body["neighbours"])
    aware = api.get(f"/api/v1/cases/{query}/similar", params={"k": 4, "outcome_aware": "true"})
    assert aware.status_code == 422 and "need a survival model" in aware.text
