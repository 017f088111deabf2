"""The case store on SQLite and PostgreSQL: migrations, idempotent and transactional imports,
identifier lookup, the researcher and clinician views, the analysis frame, PHI at rest."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from medassist.data.case_records import (
    CaseRecord,
    ConditionRecord,
    MedicationRecord,
    NoteRecord,
    ObservationRecord,
    OutcomeRecord,
    PatientRecord,
)
from medassist.data.datasets.cases import load_cases
from medassist.data.io.case_tables import read_case_csv
from medassist.data.io.fhir import read_fhir_bundle, write_fhir_bundle
from medassist.exceptions import DataError
from medassist.store import case_models
from medassist.store.models import Base

NAME, MRN = "Zebediah Quigglesworth", "MRN-99817"
T0 = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


def named_case(sid: str = "pt-1", *, event: int = 1) -> CaseRecord:
    return CaseRecord(
        patient=PatientRecord(source_system="fhir", source_id=sid, mrn=MRN if sid == "pt-1" else None, name=NAME,
                              birth_date=date(1931, 5, 2), sex="male", index_date=T0),
        conditions=(ConditionRecord(code="I214", text="NSTEMI", onset=T0), ConditionRecord(code="E11.9")),
        medications=(MedicationRecord(name="aspirin", code="1191", system="RxNorm", start=T0),),
        observations=(
            ObservationRecord(code="2160-0", system="LOINC", value=1.1, unit="mg/dL", time=datetime(2024, 3, 2, tzinfo=UTC)),
            ObservationRecord(code="2160-0", system="LOINC", value=1.9, unit="mg/dL", time=datetime(2024, 3, 4, tzinfo=UTC)),
            ObservationRecord(code="2160-0", system="LOINC", value=0.7, unit="mg/dL", time=datetime(2024, 3, 3, tzinfo=UTC)),
            ObservationRecord(code="smoking", text="former", category="social-history"),
            ObservationRecord(code="age", value=3.0, category="covariate"),
        ),
        outcomes=(OutcomeRecord(name="death", time_days=40.5, event=event),),
        notes=(NoteRecord(text=f"Mr {NAME.split()[1]} seen on 2024-03-02, call 555-123-4567.", time=T0),),
    )


def test_the_migration_builds_exactly_the_case_tables(case_store):
    db = case_store.db
    assert db.revision() == db.head()  # 0002 made the case tables; later revisions must keep them matching
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert "patients" in Base.metadata.tables and case_models.CasePatient.__tablename__ == "patients"


def test_the_cdisc_pilot_imports_once(case_store, cdisc):
    first = case_store.import_records(cdisc.cases, source="cdisc_pilot", source_kind="sdtm", file_sha256=cdisc.sha256,
                                      skipped=cdisc.skipped)
    assert first.n_added == 254 and first.added["patients"] == 254
    assert first.added["observations"] > 80_000 and first.added["adverse_events"] == 961
    assert first.added["conditions"] == 1817 and first.added["medications"] == 7510
    again = case_store.import_records(cdisc.cases, source="cdisc_pilot", file_sha256=cdisc.sha256)
    assert again.already_imported and again.n_rows == 0
    keyed = case_store.import_records(cdisc.cases, source="cdisc_pilot")  # no file hash: the case keys still hold
    assert keyed.n_added == 0 and keyed.n_existing == 254 and keyed.n_rows == 0
    with case_store.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(case_models.CaseImport)) == 1
    assert case_store.count(dataset="cdisc_pilot") == 254

    frame = case_store.frame(dataset="cdisc_pilot")
    assert frame.shape[0] == 254 and frame.index.name == "case_id"
    assert int(frame["event"].sum()) == 152  # ADTTE: 152 events, 102 censored
    cid = case_store.resolve("01-701-1015")
    lb = pd.read_parquet(Path(cdisc.source) / "lbch.parquet")
    alb = lb[(lb.USUBJID == "01-701-1015") & (lb.LBTESTCD == "ALB")].sort_values("LBDTC")
    assert frame.loc[cid, "ALB"] == alb.LBSTRESN.iloc[-1]  # the latest value
    assert "G30" in frame.loc[cid, "conditions"].split(";")
    assert frame.loc[cid, "ARM"] == "Placebo" and frame.loc[cid, "sex"] == "female" and frame.loc[cid, "age"] == 63


def test_a_bad_record_rolls_back_the_whole_bundle_and_names_it(case_store):
    good = [named_case(f"ok-{i}") for i in range(3)]
    bad = named_case("broken", event=2)
    with pytest.raises(DataError) as e:
        case_store.import_records([*good, bad], source="ward7")
    assert "case #4 (fhir broken)" in str(e.value) and "outcomes[0].event" in str(e.value)
    assert case_store.count() == 0
    bad_obs = CaseRecord(patient=PatientRecord(source_system="x", source_id="y"),
                         observations=(ObservationRecord(code="hr", value=float("nan")),))
    with pytest.raises(DataError, match=r"observations\[0\]\.value: expected a finite number"):
        case_store.import_records([*good, bad_obs], source="ward7")
    with pytest.raises(DataError, match="same patient as case #1"):
        case_store.import_records([good[0], good[0]], source="ward7")
    with case_store.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(case_models.CaseImport)) == 0


def test_identifiers_resolve_and_views_differ(case_store, tmp_path):
    path = write_fhir_bundle([named_case("pt-1"), named_case("pt-2")], tmp_path / "ward.json")
    result = read_fhir_bundle(path)
    case_store.import_records(result.cases, source="ward", source_kind="fhir", file_sha256=result.sha256)
    cid = case_store.resolve("pt-1")
    assert case_store.resolve(MRN) == cid == case_store.resolve(cid) == case_store.resolve("ward:pt-1")
    assert case_store.resolve("pt-2") != cid
    case_store.import_records(load_cases("veteran").cases[:5], source="veteran")
    case_store.import_records(load_cases("pbc").cases[:5], source="pbc")
    with pytest.raises(DataError, match=r"matches 2 cases \(data sets: pbc, veteran\)"):
        case_store.resolve("3")
    with pytest.raises(DataError, match="No stored case"):
        case_store.resolve("nobody")

    researcher = case_store.get_case("pt-1", deidentified=True)
    text = repr(researcher)
    for secret in (NAME, MRN, "pt-1", "1931", "2024-03"):
        assert secret not in text
    assert researcher["age"] == 90  # 92.8 years at the index date; Safe Harbor caps at 90
    assert sorted(o["day"] for o in researcher["observations"] if o["code"] == "2160-0") == pytest.approx(
        [0.5833, 1.5833, 2.5833], abs=1e-3)
    clinician = case_store.get_case(MRN, deidentified=False)
    assert (clinician["name"], clinician["mrn"], clinician["source_id"], clinician["birth_date"]) == (
        NAME, MRN, "pt-1", "1931-05-02")
    assert clinician["conditions"][0]["code"] == "I21.4"  # stored dotted
    assert clinician["observations"][0]["at"].startswith("2024-03-02T00:00")
    note = clinician["notes"][0]["text"]
    assert "Quigglesworth" not in note and "555-123-4567" not in note and "2024-03-02" not in note
    listed = case_store.list_cases(dataset="ward", deidentified=True)
    assert [r["case_id"] for r in listed][:1] == [cid] and "name" not in listed[0]
    assert case_store.list_cases(dataset="ward", deidentified=False)[0]["mrn"] == MRN


def test_the_frame_layout(case_store, tmp_path):
    case_store.import_records([named_case("pt-1"), named_case("pt-2")], source="ward")
    case_store.import_records([CaseRecord(patient=PatientRecord(source_system="x", source_id="bare", sex="female"))],
                              source="ward")
    f = case_store.frame(dataset="ward", deidentified=False)
    assert list(f.columns[:4]) == ["time", "event", "age", "sex"] and list(f.columns[-2:]) == ["conditions", "medications"]
    assert f.index.name == "case_id" and all(isinstance(i, str) for i in f.index)
    assert f["time"].dtype == float and str(f["event"].dtype) == "Int64" and f["2160-0"].dtype == float
    row = f.loc[case_store.resolve("pt-1")]
    assert row["2160-0"] == 1.9  # latest by time, not the last inserted
    assert row["smoking"] == "former" and row["obs_age"] == 3.0  # a clash with 'age' is renamed
    assert row["conditions"] == "E11.9;I21.4" and row["medications"] == "1191"
    assert row["time"] == 40.5 and row["event"] == 1 and row["age"] == pytest.approx(92.83, abs=0.01)
    bare = f.loc[case_store.resolve("bare")]
    assert np.isnan(bare["time"]) and pd.isna(bare["event"]) and bare["conditions"] == "" and np.isnan(bare["2160-0"])
    assert case_store.frame(dataset="ward")["age"].max() == 90  # de-identified view caps ages


def test_tables_and_csv_import(case_store, tmp_path):
    whas = load_cases("whas500")
    s = case_store.import_records(whas.cases, source="whas500", source_kind="table")
    assert s.n_added == 500 and s.added["observations"] > 5000
    f = case_store.frame(dataset="whas500")
    assert f.shape[0] == 500 and int(f["event"].sum()) == 215 and set(f["sex"]) == {"female", "male"}
    assert {"bmi", "hr", "sysbp", "afb"} <= set(f.columns) and f["afb"].dtype == object

    flchain = load_cases("flchain").cases
    assert len(flchain) == 7874 and not any(o.code == "chapter" for o in flchain[0].observations)
    csv = tmp_path / "cohort.csv"
    pd.DataFrame({"pid": ["a1", "a2", "a3"], "days": [10, 20.5, 30], "died": [1, 0, 1], "Age": [50, 61, 70],
                  "sex": ["F", "M", "F"], "stage": ["II", None, "III"], "crp": [3.1, None, 8.0]}).to_csv(csv, index=False)
    r = read_case_csv(csv, id_column="pid", time_column="days", event_column="died")
    case_store.import_records(r.cases, source="cohort", source_kind="csv")
    f = case_store.frame(dataset="cohort")
    row = f.loc[case_store.resolve("a2")]
    assert (row["time"], row["event"], row["age"], row["sex"]) == (20.5, 0, 61, "male")
    assert row["stage"] is None and np.isnan(row["crp"])
    csv.write_text("pid,days,died\na1,10,1\na2,,0\n")
    with pytest.raises(DataError, match=r"row 2 \(ID a2\): column 'days'"):
        read_case_csv(csv, id_column="pid", time_column="days", event_column="died")
    csv.write_text("pid,days,died\na1,10,1\na2,5,\n")
    with pytest.raises(DataError, match="row 2: column 'died'.*not assumed censored"):
        read_case_csv(csv, id_column="pid", time_column="days", event_column="died")


def test_add_note_deidentifies_before_storing(case_store):
    case_store.import_records([named_case("pt-1")], source="ward")
    n = case_store.add_note("pt-1", "Zebediah came in on 2024-03-09 with his daughter.", kind="discharge")
    assert n >= 2
    notes = case_store.get_case("pt-1", deidentified=False)["notes"]
    assert len(notes) == 2 and "Zebediah" not in notes[1]["text"] and "2024-03-09" not in notes[1]["text"]
    assert notes[1]["kind"] == "discharge"


def test_phi_is_not_in_plain_text_in_the_database(tmp_path, case_db_url, case_store):
    case_store.import_records([named_case("pt-1")], source="ward")
    case_store.add_note("pt-1", f"{NAME} is doing well.")
    if case_db_url.startswith("sqlite"):
        case_store.db.dispose()
        path = Path(case_db_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))  # the file and its WAL
    else:  # every stored value of the case tables, as PostgreSQL prints it
        with case_store.db.engine.connect() as conn:
            raw = "".join(conn.exec_driver_sql(f"SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t").scalar()
                          for table in ("imports", "patients", *(m.__tablename__ for m in case_models.CHILD_TABLES.values()))
                          ).encode()
    assert b"aspirin" in raw  # the stored content is readable here: the checks below can fail
    for secret in (NAME, "Quigglesworth", MRN, "pt-1", "1931-05-02", "2024-03-01"):
        assert secret.encode() not in raw


def test_the_queries_the_service_asks_of_the_store(case_store, tmp_path):
    path = write_fhir_bundle([named_case("pt-1"), named_case("pt-2")], tmp_path / "ward.json")
    result = read_fhir_bundle(path)
    assert case_store.revision("ward") == (0, 0)
    case_store.import_records(result.cases, source="ward", source_kind="fhir", file_sha256=result.sha256)
    n, last = case_store.revision("ward")
    assert n == 2 and last >= 1
    cid = case_store.resolve("pt-1")
    assert case_store.has_case(cid) and not case_store.has_case("c" + "0" * 16)
    assert case_store.dataset_of(cid) == "ward" and case_store.dataset_of("c" + "0" * 16) is None
    total, ids = case_store.search_conditions("i21", dataset="ward")  # a code prefix, any case
    assert total == 2 and cid in ids
    assert case_store.search_conditions("I2_", dataset="ward") == (0, [])  # '_' is no wildcard
    assert case_store.search_conditions("I21", dataset="elsewhere") == (0, [])
    assert case_store.search_conditions("I21", dataset="ward", limit=1, offset=1) == (2, ids[1:])
    rows = case_store.summaries([ids[1], ids[0], "c" + "0" * 16])
    assert [r["case_id"] for r in rows] == [ids[1], ids[0]]
    assert rows[0]["counts"]["conditions"] >= 1 and rows[0]["age"] == 90 and "name" not in rows[0]
