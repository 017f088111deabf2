"""The prognosis plugin over real HTTP, on a survival bundle trained by ``train_prognosis`` (the
code behind ``medassist train --task survival``): the numbers are the assistant's own, the page
draws the patient's curve and band against the cohort's, uploads and JSON rows get the same
one-line 422 as diagnosis, and only a role with ``assistants.use`` gets an answer (audited)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from medassist.assistants.prognosis import PrognosisAssistant, train_prognosis
from medassist.pipeline.survival import sksurv_case_frame
from medassist.service import create_app
from medassist.settings import Settings
from medassist.store.accounts import new_api_token
from medassist.store.models import AuditEntry, Prediction, User
from medassist.testing.server import PASSWORD, add_user, csrf_of, running_server, sign_in

DISCLAIMER = "Decision support, not a medical device."
ROLES = ("clinician", "researcher", "auditor")
COVARIATES = ["age", "estrec", "horTh", "menostat", "pnodes", "progrec", "tgrade", "tsize"]


@pytest.fixture(scope="module")
def gbsg(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """GBSG2 (scikit-survival) with a patient ID and a few missing values; a tiny survival bundle
    (2 members, 2 epochs: seconds) trained on its first 300 rows; the next 20 rows as new patients."""
    df = sksurv_case_frame("gbsg2").reset_index(drop=True).iloc[:320]
    df.insert(0, "pid", [f"GB{i:04d}" for i in range(len(df))])
    df.loc[[5, 40, 301], "tgrade"] = None
    d = tmp_path_factory.mktemp("prognosis")
    df.iloc[:300].to_csv(d / "train.csv", index=False)
    out = d / "bundles" / "gbsg"
    train_prognosis(d / "train.csv", out=out, time="time", event="event", id_column="pid", epochs=2, ensemble=2, progress=False)
    return out, df.iloc[300:].drop(columns=["time", "event"]).reset_index(drop=True)


@dataclass
class Site:
    base_url: str
    app: object
    bundle_id: str
    tokens: dict[str, str]

    def api(self, role: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def count(self, model) -> int:
        with self.app.state.ctx.db.session() as s:
            return s.scalar(select(func.count()).select_from(model))


@pytest.fixture(scope="module")
def site(tmp_path_factory, gbsg) -> Iterator[Site]:
    bundle, _ = gbsg
    app = create_app(Settings(home=tmp_path_factory.mktemp("home"), bundle_dirs=[bundle.parent], login_rate_per_minute=10_000))
    db = app.state.ctx.db
    tokens = {}
    for role in ROLES:
        uid = add_user(db, role, role, PASSWORD)
        with db.session(write=True) as s:
            tokens[role] = new_api_token(s, user=s.get(User, uid), name="test", days=1)[1]
    [info] = app.state.ctx.catalog.list(tasks=("survival",))
    with running_server(app) as base:
        yield Site(base_url=base, app=app, bundle_id=info.bundle_id, tokens=tokens)
    db.dispose()


def _rows(new: pd.DataFrame, n: int) -> list[dict]:
    return [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in new.head(n).to_dict("records")]


def test_api_answers_are_the_assistants_own_survival_numbers(site, gbsg, caplog):
    bundle, new = gbsg
    rows = _rows(new, 3)  # row 2 has no tumour grade (imputed)
    before = (site.count(Prediction), site.count(AuditEntry))
    with caplog.at_level(logging.DEBUG):
        r = site.api("clinician").post(f"/api/v1/prognosis/{site.bundle_id}/predict", json={"rows": rows, "top_k": 2, "curve": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["disclaimer"] == DISCLAIMER and body["bundle"]["id"] == site.bundle_id and body["bundle"]["task"] == "survival"
    assert body["horizons"] == [365.0, 730.0, 1826.0] and body["time_unit"] == "days"
    assert body["cohort"]["n"] == 300 and body["cohort"]["events"] > 10
    direct = PrognosisAssistant.load(bundle).predict(pd.DataFrame(rows))
    for i, p in enumerate(body["predictions"]):
        assert p["row"] == i + 1 and p["patient_ref"] == rows[i]["pid"]
        assert p["risk"] == pytest.approx(direct.loc[i, "risk"], abs=1e-5)
        for col in [c for c in direct.columns if c.startswith("surv_")]:
            assert p["surv"][col] == pytest.approx(direct.loc[i, col], abs=1e-5)
        for h in p["survival"]:
            assert h["low"] <= h["survival"] <= h["high"] and 0 < h["cohort"] < 1
        assert [h["survival"] for h in p["survival"]] == sorted((h["survival"] for h in p["survival"]), reverse=True)
        med = direct.loc[i, "median_survival"]
        assert (p["median_survival"] is None) if np.isnan(med) else p["median_survival"] == pytest.approx(med, rel=1e-5)
        assert len(p["factors"]) == 2 and all(f["column"] in COVARIATES for f in p["factors"])
        curve = p["curve"]
        assert curve["times"][0] == 0 and curve["survival"][0] == pytest.approx(1) and len(curve["low"]) == len(curve["times"])
        assert all(lo - 1e-6 <= s <= hi + 1e-6 for lo, s, hi in zip(curve["low"], curve["survival"], curve["high"]))
    assert [p["n_imputed"] for p in body["predictions"]] == [0, 1, 0] and body["predictions"][1]["missing"] == ["tgrade"]
    assert (site.count(Prediction), site.count(AuditEntry)) == (before[0] + 1, before[1] + 1)
    with site.app.state.ctx.db.session() as s:
        entry = s.get(AuditEntry, body["audit_id"])
        assert entry.username == "clinician" and entry.bundle_id == site.bundle_id and entry.input_sha256
        assert json.loads(entry.detail)["assistant"] == "prognosis" and "GB03" not in entry.detail
    assert "GB0300" not in caplog.text  # no identifier in any log line


def test_openapi_schema_and_model_list(site):
    api = site.api("clinician")
    paths = api.get("/api/v1/openapi.json").json()["paths"]
    route = paths["/api/v1/prognosis/{bundle_id}/predict"]["post"]
    assert {"401", "403", "404", "422"} <= set(route["responses"])
    assert "/api/v1/prognosis/{bundle_id}/predict-file" in paths
    schema = api.get(f"/api/v1/prognosis/{site.bundle_id}/schema").json()
    assert [f["column"] for f in schema["inputs"]] == COVARIATES and schema["id_column"] == "pid"
    assert [m["id"] for m in api.get("/api/v1/prognosis").json()["models"]] == [site.bundle_id]
    [m] = [m for m in site.api("clinician").get("/api/v1/models").json()["models"] if m["id"] == site.bundle_id]
    assert m["assistant"] == "prognosis"


@pytest.mark.parametrize("change, words", [
    ({"age": "sixty"}, "row 1, column 'age': expected a number or null"),
    ({"tgrade": "IV"}, "row 1, column 'tgrade': 'IV' is not a value the model knows"),
    ({"ward": "B"}, "row 1 has column(s) 'ward' that the model does not use"),
    ({"tsize": None, "drop": "tsize"}, "row 1 lacks column(s) 'tsize'"),
])
def test_bad_json_rows_get_one_line_and_nothing_is_recorded(site, gbsg, change, words):
    row = _rows(gbsg[1], 1)[0]
    drop = change.pop("drop", None)
    row = {k: v for k, v in {**row, **change}.items() if k != drop}
    before = site.count(Prediction)
    r = site.api("clinician").post(f"/api/v1/prognosis/{site.bundle_id}/predict", json={"row": row})
    assert r.status_code == 422 and words in r.json()["detail"] and "\n" not in r.json()["detail"]
    assert site.count(Prediction) == before


def test_csv_upload_predicts_every_row_in_order_and_bad_files_get_one_line(site, gbsg):
    bundle, new = gbsg
    api = site.api("clinician")
    url = f"/api/v1/prognosis/{site.bundle_id}/predict-file"
    data = new.to_csv(index=False).encode()
    r = api.post(url, files={"file": ("ward.csv", data, "text/csv")})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["patient_ref"] for p in preds] == list(new["pid"])
    direct = PrognosisAssistant.load(bundle).predict(pd.read_csv(io.BytesIO(data)))
    assert np.allclose([p["risk"] for p in preds], direct["risk"], atol=1e-5)
    before = site.count(Prediction)
    bad = {
        "no column": (new.drop(columns=["tsize"]).to_csv(index=False).encode(), 422, "ward.csv: the model needs column(s) 'tsize'"),
        "text in a number": (new.assign(age=["old"] + list(new["age"][1:])).to_csv(index=False).encode(), 422, "age"),
        "unknown level": (new.assign(horTh=["maybe"] + list(new["horTh"][1:])).to_csv(index=False).encode(), 422,
                          "ward.csv: row 1, column 'horTh': 'maybe' is not a value the model knows"),
        "empty": (b"", 422, "is empty"),
        "pickle": (b"\x80\x04\x95" + b"\x00" * 40, 415, "never loads pickled data"),
    }
    for what, (content, status, words) in bad.items():
        r = api.post(url, files={"file": ("ward.csv", content, "text/csv")})
        assert r.status_code == status and words in r.json()["detail"], (what, r.text)
        assert "\n" not in r.json()["detail"], what
    assert site.count(Prediction) == before


def test_only_assistant_users_get_answers(site, gbsg):
    row = _rows(gbsg[1], 1)[0]
    url = f"/api/v1/prognosis/{site.bundle_id}/predict"
    assert site.api(None).post(url, json={"row": row}).status_code == 401
    for role in ("researcher", "auditor"):
        assert site.api(role).post(url, json={"row": row}).status_code == 403, role
    assert site.api("clinician").post("/api/v1/prognosis/0123456789abcdef/predict", json={"row": row}).status_code == 404
    page = sign_in(site.base_url, "auditor").get(f"/prognosis/{site.bundle_id}")
    assert page.status_code == 403


def test_the_page_draws_the_curve_and_band_against_the_cohort_and_the_upload_downloads(site, gbsg):
    client = sign_in(site.base_url, "clinician")
    bid = site.bundle_id
    page = client.get(f"/prognosis/{bid}?example=1")
    assert page.status_code == 200 and DISCLAIMER in page.text and 'id="cohort-summary"' in page.text
    values = dict(re.findall(r'name="(c\d+)" data-column="[^"]*" value="([^"]+)"', page.text))
    values.update({f"c{i}": v for i, v in re.findall(r'<select name="c(\d+)"[^>]*>.*?<option value="([^"]+)" selected', page.text)})
    assert len(values) == len(COVARIATES)
    data = {"csrf_token": csrf_of(page.text), "explain": "on", **values}
    for hx in (True, False):
        r = client.post(f"/prognosis/{bid}/predict", data=data, headers={"HX-Request": "true"} if hx else {})
        assert r.status_code == 200, r.text[:300]
        assert ("<html" in r.text) is not hx
        assert 'id="survival-chart"' in r.text and 'class="patient-curve"' in r.text and 'class="patient-band"' in r.text
        assert 'class="cohort-curve"' in r.text and len(re.findall(r'<g class="horizon"', r.text)) == 3
        assert DISCLAIMER in r.text and bid in r.text and 'id="factors"' in r.text and "5 years" in r.text
    model_page = client.get(f"/models/{bid}")
    assert model_page.status_code == 200 and f'href="/prognosis/{bid}"' in model_page.text
    before = site.count(Prediction)
    r = client.post(f"/prognosis/{bid}/predict", data={**data, "c0": "fifty"})
    assert r.status_code == 422 and "expected a number" in r.text and site.count(Prediction) == before
    # the upload: a table, and its CSV download holds the columns `medassist predict` writes
    new = gbsg[1].head(4)
    r = client.post(f"/prognosis/{bid}/predict-file", files={"file": ("ward.csv", new.to_csv(index=False).encode(), "text/csv")},
                    data={"csrf_token": data["csrf_token"]}, headers={"HX-Request": "true"})
    assert r.status_code == 200, r.text[:300]
    assert len(re.findall(r'<tr data-row="\d+">', r.text)) == 4
    link = re.search(r'href="(/prognosis/predictions/\d+\.csv)"', r.text).group(1)
    csv = client.get(link)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    table = pd.read_csv(io.BytesIO(csv.content))
    assert list(table["patient"]) == list(new["pid"])
    assert {"risk", "surv_365", "surv_365_low", "surv_1826_high", "median_survival", "n_imputed"} <= set(table.columns)
    assert sign_in(site.base_url, "clinician").get(link).status_code == 200  # same user, new session
    r = client.post(f"/prognosis/{bid}/predict-file", files={"file": ("ward.csv", b"age,tsize\n50,20\n", "text/csv")},
                    data={"csrf_token": data["csrf_token"]}, headers={"HX-Request": "true"})
    assert r.status_code == 422 and "ward.csv: the model needs column(s)" in r.text
