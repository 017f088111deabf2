"""FHIR R4 bundles: reading, the writer's round trip, and errors that name entry and field."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime

import pytest

from medassist.data.case_records import (
    CaseRecord,
    ConditionRecord,
    MedicationRecord,
    NoteRecord,
    ObservationRecord,
    OutcomeRecord,
    PatientRecord,
)
from medassist.data.io.fhir import read_fhir_bundle, to_fhir_bundle, write_fhir_bundle
from medassist.exceptions import DataError, DataFileNotFoundError


def small_bundle() -> dict:
    """A hand-written bundle as an EHR would export it (LOINC, ICD-10-CM, urn:uuid references)."""
    return {
        "resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:uuid:obs-1", "resource": {
                "resourceType": "Observation", "id": "obs-1", "status": "final", "subject": {"reference": "urn:uuid:p1"},
                "category": [{"coding": [{"code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0", "display": "Creatinine"}]},
                "valueQuantity": {"value": 1.3, "unit": "mg/dL"}, "effectiveDateTime": "2024-03-02T08:00:00Z"}},
            {"fullUrl": "urn:uuid:p1", "resource": {
                "resourceType": "Patient", "id": "p1",
                "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "MRN-4711"}],
                "name": [{"given": ["Ada"], "family": "Lovelace"}], "gender": "female", "birthDate": "1950-06-15"}},
            {"fullUrl": "urn:uuid:enc-1", "resource": {
                "resourceType": "Encounter", "id": "enc-1", "status": "finished", "class": {"code": "IMP"},
                "subject": {"reference": "Patient/p1"}, "period": {"start": "2024-03-01T10:00:00Z", "end": "2024-03-05"}}},
            {"resource": {
                "resourceType": "Condition", "id": "c-1", "subject": {"reference": "Patient/p1"},
                "clinicalStatus": {"coding": [{"code": "active"}]},
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I21.4"}], "text": "NSTEMI"},
                "onsetDateTime": "2024-03-01"}},
            {"resource": {
                "resourceType": "MedicationRequest", "id": "m-1", "status": "active", "intent": "order",
                "subject": {"reference": "Patient/p1"}, "authoredOn": "2024-03-01",
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                          "code": "1191", "display": "aspirin"}]}}},
            {"resource": {"resourceType": "Procedure", "id": "x-1", "subject": {"reference": "Patient/p1"}}},
            {"resource": {"resourceType": "Procedure", "id": "x-2", "subject": {"reference": "Patient/p1"}}},
        ],
    }


def test_a_hand_written_bundle_reads_into_one_case():
    result = read_fhir_bundle(small_bundle())
    assert result.skipped == {"Procedure": 2}
    (case,) = result.cases
    p = case.patient
    assert (p.source_id, p.mrn, p.name, p.birth_date, p.sex) == ("p1", "MRN-4711", "Ada Lovelace", date(1950, 6, 15), "female")
    assert case.conditions[0].code == "I21.4" and case.conditions[0].system == "ICD-10-CM"
    assert case.medications[0].name == "aspirin" and case.medications[0].kind == "request"
    obs = case.observations[0]
    assert (obs.code, obs.system, obs.value, obs.unit) == ("2160-0", "LOINC", 1.3, "mg/dL")
    assert obs.time == datetime(2024, 3, 2, 8, tzinfo=UTC)
    assert case.encounters[0].kind == "IMP"


def test_the_writer_round_trips_every_kind_of_record(tmp_path, cdisc):
    t = datetime(2024, 1, 5, 9, 30, tzinfo=UTC)
    made = CaseRecord(
        patient=PatientRecord(source_system="fhir", source_id="pt-9", mrn="M9", name="Jo Bloggs", birth_date=date(1940, 2, 29),
                              sex="male", death_date=date(2024, 6, 1), index_date=t, age_years=None),
        conditions=(ConditionRecord(code="E11.9", text="type 2 diabetes", onset=t),),
        medications=(MedicationRecord(name="metformin", code="6809", system="RxNorm", dose=500.0, dose_unit="mg", start=t),),
        observations=(ObservationRecord(code="4548-4", system="LOINC", name="HbA1c", value=7.9, unit="%", time=t),
                      ObservationRecord(code="smoker", text="former", category="social-history", day=-3.5)),
        outcomes=(OutcomeRecord(name="death", time_days=148.6, event=1),
                  OutcomeRecord(name="readmission", time_days=30.0, event=0, primary=False)),
        notes=(NoteRecord(text="Seen in clinic; stable.", kind="progress", time=t),),
    )
    records = (made, *cdisc.cases[:25])
    path = write_fhir_bundle(records, tmp_path / "b.json")
    back = read_fhir_bundle(path)
    assert back.cases == records and back.skipped == {} and len(back.sha256) == 64


@pytest.mark.parametrize(("edit", "field"), [
    (lambda b: b["entry"][0]["resource"].pop("subject"), "subject.reference"),
    (lambda b: b["entry"][0]["resource"].update(valueQuantity={"value": "high"}), "valueQuantity.value"),
    (lambda b: b["entry"][1]["resource"].update(gender="F"), "gender"),
    (lambda b: b["entry"][1]["resource"].update(birthDate="15/06/1950"), "birthDate"),
    (lambda b: b["entry"][3]["resource"].update(onsetDateTime="yesterday"), "onsetDateTime"),
    (lambda b: b["entry"][0]["resource"].update(subject={"reference": "Patient/nobody"}), "subject.reference"),
])
def test_a_bad_entry_is_named_by_index_type_id_and_field(edit, field):
    bundle = copy.deepcopy(small_bundle())
    edit(bundle)
    with pytest.raises(DataError) as e:
        read_fhir_bundle(bundle, source="ehr.json")
    msg = str(e.value)
    assert msg.startswith("ehr.json: entry ") and f": {field}: expected" in msg
    index = int(msg.split("entry ")[1].split(" ")[0])
    res = bundle["entry"][index]["resource"]
    assert f"({res['resourceType']} {res['id']})" in msg


def test_not_a_bundle_or_not_json_is_refused(tmp_path):
    with pytest.raises(DataFileNotFoundError):
        read_fhir_bundle(tmp_path / "missing.json")
    bad = tmp_path / "patient.json"
    bad.write_text(json.dumps({"resourceType": "Patient", "id": "x"}))
    with pytest.raises(DataError, match="expected a FHIR Bundle"):
        read_fhir_bundle(bad)
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not JSON"):
        read_fhir_bundle(bad)


def test_the_writer_refuses_ids_fhir_cannot_hold():
    with pytest.raises(DataError, match="not a FHIR id"):
        to_fhir_bundle([CaseRecord(patient=PatientRecord(source_system="x", source_id="a b/c"))])
