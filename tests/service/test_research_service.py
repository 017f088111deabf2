"""The research plugin over real HTTP: a training job on a bundled data set runs the pipeline in
the background, reports progress, lands its bundle in the model list and is audited; an
evaluation returns metrics with intervals (its own held-out split reproduces the model card) and a
report served to model readers; bad data set names are refused naming the valid ones; only
researchers may train or evaluate."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from medassist.store.audit import decode_detail, verify_chain
from medassist.store.models import AuditEntry
from medassist.testing.server import csrf_of

VALID = "wdbc, pima, biopsy, heart_disease"


def _wait(api, job_id: str) -> dict:
    for _ in range(1800):
        p = api.get(f"/api/v1/research/jobs/{job_id}").json()
        if p["status"] in ("done", "failed"):
            return p
        time.sleep(0.1)
    raise AssertionError(f"training job {job_id} did not finish")


def _entries(site, action: str) -> list[AuditEntry]:
    with site.db.session() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


@pytest.fixture(scope="module")
def trained(site) -> dict:
    """One tiny training job (wdbc, small, 2 epochs, one member) submitted through the API."""
    api = site.api("researcher")
    r = api.post("/api/v1/research/train", json={"dataset": "wdbc", "size": "small", "epochs": 2, "members": 1, "seed": 3})
    assert r.status_code == 202, r.text
    submitted = r.json()
    assert submitted["status"] in ("queued", "running") and submitted["progress_url"] == f"/api/v1/research/jobs/{submitted['id']}"
    return _wait(api, submitted["id"])


def test_a_training_job_finishes_and_its_bundle_is_listed(site, trained):
    assert trained["status"] == "done", trained["message"]
    assert trained["epoch"] == trained["max_epochs"] == 2 and trained["fraction"] == 1.0
    bundle_id = trained["bundle_id"]
    assert trained["request"] == {"dataset": "wdbc", "size": "small", "model": "tabm", "seed": 3, "epochs": 2, "members": 1,
                                  "dp_epsilon": None}
    assert 0.5 < trained["metrics"]["auc"]["value"] <= 1 and trained["metrics"]["auc"]["ci_low"] <= trained["metrics"]["auc"]["value"]
    # In the service's own bundle directory, and in the model list at once (no restart).
    folder = next(p for p in site.settings.bundles_dir.iterdir() if trained["id"] in p.name)
    assert (folder / "bundle.json").is_file() and (folder / "report.html").is_file()
    card = json.loads((folder / "model_card.json").read_text())
    assert card["data"]["source"] == "wdbc" and card["model"]["size"] == "small" and card["training"]["seed"] == 3
    models = site.api("researcher").get("/api/v1/models").json()["models"]
    assert bundle_id in {m["id"] for m in models}
    assert site.browser("clinician").get(f"/models/{bundle_id}/report").status_code == 200
    # Audited: submission (data set hash) and completion (the new bundle id), by the researcher.
    submit = [e for e in _entries(site, "research.train.submit") if decode_detail(e)["job"] == trained["id"]]
    done = [e for e in _entries(site, "research.train.done") if decode_detail(e)["job"] == trained["id"]]
    assert len(submit) == len(done) == 1
    assert submit[0].username == done[0].username == "researcher" and done[0].bundle_id == bundle_id
    assert decode_detail(submit[0])["dataset"] == "wdbc" and submit[0].input_sha256 == trained["data_sha256"]
    with site.db.session() as s:
        assert verify_chain(s).ok
    # The job page shows the outcome; another researcher does not see the job.
    page = site.browser("researcher").get(f"/research/jobs/{trained['id']}")
    assert page.status_code == 200 and f"/models/{bundle_id}" in page.text and "Done" in page.text
    listing = site.browser("researcher").get("/research")
    assert trained["id"] in listing.text and "cannot be uploaded" in listing.text


def test_evaluate_on_the_held_out_split_reproduces_the_model_card(site, trained):
    bundle_id = trained["bundle_id"]
    before = len(_entries(site, "research.evaluate"))
    r = site.api("researcher").post("/api/v1/research/evaluate", json={"bundle_id": bundle_id, "n_boot": 200})
    assert r.status_code == 200, r.text
    ev = r.json()
    assert ev["rows"] == "held-out" and ev["dataset"] == "wdbc" and ev["bundle"]["id"] == bundle_id
    assert ev["metrics"]["auc"]["value"] == pytest.approx(trained["metrics"]["auc"]["value"], abs=1e-9)
    assert ev["metrics"]["auc"]["ci_low"] <= ev["metrics"]["auc"]["value"] <= ev["metrics"]["auc"]["ci_high"]
    assert ev["n_rows"] == ev["evaluation"]["n"] < 569 and "report" not in ev["evaluation"] and "bundle" not in ev["evaluation"]
    entries = _entries(site, "research.evaluate")
    assert len(entries) == before + 1 and entries[-1].bundle_id == bundle_id and entries[-1].username == "researcher"
    assert decode_detail(entries[-1])["dataset"] == "wdbc"
    # The report: any role with models.read, on the page and through the API.
    report = site.browser("clinician").get(ev["report_url"])
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "sandbox" in report.headers["content-security-policy"] and "<html" in report.text.lower()
    assert site.api("admin").get(ev["api_report_url"]).status_code == 200
    assert site.browser("auditor").get(ev["report_url"]).status_code == 403
    # All rows of its own data set are allowed, with a warning that they include training rows.
    r = site.api("researcher").post("/api/v1/research/evaluate", json={"bundle_id": bundle_id, "rows": "all", "n_boot": 100})
    assert r.status_code == 200 and r.json()["n_rows"] == 569 and "optimistic" in r.json()["notes"][0]


def test_evaluate_from_the_page_on_another_data_set(site, tiny_bundle):
    # The session's tiny heart-disease bundle, on its own held-out split, through the form.
    browser = site.browser("researcher")
    r = browser.post("/research/evaluate", data={"csrf_token": site.csrf("researcher"), "bundle_id": site.bundle_id, "n_boot": "100"})
    assert r.status_code == 303 and r.headers["location"].startswith("/research/evaluations/e"), r.text[:300]
    page = browser.get(r.headers["location"])
    assert page.status_code == 200 and 'id="metrics"' in page.text and "held-out" in page.text and "Decision support" in page.text
    # A data set whose columns the model does not have is refused with the reason, nothing kept.
    before = len(_entries(site, "research.evaluate"))
    r = site.api("researcher").post("/api/v1/research/evaluate", json={"bundle_id": site.bundle_id, "dataset": "pima"})
    assert r.status_code == 422 and "pima" in r.json()["detail"], r.text
    r = site.api("researcher").post("/api/v1/research/evaluate", json={"bundle_id": site.bundle_id, "dataset": "pima", "rows": "held-out"})
    assert r.status_code == 422 and "held-out" in r.json()["detail"]
    assert len(_entries(site, "research.evaluate")) == before


@pytest.mark.parametrize("name", ["mnist", "actg175", "../../etc/passwd", "WDBC.csv"])
def test_a_bad_data_set_name_is_refused_listing_the_valid_ones(site, name):
    csrf = site.csrf("researcher")  # signs in first (audited) when no test before did
    before = site.count(AuditEntry)
    r = site.api("researcher").post("/api/v1/research/train", json={"dataset": name, "epochs": 1})
    assert r.status_code == 422, r.text
    assert VALID in r.json()["detail"] and "Unknown data set" in r.json()["detail"]
    r = site.browser("researcher").post("/research/train", data={"csrf_token": csrf, "dataset": name})
    assert r.status_code == 422 and VALID in r.text
    assert site.count(AuditEntry) == before


@pytest.mark.parametrize(("role", "status"), [("clinician", 403), ("auditor", 403), ("admin", 403), (None, 401)])
def test_only_researchers_may_train_or_evaluate(site, role, status):
    api = site.api(role)
    assert api.post("/api/v1/research/train", json={"dataset": "wdbc", "epochs": 1}).status_code == status
    assert api.post("/api/v1/research/evaluate", json={"bundle_id": site.bundle_id}).status_code == status
    page = site.browser(role).get("/research")
    if role is None:
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
    else:
        assert page.status_code == 403 and 'href="/research"' not in site.browser(role).get("/").text


def test_dp_training_spends_budget_in_the_services_ledger(site):
    api = site.api("researcher")
    r = api.post("/api/v1/research/train", json={"dataset": "biopsy", "epochs": 2, "dp_epsilon": 3.0, "members": 1})
    assert r.status_code == 202, r.text
    p = _wait(api, r.json()["id"])
    assert p["status"] == "done", p["message"]
    assert 0 < p["privacy"]["epsilon"] <= 3.0 + 1e-6 and p["privacy"]["ledger_budget"] == site.settings.privacy_budget_epsilon
    ledger = json.loads(site.settings.privacy_ledger_path.read_text())
    assert "biopsy" in json.dumps(ledger)
    # An ensemble would spend the budget once per member: refused before anything runs.
    r = api.post("/api/v1/research/train", json={"dataset": "biopsy", "epochs": 2, "dp_epsilon": 1.0, "members": 3})
    assert r.status_code == 422 and "privacy budget" in r.json()["detail"]
    # More than the data set's remaining budget: refused at submission.
    r = api.post("/api/v1/research/train", json={"dataset": "biopsy", "epochs": 2, "dp_epsilon": 99.0})
    assert r.status_code == 422 and "budget" in r.json()["detail"].lower(), r.text


def test_the_train_form_starts_a_job_and_its_page_polls_progress(site):
    browser = site.browser("researcher")
    r = browser.post("/research/train", data={"csrf_token": site.csrf("researcher"), "dataset": "pima", "size": "small",
                                              "model": "mlp", "seed": "1", "epochs": "1", "members": "1", "dp_epsilon": ""})
    assert r.status_code == 303 and r.headers["location"].startswith("/research/jobs/t"), r.text[:300]
    job_id = r.headers["location"].rsplit("/", 1)[1]
    page = browser.get(r.headers["location"])
    assert page.status_code == 200 and "pima" in page.text
    p = _wait(site.api("researcher"), job_id)
    assert p["status"] == "done", p["message"]
    fragment = browser.get(f"/research/jobs/{job_id}/progress", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and p["bundle_id"] in fragment.text and "hx-get" not in fragment.text
    # Bad form values name the field.
    r = browser.post("/research/train", data={"csrf_token": csrf_of(browser.get("/account").text), "dataset": "pima", "epochs": "many"})
    assert r.status_code == 422 and "epochs" in r.text
