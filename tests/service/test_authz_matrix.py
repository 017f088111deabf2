"""The authorisation matrix: every route × every role (and anonymous) → allowed or denied,
from the one table below. A route missing from the table, or an entry without a route, fails.

Allowed: the request does what it asks (the status listed for the route). Denied: 401 for the
API without a token, a redirect to sign-in for a page without a session, 403 for a wrong role."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from starlette.routing import Mount

from medassist.data.datasets.cases import load_cases
from medassist.privacy.crypto import IdentifierHasher
from medassist.service.auth import Public, Require, guards_of, route_table
from medassist.store.accounts import new_api_token
from medassist.store.cases import CaseStore
from medassist.store.models import User
from medassist.testing.assistants import example_library, example_patient, example_png, example_survival_row
from medassist.testing.server import PASSWORD, add_user, example_csv, example_row, login_token_of, sign_in

A, C, R, U = "admin", "clinician", "researcher", "auditor"
EVERYONE = frozenset({A, C, R, U})
PUBLIC = "public"
SITE_ASSISTANTS = True  # the site serves the imaging, treatment and screening bundles too

#: (method, path) → who may use it. THE table: add a row for every new route.
EXPECTED: dict[tuple[str, str], frozenset[str] | str] = {
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/static"): PUBLIC,
    ("POST", "/logout"): EVERYONE,
    ("GET", "/"): EVERYONE,
    ("GET", "/account"): EVERYONE,
    ("POST", "/account/password"): EVERYONE,
    ("POST", "/account/tokens"): EVERYONE,
    ("POST", "/account/tokens/{token_id}/revoke"): EVERYONE,
    ("GET", "/api/docs"): EVERYONE,
    ("GET", "/models"): frozenset({A, C, R}),
    ("GET", "/models/{bundle_id}"): frozenset({A, C, R}),
    ("GET", "/models/{bundle_id}/report"): frozenset({A, C, R}),
    ("GET", "/audit"): frozenset({U}),
    ("GET", "/admin/users"): frozenset({A}),
    ("POST", "/admin/users"): frozenset({A}),
    ("POST", "/admin/users/{user_id}/{action}"): frozenset({A}),
    ("GET", "/api/v1/me"): EVERYONE,
    ("GET", "/api/v1/openapi.json"): EVERYONE,
    ("GET", "/api/v1/models"): frozenset({A, C, R}),
    ("GET", "/api/v1/models/{bundle_id}"): frozenset({A, C, R}),
    ("GET", "/api/v1/models/{bundle_id}/report"): frozenset({A, C, R}),
    ("GET", "/api/v1/audit"): frozenset({U}),
    ("GET", "/api/v1/audit/verify"): frozenset({U}),
    ("GET", "/api/v1/diagnosis"): frozenset({C}),
    ("GET", "/api/v1/diagnosis/{bundle_id}/schema"): frozenset({C}),
    ("POST", "/api/v1/diagnosis/{bundle_id}/predict"): frozenset({C}),
    ("POST", "/api/v1/diagnosis/{bundle_id}/predict-file"): frozenset({C}),
    ("GET", "/diagnosis"): frozenset({C}),
    ("GET", "/diagnosis/{bundle_id}"): frozenset({C}),
    ("POST", "/diagnosis/{bundle_id}/predict"): frozenset({C}),
    ("POST", "/diagnosis/{bundle_id}/predict-file"): frozenset({C}),
    ("GET", "/api/v1/imaging"): frozenset({C}),
    ("POST", "/api/v1/imaging/{bundle_id}/predict"): frozenset({C}),
    ("GET", "/imaging"): frozenset({C}),
    ("GET", "/imaging/{bundle_id}"): frozenset({C}),
    ("POST", "/imaging/{bundle_id}/predict"): frozenset({C}),
    ("GET", "/api/v1/treatment"): frozenset({C}),
    ("GET", "/api/v1/treatment/{bundle_id}/schema"): frozenset({C}),
    ("POST", "/api/v1/treatment/{bundle_id}/advise"): frozenset({C}),
    ("GET", "/treatment"): frozenset({C}),
    ("GET", "/treatment/{bundle_id}"): frozenset({C}),
    ("POST", "/treatment/{bundle_id}/advise"): frozenset({C}),
    ("GET", "/api/v1/prognosis"): frozenset({C}),
    ("GET", "/api/v1/prognosis/{bundle_id}/schema"): frozenset({C}),
    ("POST", "/api/v1/prognosis/{bundle_id}/predict"): frozenset({C}),
    ("POST", "/api/v1/prognosis/{bundle_id}/predict-file"): frozenset({C}),
    ("GET", "/prognosis"): frozenset({C}),
    ("GET", "/prognosis/{bundle_id}"): frozenset({C}),
    ("POST", "/prognosis/{bundle_id}/predict"): frozenset({C}),
    ("POST", "/prognosis/{bundle_id}/predict-file"): frozenset({C}),
    ("GET", "/prognosis/predictions/{prediction_id}.csv"): frozenset({C}),
    ("GET", "/api/v1/screening"): frozenset({C}),
    ("POST", "/api/v1/screening/{bundle_id}/predict"): frozenset({C}),
    ("POST", "/api/v1/screening/{bundle_id}/jobs"): frozenset({C}),
    ("GET", "/api/v1/screening/jobs/{job_id}"): frozenset({C}),
    ("GET", "/api/v1/screening/jobs/{job_id}/results"): frozenset({C}),
    ("GET", "/screening"): frozenset({C}),
    ("GET", "/screening/{bundle_id}"): frozenset({C}),
    ("POST", "/screening/{bundle_id}/predict"): frozenset({C}),
    ("POST", "/screening/{bundle_id}/jobs"): frozenset({C}),
    ("GET", "/screening/jobs/{job_id}"): frozenset({C}),
    ("GET", "/screening/jobs/{job_id}/progress"): frozenset({C}),
    ("GET", "/screening/jobs/{job_id}/results.csv"): frozenset({C}),
    ("GET", "/api/v1/screening/jobs/{job_id}/results.csv"): frozenset({C}),
    ("GET", "/screening/predictions/{prediction_id}.csv"): frozenset({C}),
    ("GET", "/diagnosis/predictions/{prediction_id}.csv"): frozenset({C}),
    ("GET", "/api/v1/research"): frozenset({R}),
    ("POST", "/api/v1/research/train"): frozenset({R}),
    ("GET", "/api/v1/research/jobs/{job_id}"): frozenset({R}),
    ("POST", "/api/v1/research/evaluate"): frozenset({R}),
    ("GET", "/api/v1/research/evaluations/{evaluation_id}/report"): frozenset({A, C, R}),
    ("GET", "/research"): frozenset({R}),
    ("POST", "/research/train"): frozenset({R}),
    ("GET", "/research/jobs/{job_id}"): frozenset({R}),
    ("GET", "/research/jobs/{job_id}/progress"): frozenset({R}),
    ("POST", "/research/evaluate"): frozenset({R}),
    ("GET", "/research/evaluations/{evaluation_id}"): frozenset({R}),
    ("GET", "/research/evaluations/{evaluation_id}/report"): frozenset({A, C, R}),
    ("GET", "/api/v1/cases"): frozenset({C, R}),
    ("GET", "/api/v1/cases/search"): frozenset({C, R}),
    ("GET", "/api/v1/cases/conditions"): frozenset({C, R}),
    ("GET", "/api/v1/cases/cohort"): frozenset({C, R}),
    ("GET", "/api/v1/cases/cohort/km.png"): frozenset({C, R}),
    ("POST", "/api/v1/cases/code"): frozenset({C, R}),
    ("GET", "/api/v1/cases/{case_ref}"): frozenset({C, R}),
    ("GET", "/api/v1/cases/{case_ref}/similar"): frozenset({C, R}),
    ("GET", "/api/v1/cases/{case_ref}/risk"): frozenset({C, R}),
    ("GET", "/cases"): frozenset({C, R}),
    ("GET", "/cases/cohort"): frozenset({C, R}),
    ("GET", "/cases/cohort/fields"): frozenset({C, R}),
    ("GET", "/cases/conditions"): frozenset({C, R}),
    ("GET", "/cases/code"): frozenset({C, R}),
    ("POST", "/cases/code"): frozenset({C, R}),
    ("GET", "/cases/{case_ref}"): frozenset({C, R}),
    ("GET", "/cases/{case_ref}/similar"): frozenset({C, R}),
    ("GET", "/cases/{case_ref}/risk"): frozenset({C, R}),
}

#: The bundle a route's {bundle_id} stands for, by the route's plugin.
PLUGIN_TASKS = {"imaging": "diagnosis-image", "treatment": "treatment", "screening": "screening", "prognosis": "survival"}

#: Status of an allowed request when it is not 200.
ALLOWED_STATUS = {
    ("POST", "/login"): 303,
    ("POST", "/logout"): 303,
    ("POST", "/account/password"): 422,  # the matrix sends a wrong current password on purpose
    ("POST", "/api/v1/screening/{bundle_id}/jobs"): 202,
    ("POST", "/screening/{bundle_id}/jobs"): 303,
    ("POST", "/api/v1/research/train"): 202,
    ("POST", "/research/train"): 303,
    ("POST", "/research/evaluate"): 303,
}


def app_routes(app) -> dict[tuple[str, str], object]:
    return {(method, path): route for method, path, route in route_table(app)}


def test_every_route_is_in_the_table_and_declares_one_guard(site):
    routes = app_routes(site.app)
    assert set(routes) - set(EXPECTED) == set(), "routes without an entry in the authorisation table"
    assert set(EXPECTED) - set(routes) == set(), "table entries without a route"
    for key, route in routes.items():
        if isinstance(getattr(route, "original_route", route), Mount):
            continue
        guards = guards_of(route)
        assert len(guards) == 1, f"{key} declares {len(guards)} guards"
        assert isinstance(guards[0], Public) == (EXPECTED[key] == PUBLIC), key
        assert isinstance(guards[0], (Public, Require))


@pytest.fixture(scope="module")
def matrix_ctx(site, tiny_bundle, assistant_bundles):
    victim = add_user(site.db, f"victim-{uuid.uuid4().hex[:6]}", "clinician", PASSWORD)
    add_user(site.db, "matrix-login", "researcher", PASSWORD)
    # A finished screening job of the clinician's: its routes are then asked for by every role.
    r = site.api(C).post(f"/api/v1/screening/{site.bundle_ids['screening']}/jobs", files={"file": ("lib.smi", example_library(), "text/plain")})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    for _ in range(600):
        if site.api(C).get(f"/api/v1/screening/jobs/{job_id}").json()["status"] == "done":
            break
        time.sleep(0.1)
    # A finished training job and an evaluation of the researcher's (one epoch: access is the point).
    r = site.api(R).post("/api/v1/research/train", json={"dataset": "wdbc", "epochs": 1, "members": 1})
    assert r.status_code == 202, r.text
    research_job = r.json()["id"]
    for _ in range(600):
        if site.api(R).get(f"/api/v1/research/jobs/{research_job}").json()["status"] == "done":
            break
        time.sleep(0.1)
    r = site.api(R).post("/api/v1/research/evaluate", json={"bundle_id": site.bundle_id, "n_boot": 100})
    assert r.status_code == 200, r.text
    # The veteran trial in the case store: the cases routes are asked about one of its cases.
    ctx = site.app.state.ctx
    store = CaseStore(db=ctx.db, cipher=ctx.cipher, hasher=IdentifierHasher.from_settings(site.settings))
    store.import_records(load_cases("veteran").cases, source="veteran", source_kind="table")
    # The clinician's own predictions, for the CSV downloads (someone else's id is 404).
    predictions = {
        "diagnosis": site.api(C).post(f"/api/v1/diagnosis/{site.bundle_id}/predict", json={"row": example_row(tiny_bundle)}).json()["prediction_id"],
        "screening": site.api(C).post(f"/api/v1/screening/{site.bundle_ids['screening']}/predict", json={"smiles": ["CCO"]}).json()["prediction_id"],
        "prognosis": site.api(C).post(f"/api/v1/prognosis/{site.bundle_ids['survival']}/predict",
                                      json={"row": example_survival_row(assistant_bundles["prognosis"]), "explain": False}).json()["prediction_id"],
    }
    return {"predictions": predictions, "case": store.list_cases(limit=1)[0]["case_id"], "victim": victim, "row": example_row(tiny_bundle), "csv": example_csv(tiny_bundle), "job": job_id,
            "research_job": research_job, "evaluation": r.json()["id"],
            "patient": example_patient(assistant_bundles["treatment"]), "png": example_png(), "library": example_library(),
            "survival_row": example_survival_row(assistant_bundles["prognosis"])}


def _own_token_id(site, role: str) -> int:
    with site.db.session(write=True) as s:
        return new_api_token(s, user=s.get(User, site.user_ids[role]), name="to-revoke", days=1)[0].id


def build_request(site, ctx, key, role):
    """(client, request kwargs) for one cell of the matrix; valid input, so only access decides."""
    method, path = key
    plugin = path.removeprefix("/api/v1").split("/")[1]
    bundle_id = site.bundle_ids[PLUGIN_TASKS[plugin]] if plugin in PLUGIN_TASKS else site.bundle_id
    job = ctx["research_job"] if plugin == "research" else ctx["job"]
    url = (path.replace("{bundle_id}", bundle_id).replace("{job_id}", job).replace("{evaluation_id}", ctx["evaluation"]).replace("{user_id}", str(ctx["victim"])).replace("{action}", "unlock").replace("{case_ref}", ctx["case"]))
    if "{prediction_id}" in url:
        url = url.replace("{prediction_id}", str(ctx["predictions"][plugin]))
    if "{token_id}" in url:
        url = url.replace("{token_id}", str(_own_token_id(site, role) if role else 1))
    if key == ("GET", "/static"):
        url = "/static/app.css"
    api = path.startswith("/api/v1/")
    if api:
        client = site.api(role)
    elif key in {("GET", "/login"), ("POST", "/login"), ("POST", "/logout")}:
        client = sign_in(site.base_url, role) if (role and key == ("POST", "/logout")) else httpx.Client(base_url=site.base_url, timeout=30)
    else:
        client = site.browser(role)
    kwargs: dict = {}
    csrf = {"csrf_token": site.csrf(role)} if (role and not api and method == "POST") else {}
    if key == ("POST", "/login"):
        token = login_token_of(client.get("/login").text)
        kwargs["data"] = {"username": "matrix-login", "password": PASSWORD, "login_token": token, "next": "/"}
    elif key == ("POST", "/logout"):
        kwargs["data"] = {"csrf_token": client.get("/account").text.split('name="csrf_token" value="')[1].split('"')[0]} if role else {}
    elif key == ("POST", "/account/password"):
        kwargs["data"] = {**csrf, "current": "not my password!", "new": "x" * 20, "confirm": "x" * 20}
    elif key == ("POST", "/account/tokens"):
        kwargs["data"] = {**csrf, "name": "matrix"}
    elif key == ("POST", "/admin/users"):
        kwargs["data"] = {**csrf, "username": f"new-{uuid.uuid4().hex[:8]}", "role": "researcher"}
    elif plugin == "imaging" and method == "POST":
        kwargs["files"] = {"file": ("scan.png", ctx["png"], "image/png")}
        kwargs["data"] = {**csrf, "explain": "on"}
    elif plugin == "treatment" and method == "POST":
        if api:
            kwargs["json"] = {"patient": ctx["patient"], "explain": False}
        else:
            kwargs["data"] = {**csrf, **{f"c{i}": str(v) for i, v in enumerate(ctx["patient"].values())}}
    elif plugin == "prognosis" and method == "POST":
        row = ctx["survival_row"]
        if path.endswith("/predict-file"):
            kwargs["files"] = {"file": ("patients.csv", (",".join(row) + "\n" + ",".join(map(str, row.values())) + "\n").encode(), "text/csv")}
            kwargs["data"] = csrf
        elif api:
            kwargs["json"] = {"row": row, "explain": False}
        else:
            kwargs["data"] = {**csrf, **{f"c{i}": str(v) for i, v in enumerate(row.values())}}
    elif plugin == "screening" and path.endswith("/jobs"):
        kwargs["files"] = {"file": ("library.smi", ctx["library"], "text/plain")}
        kwargs["data"] = csrf
    elif plugin == "screening" and path.endswith("/predict"):
        if api:
            kwargs["json"] = {"smiles": ["CCO", "c1ccccc1O"]}
        else:
            kwargs["data"] = {**csrf, "molecules": "CCO ethanol\nc1ccccc1O phenol"}
    elif plugin == "research" and path.endswith("/train"):
        train = {"dataset": "wdbc", "epochs": 1, "members": 1}
        kwargs.update({"json": train} if api else {"data": {**csrf, **{k: str(v) for k, v in train.items()}}})
    elif plugin == "research" and path.endswith("/evaluate"):
        evaluate = {"bundle_id": site.bundle_id, "n_boot": 100}
        kwargs.update({"json": evaluate} if api else {"data": {**csrf, **{k: str(v) for k, v in evaluate.items()}}})
    elif plugin == "cases" and method == "POST":
        note = "Type 2 diabetes mellitus. No evidence of pneumonia."
        kwargs.update({"json": {"text": note}} if api else {"data": {**csrf, "text": note}})
    elif path.endswith("/predict") and api:
        kwargs["json"] = {"row": ctx["row"]}
    elif path.endswith("/predict-file"):
        kwargs["files"] = {"file": ("patients.csv", ctx["csv"], "text/csv")}
        kwargs["data"] = csrf
    elif path.endswith("/predict"):
        kwargs["data"] = {**csrf, "explain": "on"}
    elif method == "POST":
        kwargs["data"] = csrf
    return client, method, url, kwargs


def _cells():
    return [(key, role) for key in EXPECTED for role in (None, A, C, R, U)]


@pytest.mark.parametrize(("key", "role"), _cells(), ids=lambda v: v if isinstance(v, str) or v is None else " ".join(v))
def test_matrix(site, matrix_ctx, key, role):
    expected = EXPECTED[key]
    allowed = expected == PUBLIC or (role is not None and role in expected)
    client, method, url, kwargs = build_request(site, matrix_ctx, key, role)
    r = client.request(method, url, **kwargs)
    api = key[1].startswith("/api/v1/")
    if allowed:
        assert r.status_code == ALLOWED_STATUS.get(key, 200), (r.status_code, r.text[:300])
        if r.status_code == 303:
            assert not r.headers["location"].startswith("/login?next="), r.headers["location"]
    elif role is None and api:
        assert r.status_code == 401 and r.headers.get("www-authenticate") == "Bearer", r.status_code
    elif role is None:
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), (r.status_code, r.headers.get("location"))
    else:
        assert r.status_code == 403, (r.status_code, r.text[:300])
        assert "may not" in (r.json()["detail"] if api else r.text)


def test_researchers_get_model_answers_on_deidentified_cases_by_case_id_only(site, matrix_ctx):
    """permissions.py: a researcher may ask for a stored case's risk curve and similar cases
    (cases.deidentified), by case id only, and the answers name cases by case id only."""
    import json
    import re

    case = matrix_ctx["case"]
    source_id = site.api(C).get(f"/api/v1/cases/{case}", params={"identified": "true"}).json()["case"]["source_id"]
    researcher = site.api(R)
    answers = {}
    for route in ("risk", "similar"):
        r = researcher.get(f"/api/v1/cases/{case}/{route}")
        assert r.status_code == 200, r.text[:300]
        answers[route] = r.json()
        text = json.dumps(answers[route])
        assert '"source_id"' not in text and '"mrn"' not in text
        # an identifier is not a way in for a researcher, though it is for a clinician
        assert researcher.get(f"/api/v1/cases/veteran:{source_id}/{route}").status_code == 404
        assert site.api(C).get(f"/api/v1/cases/veteran:{source_id}/{route}").status_code == 200
    assert answers["risk"]["case_id"] == answers["similar"]["case_id"] == case
    assert answers["similar"]["neighbours"] and all(re.fullmatch(r"c[0-9a-f]{16}", n["case_id"]) for n in answers["similar"]["neighbours"])
    entries = site.api(U).get("/api/v1/audit", params={"limit": 50}).json()["entries"]
    for action in ("cases.risk", "cases.similar"):
        mine = [e for e in entries if e["action"] == action and e["role"] == R]
        assert mine and mine[0]["username"] == R and mine[0]["detail"]["case_id"] == case
