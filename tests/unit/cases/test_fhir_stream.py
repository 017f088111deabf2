"""FHIR read as a stream: NDJSON bulk exports, deep nesting refused in one line, bounded memory,
and imports that stay idempotent and transactional."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from medassist.data.io.fhir import read_fhir_bundle, write_fhir_bundle, write_fhir_ndjson
from medassist.data.io.fhir_stream import open_fhir
from medassist.data.synthetic import synthetic_cases
from medassist.exceptions import DataError
from medassist.store.case_models import CaseImport, CasePatient


@pytest.fixture(scope="module")
def cases():
    return tuple(synthetic_cases(n_patients=40, seed=1))


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_deeply_nested_json_is_one_data_error_naming_the_file(tmp_path, depth):
    bundle = tmp_path / "deep.json"
    bundle.write_text('{"resourceType": "Bundle", "entry": [{"resource": ' + "[" * depth + "]" * depth + "}]}")
    with pytest.raises(DataError) as e:
        read_fhir_bundle(bundle)
    msg = str(e.value)
    assert msg.startswith(f"{bundle}: entry 0: JSON nested too deeply") and "\n" not in msg
    top = tmp_path / "top.json"
    top.write_text("[" * depth + "]" * depth)
    with pytest.raises(DataError, match=r"top\.json: expected a FHIR Bundle"):
        read_fhir_bundle(top)
    lines = tmp_path / "Observation.ndjson"
    lines.write_text('{"resourceType": "Patient", "id": "p1"}\n' + '{"a": ' * depth + "1" + "}" * depth + "\n")
    with pytest.raises(DataError, match=r"Observation\.ndjson: line 2: JSON nested too deeply"):
        read_fhir_bundle(lines)


def test_an_ndjson_export_reads_as_the_same_cases_as_a_bundle(tmp_path, cases):
    bundle = write_fhir_bundle(cases, tmp_path / "ward.json")
    counts = write_fhir_ndjson(cases, tmp_path / "export")
    assert counts["Patient"] == len(cases) and counts["Observation"] > len(cases)
    one_file = tmp_path / "all.ndjson"  # a single NDJSON file holding every type, Patients last
    one_file.write_text("".join(f.read_text() for f in sorted((tmp_path / "export").glob("*.ndjson"), reverse=True)))
    from_bundle = read_fhir_bundle(bundle)
    assert from_bundle.cases == cases
    for path in (tmp_path / "export", one_file):
        with open_fhir(path) as src:
            assert src.n_cases == len(cases)
            assert tuple(src.cases()) == cases, path
            assert len(src.sha256) == 64 and dict(src.skipped) == {}


def test_an_export_imports_like_the_bundle_idempotent_and_whole(tmp_path, cases, case_store, monkeypatch):
    write_fhir_ndjson(cases, tmp_path / "export")
    bundle = write_fhir_bundle(cases, tmp_path / "ward.json")
    with open_fhir(tmp_path / "export") as src:
        first = case_store.import_records(src.cases(), source="export", source_kind="fhir", total=src.n_cases,
                                          file_sha256=src.sha256, skipped=src.skipped)
    assert first.n_added == len(cases) and first.n_cases == len(cases)
    with open_fhir(tmp_path / "export") as src:
        again = case_store.import_records(src.cases(), source="export", source_kind="fhir", file_sha256=src.sha256)
    assert again.already_imported and again.n_rows == 0
    result = read_fhir_bundle(bundle)
    via_bundle = case_store.import_records(result.cases, source="ward", source_kind="fhir", file_sha256=result.sha256)
    assert via_bundle.added == first.added
    a = case_store.frame(dataset="export").drop(columns=["case_id"], errors="ignore").reset_index(drop=True)
    b = case_store.frame(dataset="ward").drop(columns=["case_id"], errors="ignore").reset_index(drop=True)
    assert a.equals(b)

    # A bad resource near the end, after several chunks were written in the import's transaction:
    # the error names file and line, and nothing of it stays.
    monkeypatch.setattr("medassist.store.cases._CHUNK", 7)
    bad = tmp_path / "bad"
    write_fhir_ndjson(synthetic_cases(n_patients=40, seed=2, start=1000, notes=False), bad)
    obs = (bad / "Observation.ndjson").read_text().splitlines()
    broken = json.loads(obs[-3])
    broken["valueQuantity"]["value"] = "high"
    obs[-3] = json.dumps(broken)
    (bad / "Observation.ndjson").write_text("\n".join(obs) + "\n")
    with case_store.db.session() as s:
        before = s.query(CasePatient).count()
    with open_fhir(bad) as src, pytest.raises(DataError) as e:
        case_store.import_records(src.cases(), source="bad", source_kind="fhir", file_sha256=src.sha256)
    assert f"Observation.ndjson: line {len(obs) - 2} (Observation {broken['id']}): valueQuantity.value: expected" in str(e.value)
    with case_store.db.session() as s:
        assert s.query(CasePatient).count() == before
        assert s.query(CaseImport).filter(CaseImport.dataset == "bad").count() == 0


def test_a_dangling_reference_or_a_repeated_patient_is_named(tmp_path):
    path = tmp_path / "Mixed.ndjson"
    path.write_text('{"resourceType": "Patient", "id": "p1"}\n\n'
                    '{"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p2"}, '
                    '"code": {"coding": [{"code": "x"}]}, "valueQuantity": {"value": 1}}\n')
    with pytest.raises(DataError, match=r"Mixed\.ndjson: line 3 \(Observation o1\): subject\.reference: expected a "
                                        r"Patient of this bundle, got 'Patient/p2'"):
        read_fhir_bundle(path)
    path.write_text('{"resourceType": "Patient", "id": "p1"}\n{"resourceType": "Patient", "id": "p1"}\n')
    with pytest.raises(DataError, match=r"line 2 \(Patient p1\): id: expected a Patient id unique"):
        read_fhir_bundle(path)
    path.write_text('{"resourceType": "Patient", "id": "p1"}\n{"resourceType": "Patient", "id": \n')
    with pytest.raises(DataError, match=r"Mixed\.ndjson: line 2: not JSON"):
        read_fhir_bundle(path)


def _peak_heap_reading(folder) -> int:
    tracemalloc.start()
    try:
        with open_fhir(folder) as src:
            assert sum(1 for _ in src.cases()) == src.n_cases
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_a_large_export_holds_one_case_at_a_time(tmp_path):
    """Four times the patients (~13 MB of NDJSON): the peak Python heap does not grow with the file."""
    small, large = tmp_path / "small", tmp_path / "large"
    write_fhir_ndjson(synthetic_cases(n_patients=500, seed=3), small)
    write_fhir_ndjson(synthetic_cases(n_patients=2_000, seed=3), large)
    size = sum(f.stat().st_size for f in large.glob("*.ndjson"))
    assert size > 10 * 2**20
    peak_small, peak_large = _peak_heap_reading(small), _peak_heap_reading(large)
    assert peak_large < 1.3 * peak_small + 2**20, (peak_small, peak_large)
    assert peak_large < size / 2
