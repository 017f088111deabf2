"""The diagnosis plugin over real HTTP: the numbers are the assistant's own, every result names
its bundle and says it is decision support; plus the plugin registry."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest
from fastapi import APIRouter, Depends

from medassist.assistants.diagnosis import DiagnosisAssistant
from medassist.exceptions import ConfigError
from medassist.service.auth import Principal, Require, Surface
from medassist.service.permissions import Permission
from medassist.service.plugins import PLUGIN_MODULES, TEMPLATES, AssistantPlugin, load_plugins
from medassist.testing.server import csrf_of, example_csv, example_row, running_server
from medassist.types import SCORE_TOLERANCE

DISCLAIMER = "Decision support, not a medical device."


def test_api_predictions_are_the_assistants_own_calibrated_numbers(site, tiny_bundle):
    rows = [example_row(tiny_bundle), {**example_row(tiny_bundle), "age": 77, "sex": "Female", "chol": None}]
    r = site.api("clinician").post(f"/api/v1/diagnosis/{site.bundle_id}/predict", json={"rows": rows, "top_k": 4})
    assert r.status_code == 200
    body = r.json()
    assert body["disclaimer"] == DISCLAIMER and body["bundle"]["id"] == site.bundle_id
    assert body["calibration"]["method"] == "temperature scaling"
    direct = DiagnosisAssistant.load(tiny_bundle).predict(pd.DataFrame(rows), explain=False)
    for i, p in enumerate(body["predictions"]):
        assert p["row"] == i + 1
        assert sum(p["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        for cls, prob in p["probabilities"].items():
            assert prob == pytest.approx(direct.loc[i, f"prob_{cls}"], abs=SCORE_TOLERANCE)
        assert p["prediction"] == direct.loc[i, "prediction"]
        assert len(p["factors"]) == 4 and all(f["column"] in rows[0] for f in p["factors"])
    assert body["predictions"][1]["n_imputed"] == 1 and body["predictions"][0]["n_imputed"] == 0


def test_flags_and_explain_off(site, tiny_bundle):
    row = {**example_row(tiny_bundle), "age": 900}
    p = site.api("clinician").post(f"/api/v1/diagnosis/{site.bundle_id}/predict", json={"row": row, "explain": False}).json()["predictions"][0]
    assert p["out_of_range"] == ["age"] and p["factors"] == []


def test_csv_upload_predicts_every_row_in_order(site, tiny_bundle):
    data = example_csv(tiny_bundle, n=4)
    r = site.api("clinician").post(f"/api/v1/diagnosis/{site.bundle_id}/predict-file", files={"file": ("ward.csv", data, "text/csv")})
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert [p["patient_ref"] for p in preds] == ["P000", "P001", "P002", "P003"]
    direct = DiagnosisAssistant.load(tiny_bundle).predict(pd.read_csv(io.BytesIO(data)), explain=False)
    assert np.allclose([p["confidence"] for p in preds],
                       [direct.loc[i, f"prob_{direct.loc[i, 'prediction']}"] for i in range(4)], atol=SCORE_TOLERANCE)


def test_models_and_schema_endpoints(site, tiny_bundle):
    api = site.api("researcher")
    models = api.get("/api/v1/models").json()
    [m] = [m for m in models["models"] if m["id"] == site.bundle_id]
    assert m["assistant"] == "diagnosis" and m["model_card"]["target"] == "disease" and "auc" in m["metrics"]
    detail = api.get(f"/api/v1/models/{site.bundle_id}").json()
    assert detail["schema"]["classes"] == ["absent", "present"]
    report = api.get(f"/api/v1/models/{site.bundle_id}/report")
    assert report.status_code == 200 and "<html" in report.text.lower() and "sandbox" in report.headers["content-security-policy"]
    schema = site.api("clinician").get(f"/api/v1/diagnosis/{site.bundle_id}/schema").json()
    assert [f["column"] for f in schema["inputs"]] == list(example_row(tiny_bundle))
    assert site.api("clinician").get("/api/v1/openapi.json").json()["paths"]["/api/v1/diagnosis/{bundle_id}/predict"]


def test_form_page_and_result_name_the_bundle_and_say_decision_support(site):
    client = site.browser("clinician")
    page = client.get(f"/diagnosis/{site.bundle_id}?example=1")
    assert DISCLAIMER in page.text and site.bundle_id in page.text and 'hx-post=' in page.text
    csrf = csrf_of(page.text)
    values = dict(re.findall(r'name="(c\d+)" value="([^"]*)"', page.text))
    for hx in (True, False):
        r = client.post(f"/diagnosis/{site.bundle_id}/predict", data={"csrf_token": csrf, "explain": "on", **values},
                        headers={"HX-Request": "true"} if hx else {})
        assert r.status_code == 200
        assert DISCLAIMER in r.text and site.bundle_id in r.text and 'id="probabilities"' in r.text
        assert ("<html" in r.text) is not hx  # a partial for htmx, the whole page without JavaScript
    models = client.get("/models")
    assert site.bundle_id in models.text and f"/diagnosis/{site.bundle_id}" in models.text


def test_a_new_assistant_plugs_in_without_touching_the_others(tmp_path, tiny_bundle):
    from medassist.service import create_app
    from medassist.settings import Settings
    from medassist.testing.server import add_user, sign_in

    api, pages = APIRouter(), APIRouter()

    @api.get("/ping")
    def ping(principal: Principal = Depends(Require(Permission.USE_ASSISTANTS, surface=Surface.API))) -> dict:
        return {"pong": principal.username}

    echo = AssistantPlugin(name="echo", title="Echo", summary="Says pong.", tasks=("echo-task",), permission=Permission.USE_ASSISTANTS,
                           api_router=api, page_router=pages, templates_dir=TEMPLATES / "echo")
    app = create_app(Settings(home=tmp_path / "h", bundle_dirs=[tiny_bundle.parent]), plugins=[*load_plugins(), echo])
    add_user(app.state.ctx.db, "nurse", "clinician", "a long test password 42")
    with running_server(app) as base:
        client = sign_in(base, "nurse")
        home = client.get("/").text
        assert 'href="/echo"' in home and 'href="/diagnosis"' in home
        assert client.get(f"/diagnosis/{app.state.ctx.catalog.list()[0].bundle_id}").status_code == 200
    app.state.ctx.db.dispose()


def test_the_registry_is_one_line_per_assistant_and_refuses_clashes():
    assert "medassist.service.diagnosis:PLUGIN" in PLUGIN_MODULES
    with pytest.raises(ConfigError, match="already taken"):
        load_plugins(("medassist.service.diagnosis:PLUGIN", "medassist.service.diagnosis:PLUGIN"))
    with pytest.raises(ConfigError, match="serves no bundle task"):
        AssistantPlugin(name="xx", title="X", summary="", tasks=(), permission=Permission.USE_ASSISTANTS,
                        api_router=APIRouter(), page_router=APIRouter(), templates_dir=TEMPLATES)


def test_concurrent_requests_get_their_own_answers_and_are_each_audited(site, tiny_bundle):
    from concurrent.futures import ThreadPoolExecutor

    from medassist.store.models import AuditEntry

    base = example_row(tiny_bundle)
    rows = [{**base, "age": 30 + 3 * i, "sex": "Male" if i % 2 else "Female"} for i in range(16)]
    direct = DiagnosisAssistant.load(tiny_bundle).predict(pd.DataFrame(rows), explain=False)
    n_before = site.count(AuditEntry)
    api = site.api("clinician")

    def ask(i: int) -> dict:
        return api.post(f"/api/v1/diagnosis/{site.bundle_id}/predict", json={"row": rows[i], "explain": False}).json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(16)))
    for i, body in enumerate(answers):
        p = body["predictions"][0]
        assert p["row"] == 1 and p["probabilities"]["present"] == pytest.approx(direct.loc[i, "prob_present"], abs=1e-5)
    assert site.count(AuditEntry) == n_before + 16
    assert len({b["audit_id"] for b in answers}) == 16
