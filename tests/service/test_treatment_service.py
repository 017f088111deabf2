"""The treatment plugin over real HTTP: per-arm outcomes, the recommendation and flags are the
assistant's own; the page draws them as an SVG chart and names the bundle."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from medassist.assistants.treatment import TreatmentAssistant
from medassist.store.models import Prediction
from medassist.testing.assistants import example_patient
from medassist.testing.server import csrf_of

SITE_ASSISTANTS = True
DISCLAIMER = "Decision support, not a medical device."


def test_advice_is_the_assistants_own(site, assistant_bundles):
    bundle = assistant_bundles["treatment"]
    patients = [example_patient(bundle), {**example_patient(bundle), "age": 80, "nodes": None}]
    r = site.api("clinician").post(f"/api/v1/treatment/{site.bundle_ids['treatment']}/advise", json={"patients": patients, "top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["disclaimer"] == DISCLAIMER and body["bundle"]["id"] == site.bundle_ids["treatment"]
    assistant = TreatmentAssistant.load(bundle)
    direct = assistant.advise(pd.DataFrame(patients), explain=False)
    assert body["arms"] == assistant.arms and body["evidence"]["assignment"] == "randomised"
    for i, adv in enumerate(body["advice"]):
        assert adv["recommended"] == direct.loc[i, "recommended"]
        for arm in adv["arms"]:
            a = arm["arm"]
            assert arm["expected"] == pytest.approx(direct.loc[i, f"pred_{a}"], abs=1e-3)
            assert arm["lo"] == pytest.approx(direct.loc[i, f"lo_{a}"], abs=1e-3) and arm["hi"] == pytest.approx(direct.loc[i, f"hi_{a}"], abs=1e-3)
            assert arm["lo"] <= arm["expected"] <= arm["hi"]
            assert arm["p_best"] == pytest.approx(direct.loc[i, f"p_best_{a}"], abs=1e-3)
        assert sum(arm["p_best"] for arm in adv["arms"]) == pytest.approx(1, abs=0.01)
        assert adv["confidence_flag"] == direct.loc[i, "confidence_flag"]
        assert "; ".join(adv["flags"]) == direct.loc[i, "flags"]
        assert len(adv["modifiers"]) == 2
    assert body["advice"][1]["n_imputed"] == 1 and body["advice"][0]["n_imputed"] == 0


def test_schema_lists_the_covariates_and_arms(site, assistant_bundles):
    r = site.api("clinician").get(f"/api/v1/treatment/{site.bundle_ids['treatment']}/schema")
    assert r.status_code == 200
    body = r.json()
    assert [f["column"] for f in body["inputs"]] == list(example_patient(assistant_bundles["treatment"]))
    assert body["reference"] in body["arms"] and body["outcome_kind"] == "survival"


def test_the_page_draws_the_chart_and_refuses_bad_values(site, assistant_bundles):
    client = site.browser("clinician")
    bid = site.bundle_ids["treatment"]
    page = client.get(f"/treatment/{bid}?example=1")
    assert page.status_code == 200 and DISCLAIMER in page.text
    patient = example_patient(assistant_bundles["treatment"])
    data = {"csrf_token": csrf_of(page.text), "explain": "on", **{f"c{i}": str(v) for i, v in enumerate(patient.values())}}
    r = client.post(f"/treatment/{bid}/advise", data=data, headers={"HX-Request": "true"})
    assert r.status_code == 200, r.text[:300]
    arms = TreatmentAssistant.load(assistant_bundles["treatment"]).arms
    assert 'id="outcome-chart"' in r.text and sorted(re.findall(r'data-arm="([^"]+)"', r.text)) == sorted(arms)
    assert len(re.findall(r'<circle class="point"', r.text)) == len(arms)
    assert 'id="recommended"' in r.text and 'id="evidence"' in r.text and bid in r.text and DISCLAIMER in r.text
    assert len(re.findall(r'<td class="num p-best">\d+(\.\d)?%</td>', r.text)) == len(arms)  # probability each arm is best
    assert 'id="confidence"' in r.text and "probability that" in r.text
    before = site.count(Prediction)
    r = client.post(f"/treatment/{bid}/advise", data={**data, "c1": "eighty"})
    assert r.status_code == 422 and "expected a number" in r.text and site.count(Prediction) == before
