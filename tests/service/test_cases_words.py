"""Clinical words on the case pages, against a real server holding three data sets (WHAS500, the
veteran trial with ICD-10 conditions, the CDISC pilot): the cohort form offers the chosen data
set's columns in words, the condition search suggests only codes that data set has, the
Kaplan-Meier plot names its endpoint on the y axis, with round time ticks and the legend
beside the curves."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

import medassist.evaluation.survival as survival
from medassist.data.case_records import ConditionRecord
from medassist.data.datasets.cases import load_cases
from medassist.privacy.crypto import IdentifierHasher
from medassist.store.cases import CaseStore

C = "clinician"
LUNG = ConditionRecord(code="C34.90", text="Malignant neoplasm of unspecified part of unspecified bronchus or lung")
COPD = ConditionRecord(code="J44.9", text="Chronic obstructive pulmonary disease, unspecified")


@pytest.fixture(scope="module")
def stored(site):
    ctx = site.app.state.ctx
    store = CaseStore(db=ctx.db, cipher=ctx.cipher, hasher=IdentifierHasher.from_settings(site.settings))
    veteran = [replace(c, conditions=(LUNG, COPD) if i % 3 == 0 else (LUNG,)) for i, c in enumerate(load_cases("veteran").cases)]
    store.import_records(veteran, source="veteran", source_kind="table")
    store.import_records(load_cases("whas500").cases, source="whas500", source_kind="table")
    store.import_records(load_cases("cdisc_pilot").cases, source="cdisc_pilot", source_kind="sdtm")
    return store


def _options(html: str, name: str) -> dict[str, str]:
    body = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, flags=re.S).group(1)
    return dict(re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', body))


def test_cohort_form_offers_the_chosen_data_sets_columns_in_words(site, stored):
    client = site.browser(C)
    page = client.get("/cases/cohort", params={"dataset": "whas500"}).text
    by = _options(page, "by")
    assert by["chf"] == "Congestive heart complications — chf" and by["sysbp"].startswith("Initial systolic blood pressure (")
    assert "conditions" not in by and "time" not in by and "ARM" not in by
    # the data set picker reloads the data-set-dependent part of the form (htmx), not the result
    picker = re.search(r'<select name="dataset"[^>]*>', page).group(0)
    assert 'hx-get="/cases/cohort/fields"' in picker and 'hx-target="#cohort-fields"' in picker
    fields = client.get("/cases/cohort/fields", params={"dataset": "cdisc_pilot", "by": "chf", "where": "chf == 1"},
                        headers={"HX-Request": "true"})
    assert fields.status_code == 200
    by = _options(fields.text, "by")
    assert by["ARM"] == "Treatment arm — ARM" and by["age"] == "Age (years) — age" and "chf" not in by
    assert by["ALB"].startswith("Albumin")  # no dictionary entry: the store's observation name
    assert ' selected' not in fields.text.split('name="by"')[1].split("</select>")[0]  # the old data set's choice is gone
    assert 'name="where" value=""' in fields.text and "chf" not in fields.text
    assert 'id="cohort-result" hx-swap-oob="true"' in fields.text  # the old data set's result is cleared
    assert "Endpoint: <strong>first dermatologic event</strong>" in fields.text
    # the full page for another data set: its own columns and examples only
    page = client.get("/cases/cohort", params={"dataset": "cdisc_pilot"}).text
    assert 'value="chf"' not in page and "chf in (1)" not in page and 'value="ARM"' in page


def test_condition_suggestions_are_the_chosen_data_sets_own(site, stored):
    client = site.browser(C)
    page = client.get("/cases", params={"dataset": "whas500"}).text
    assert 'list="condition-codes"' in page and "I21" not in page and "C34.90" not in page
    assert "No condition codes are stored for whas500" in page
    vet = client.get("/cases/conditions", params={"dataset": "veteran"}, headers={"HX-Request": "true"}).text
    options = re.findall(r'<option value="([^"]+)">([^<]*)</option>', vet)
    assert [code for code, _ in options] == ["C34.90", "J44.9"]
    assert "(137 cases)" in options[0][1] and "(46 cases)" in options[1][1]
    everything = client.get("/cases/conditions", headers={"HX-Request": "true"}).text
    codes = re.findall(r'<option value="([^"]+)">', everything)
    assert {"C34.90", "J44.9"} <= set(codes) and "Condition codes stored" in everything
    body = site.api(C).get("/api/v1/cases/conditions", params={"dataset": "veteran"}).json()
    assert [(c["code"], c["n"]) for c in body["conditions"]] == [("C34.90", 137), ("J44.9", 46)]
    assert site.api(C).get("/api/v1/cases/conditions", params={"dataset": "whas500"}).json()["conditions"] == []
    # the cohort filter's examples use codes the data set has, and no code where it has none
    assert 'conditions contains &#34;C34&#34;' in client.get("/cases/cohort", params={"dataset": "veteran"}).text
    assert "conditions contains" not in client.get("/cases/cohort", params={"dataset": "whas500"}).text.split("cohort-columns")[0]


@pytest.fixture
def km_figures(monkeypatch):
    """What each Kaplan-Meier plot drawn in this process showed: y label, x tick labels, x label, and
    whether the legend lies over the curves."""
    shown = []
    save = survival.save_png

    def capture(fig, path):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig).draw()
        ax = fig.axes[0]
        legend = ax.get_legend()
        box, leg = ax.get_window_extent(), legend.get_window_extent() if legend else None
        shown.append({"ylabel": ax.get_ylabel(), "xlabel": ax.get_xlabel(),
                      "ticks": [t.get_text() for t in ax.get_xticklabels()],
                      "legend_over_axes": bool(leg is not None and leg.overlaps(box)), "name": str(path)})
        return save(fig, path)

    monkeypatch.setattr(survival, "save_png", capture)
    return shown


def test_km_plot_names_the_endpoint_with_round_ticks_and_the_legend_beside(site, stored, km_figures):
    api = site.api(C)
    body = api.get("/api/v1/cases/cohort", params={"dataset": "cdisc_pilot", "by": "ARM", "where": "age > 50"}).json()
    assert body["endpoint"]["ylabel"] == "probability free of first dermatologic event" and body["by_label"] == "Treatment arm"
    km = [f for f in km_figures if f["name"].endswith("km.png")][-1]
    assert km["ylabel"] == "probability free of first dermatologic event" and "survival" not in km["ylabel"]
    assert km["xlabel"] == "time (days)" and km["ticks"] == ["0", "50", "100", "150"]
    assert not km["legend_over_axes"]
    # long follow-up in years with whole-number ticks; death is survival; coded groups in words
    body = api.get("/api/v1/cases/cohort", params={"dataset": "whas500", "by": "chf"}).json()
    km = [f for f in km_figures if f["name"].endswith("km.png")][-1]
    assert km["xlabel"] == "time (years)" and km["ticks"] == ["0", "2", "4", "6"] and not km["legend_over_axes"]
    assert km["ylabel"] == "survival probability (free of death)"
    assert [(g["label"], g["text"]) for g in body["groups"]] == [("0", "no"), ("1", "yes")]
    assert all(np.isclose(float(t) % 1, 0) for t in km["ticks"])
    page = site.browser(C).get("/cases/cohort", params={"dataset": "cdisc_pilot", "by": "ARM", "where": ""}).text
    assert "median time to first dermatologic event (days)" in page and "by Treatment arm" in page
    assert 'data-level="Xanomeline High Dose">xanomeline high dose<' in page
