"""Issue 14: case analysis on ordinary FHIR imports. Similar cases need no outcome (feature
profile); death outcomes are derived from Patient.deceased[x] and the record dates, and say so."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from medassist.assistants.cases import CaseAnalysis
from medassist.data.case_records import CaseRecord, EncounterRecord, ObservationRecord, OutcomeRecord, PatientRecord
from medassist.data.io.fhir import DERIVED, read_fhir_bundle, to_fhir_bundle, write_fhir_bundle
from medassist.data.synthetic import synthetic_cases
from medassist.exceptions import ConfigError, DataError
from medassist.featurizers.case_profile import CaseProfile, icd10_chapter
from medassist.testing import one_line_error

T0 = datetime(2024, 1, 10, 8, tzinfo=UTC)


def _bundle(**patient) -> dict:
    case = CaseRecord(patient=PatientRecord(source_system="fhir", source_id="p1", sex="female", **patient),
                      encounters=(EncounterRecord(kind="IMP", start=T0, end=datetime(2024, 1, 20, 8, tzinfo=UTC)),),
                      observations=(ObservationRecord(code="2160-0", value=1.1, time=datetime(2024, 3, 10, 8, tzinfo=UTC)),))
    return to_fhir_bundle([case])


def test_no_vital_status_means_no_outcome():
    assert read_fhir_bundle(_bundle()).cases[0].outcomes == ()


def test_a_death_date_is_an_event_at_that_date():
    (o,) = read_fhir_bundle(_bundle(death_date=date(2024, 4, 9))).cases[0].outcomes
    assert (o.name, o.event, o.time_days, o.primary) == ("death", 1, 90.0, True)
    assert o.description.startswith(DERIVED) and "death date" in o.description


def test_alive_is_censored_at_the_last_record():
    (o,) = read_fhir_bundle(_bundle(deceased=False)).cases[0].outcomes
    assert (o.event, o.time_days) == (0, 60.0) and "censored" in o.description
    (o,) = read_fhir_bundle(_bundle(deceased=True)).cases[0].outcomes
    assert (o.event, o.time_days) == (1, 60.0) and "unrecorded date" in o.description


def test_a_recorded_outcome_wins_and_a_bad_deceased_flag_is_named():
    b = to_fhir_bundle([CaseRecord(patient=PatientRecord(source_system="fhir", source_id="p1", death_date=date(2024, 4, 9)),
                                   outcomes=(OutcomeRecord(name="relapse", time_days=5.0, event=1),))])
    assert [o.name for o in read_fhir_bundle(b).cases[0].outcomes] == ["relapse"]
    bad = copy.deepcopy(_bundle())
    bad["entry"][0]["resource"]["deceasedBoolean"] = "yes"
    with pytest.raises(DataError, match="deceasedBoolean: expected true or false"):
        read_fhir_bundle(bad, source="ehr.json")


def test_icd10_chapters():
    assert (icd10_chapter("I21.4"), icd10_chapter("C50.9"), icd10_chapter("D64.9"), icd10_chapter("T81.4")) == ("IX", "II", "III", "XIX")


def test_similar_on_stored_cases_without_outcomes(case_store):
    case_store.import_records(read_fhir_bundle(to_fhir_bundle(list(synthetic_cases(n_patients=40, seed=2, outcomes="none",
                                                                                     notes=False)))).cases,
                              source="ehr", source_kind="fhir")
    frame = case_store.frame()
    assert frame["event"].isna().all()
    ca = CaseAnalysis(frame=frame)
    res = ca.similar(frame.index[0], k=5)
    assert res["embedding"].startswith("feature profile") and len(res["neighbours"]) == 5
    assert all(n["outcome"] is None and n["reasons"] for n in res["neighbours"])
    assert any("shared_conditions" in n["reasons"] or "shared_condition_categories" in n["reasons"] for n in res["neighbours"])
    assert all(n["reasons"]["closest_values"] for n in res["neighbours"])
    d = [n["distance"] for n in res["neighbours"]]
    assert d == sorted(d)
    # the frame may lack the outcome columns entirely
    res2 = CaseAnalysis(frame=frame.drop(columns=["time", "event"])).similar(frame.index[0], k=5)
    assert [n["case_id"] for n in res2["neighbours"]] == [n["case_id"] for n in res["neighbours"]]
    assert not CaseAnalysis.can_fit(frame)
    with pytest.raises(ConfigError, match="Outcome-aware similar cases need a survival model"):
        ca.similar(frame.index[0], outcome_aware=True)
    with pytest.raises(DataError, match="Survival analysis needs outcomes") as e:
        ca.cohort()
    assert "\n" not in str(e.value)


def test_a_case_is_its_own_nearest_twin_in_the_profile():
    frame = pd.DataFrame({"age": [50.0, 51.0, 80.0], "sex": ["male", "male", "female"], "hb": [13.0, np.nan, 9.0],
                          "conditions": ["I21.4", "I21.9", "C50.9"], "medications": ["aspirin", "aspirin", ""]},
                         index=pd.Index(["a", "b", "c"], name="case_id"))
    x = CaseProfile().fit(frame).transform(frame)
    assert x.shape[0] == 3 and np.isfinite(x).all()
    res = CaseAnalysis(frame=frame).similar("a", k=2)
    assert [n["case_id"] for n in res["neighbours"]] == ["b", "c"]
    assert res["neighbours"][0]["reasons"]["shared_condition_categories"] == ["I21"]
    assert res["neighbours"][0]["reasons"]["shared_medications"] == ["aspirin"]


def test_cli_import_without_outcomes_then_similar_and_show_derived(cli, tmp_path, _isolated_home):
    env = {"MEDASSIST_HOME": str(_isolated_home)}
    plain = write_fhir_bundle(list(synthetic_cases(n_patients=30, seed=4, outcomes="none", notes=False)), tmp_path / "ehr.json")
    assert cli("cases", "import", plain, "--no-progress", env=env).returncode == 0
    first = json.loads(cli("cases", "list", "--json", "--dataset", "ehr", env=env).stdout)[0]["case_id"]
    shown = cli("cases", "similar", first, "--k", "3", env={**env, "COLUMNS": "250"})
    assert shown.returncode == 0, shown.stderr
    assert "feature profile" in shown.stdout and "feature profile" in shown.stderr
    assert "conditions:" in shown.stdout or "same ICD-10 category" in shown.stdout
    res = json.loads(cli("cases", "similar", first, "--k", "3", "--json", env=env).stdout)
    assert len(res["neighbours"]) == 3 and all(n["reasons"] for n in res["neighbours"])
    assert "Survival analysis needs outcomes" in one_line_error(cli("cases", "cohort", "--dataset", "ehr", "--out", tmp_path / "km", env=env))
    assert "Survival analysis needs outcomes" in one_line_error(cli("cases", "factors", "--dataset", "ehr", "--out", tmp_path / "f", env=env))

    dead = write_fhir_bundle(list(synthetic_cases(n_patients=12, seed=5, outcomes="deceased", notes=False)), tmp_path / "ward.json")
    assert cli("cases", "import", dead, "--no-progress", env=env).returncode == 0
    rows = json.loads(cli("cases", "list", "--json", "--dataset", "ward", env=env).stdout)
    assert all(r["outcome"] is not None for r in rows) and {r["outcome"]["event"] for r in rows} == {0, 1}
    text = cli("cases", "show", rows[0]["case_id"], env=env).stdout
    assert "outcome (primary): death:" in text and DERIVED in text
