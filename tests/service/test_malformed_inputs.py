"""A corpus of malformed inputs against the prediction routes: each gets a 4xx with a message
(never a 500) and nothing is written (no prediction, no audit entry)."""

from __future__ import annotations

import json
import pickle
import struct

import pytest

from medassist.store.models import AuditEntry, Prediction
from medassist.testing.server import csrf_of, example_csv, example_row

MAX_UPLOAD = 64 * 1024
SITE_SETTINGS = {"max_upload_bytes": MAX_UPLOAD, "max_rows_per_request": 50}

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 200


def _dicom(truncate: int | None = None) -> bytes:
    meta_uid = b"1.2.840.10008.1.2.1\x00"
    element = struct.pack("<HH", 0x0002, 0x0010) + b"UI" + struct.pack("<H", len(meta_uid)) + meta_uid
    group_len = struct.pack("<HH", 0x0002, 0x0000) + b"UL" + struct.pack("<HI", 4, len(element))
    pixels = struct.pack("<HH", 0x7FE0, 0x0010) + b"OW\x00\x00" + struct.pack("<I", 4096) + b"\x01" * 4096
    data = b"\x00" * 128 + b"DICM" + group_len + element + pixels
    return data[:truncate] if truncate else data


def _json_cases(row: dict) -> list[tuple[str, bytes | str]]:
    first_num = "age"
    first_cat = "sex"
    other = {k: v for k, v in row.items() if k not in (first_num, first_cat)}
    return [
        ("truncated JSON", '{"row": {"age": 61,'),
        ("not JSON", "age=61&sex=Male"),
        ("JSON null", "null"),
        ("a list, not an object", "[]"),
        ("row is a string", '{"row": "61, Male"}'),
        ("empty rows", '{"rows": []}'),
        ("both row and rows", json.dumps({"row": row, "rows": [row]})),
        ("neither row nor rows", '{"explain": true}'),
        ("unknown field", json.dumps({"row": row, "drop": "table"})),
        ("nested object value", json.dumps({"row": {**row, first_num: {"$gt": 1}}})),
        ("NaN", json.dumps({"row": {**row, first_num: float("nan")}})),
        ("Infinity", '{"row": ' + json.dumps({**other, first_cat: "Male"})[:-1] + ', "age": Infinity}}'),
        ("SQL in a numeric field", json.dumps({"row": {**row, first_num: "61; DROP TABLE users;--"}})),
        ("SQL in a category", json.dumps({"row": {**row, first_cat: "Male' OR '1'='1"}})),
        ("HTML in a category", json.dumps({"row": {**row, first_cat: "<script>alert(1)</script>"}})),
        ("HTML in a column name", json.dumps({"row": {**row, "<img src=x onerror=alert(1)>": 1}})),
        ("a column missing", json.dumps({"row": other})),
        ("too many rows", json.dumps({"rows": [row] * 51})),
        ("top_k out of range", json.dumps({"row": row, "top_k": 1000})),
        ("huge category text", json.dumps({"row": {**row, first_cat: "M" * 100_000}})),
    ]


def _counts(site) -> tuple[int, int]:
    return site.count(Prediction), site.count(AuditEntry)


def _assert_refused(r, before, site, what):
    assert 400 <= r.status_code < 500, (what, r.status_code, r.text[:300])
    if r.headers.get("content-type", "").startswith("application/json"):
        assert r.json()["detail"], what
    else:
        assert 'class="alert error"' in r.text, what
    assert _counts(site) == before, f"{what}: something was written"


def test_malformed_json_is_refused_with_a_message_and_nothing_written(site, tiny_bundle):
    api = site.api("clinician")
    url = f"/api/v1/diagnosis/{site.bundle_id}/predict"
    before = _counts(site)
    for what, body in _json_cases(example_row(tiny_bundle)):
        r = api.post(url, content=body, headers={"Content-Type": "application/json"})
        _assert_refused(r, before, site, what)
    # The right input then works and writes exactly one prediction and one audit entry.
    r = api.post(url, json={"row": example_row(tiny_bundle)})
    assert r.status_code == 200
    assert _counts(site) == (before[0] + 1, before[1] + 1)


def test_sql_injection_text_is_refused_naming_the_column(site, tiny_bundle):
    row = {**example_row(tiny_bundle), "sex": "Male' OR '1'='1"}
    r = site.api("clinician").post(f"/api/v1/diagnosis/{site.bundle_id}/predict", json={"row": row})
    assert r.status_code == 422
    assert "column 'sex'" in r.json()["detail"] and "Female, Male" in r.json()["detail"]


def _upload_cases(tiny_bundle) -> list[tuple[str, str, bytes]]:
    good = example_csv(tiny_bundle)
    header = good.split(b"\n")[0]
    return [
        ("a DICOM sent as CSV", "scan.dcm", _dicom()),
        ("a truncated DICOM", "scan.dcm", _dicom(truncate=300)),
        ("a PNG renamed .dcm", "scan.dcm", PNG),
        ("a PNG renamed .csv", "patients.csv", PNG),
        ("a pickle renamed .csv", "patients.csv", pickle.dumps({"a": 1})),
        ("NumPy .npy", "patients.csv", b"\x93NUMPY\x01\x00" + b"\x00" * 100),
        ("a ZIP/npz", "patients.npz", b"PK\x03\x04" + b"\x00" * 100),
        ("binary noise", "patients.csv", bytes(range(256)) * 4),
        ("Latin-1, not UTF-8", "patients.csv", "age,sex\n61,Männlich\n".encode("latin-1")),
        ("empty file", "patients.csv", b""),
        ("header only", "patients.csv", header + b"\n"),
        ("columns missing", "patients.csv", b"age,sex\n61,Male\n"),
        ("text in a numeric column", "patients.csv", good.replace(good.split(b"\n")[1], good.split(b"\n")[1].replace(b",", b",abc,", 1), 1)),
        ("SQL in a category cell", "patients.csv", good.replace(b"Female", b"Female'; DROP TABLE users;--", 1) if b"Female" in good else good.replace(b"Male", b"Male'; DROP TABLE users;--", 1)),
        ("too many rows", "patients.csv", header + b"\n" + b"\n".join(good.split(b"\n")[1:2] * 60) + b"\n"),
        ("oversized upload", "patients.csv", good + b"#" * (MAX_UPLOAD + 10)),
        ("path traversal in the name", "../../etc/passwd.csv", good),
        ("a backslash path", "..\\..\\boot.ini", good),
        ("a name that is only '..'", "..", good),
    ]


@pytest.mark.parametrize("surface", ["api", "page"])
def test_malformed_uploads_are_refused_with_a_message_and_nothing_written(site, tiny_bundle, surface):
    if surface == "api":
        client, url, extra = site.api("clinician"), f"/api/v1/diagnosis/{site.bundle_id}/predict-file", {}
    else:
        client, url = site.browser("clinician"), f"/diagnosis/{site.bundle_id}/predict-file"
        extra = {"csrf_token": site.csrf("clinician")}
    before = _counts(site)
    for what, name, data in _upload_cases(tiny_bundle):
        r = client.post(url, files={"file": (name, data, "text/csv")}, data=extra)
        _assert_refused(r, before, site, what)
    r = client.post(url, files={"file": ("patients.csv", example_csv(tiny_bundle), "text/csv")}, data=extra)
    assert r.status_code == 200
    assert _counts(site) == (before[0] + 1, before[1] + 1)


def test_specific_upload_messages(site):
    api = site.api("clinician")
    url = f"/api/v1/diagnosis/{site.bundle_id}/predict-file"
    r = api.post(url, files={"file": ("scan.dcm", PNG, "application/dicom")})
    assert r.status_code == 415 and "not (no 'DICM' marker at byte 128)" in r.json()["detail"]
    r = api.post(url, files={"file": ("x.csv", pickle.dumps([1]), "text/csv")})
    assert r.status_code == 415 and "never loads pickled data" in r.json()["detail"]
    r = api.post(url, files={"file": ("../x.csv", b"a,b\n1,2\n", "text/csv")})
    assert r.status_code == 400 and "not a plain file name" in r.json()["detail"]
    r = api.post(url, files={"file": ("x.csv", b"a" * (MAX_UPLOAD + 1), "text/csv")})
    assert r.status_code == 413


def test_a_body_over_the_request_limit_is_refused_before_it_is_read(site):
    r = site.api("clinician").post(f"/api/v1/diagnosis/{site.bundle_id}/predict",
                                   content=b'{"row": {"a": "' + b"x" * (MAX_UPLOAD + 128 * 1024) + b'"}}',
                                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_malformed_form_values_are_refused_on_the_page(site, tiny_bundle):
    client = site.browser("clinician")
    page = client.get(f"/diagnosis/{site.bundle_id}")
    csrf = csrf_of(page.text)
    before = _counts(site)
    names = {c: i for i, c in enumerate(example_row(tiny_bundle))}
    for what, data in [
        ("text in a number field", {f"c{names['age']}": "sixty"}),
        ("SQL in a number field", {f"c{names['age']}": "1 OR 1=1"}),
        ("a value not offered in a select", {f"c{names['sex']}": "<b>Male</b>"}),
        ("infinity", {f"c{names['age']}": "inf"}),
    ]:
        for hx in ({}, {"HX-Request": "true"}):
            r = client.post(f"/diagnosis/{site.bundle_id}/predict", data={"csrf_token": csrf, **data}, headers=hx)
            _assert_refused(r, before, site, what)
            assert "<b>Male</b>" not in r.text  # never echoed unescaped
    r = client.get("/diagnosis/not-a-bundle-id")
    assert r.status_code == 422
    r = client.get("/diagnosis/0123456789abcdef")
    assert r.status_code == 404 and "No diagnosis model bundle" in r.text


# --------------------------------------------------------------------------------------------
# The imaging, treatment and screening routes

SITE_ASSISTANTS = True


def _png_claiming(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + struct.pack(">II", width, height) + b"\x08\x00\x00\x00\x00" + b"\x00" * 64


def _image_cases() -> list[tuple[str, str, bytes]]:
    import gzip

    from medassist.testing.assistants import example_png

    return [
        ("a truncated DICOM", "scan.dcm", _dicom(truncate=300)),
        ("a PNG renamed .dcm", "scan.dcm", example_png()),
        ("a DICOM without pixel data", "scan.dcm", _dicom()[:_dicom().index(b"\xe0\x7f")]),
        ("a damaged PNG", "chest.png", PNG),
        ("a PNG claiming 100000×100000 pixels", "chest.png", _png_claiming(100_000, 100_000)),
        ("CSV text", "chest.png", b"age,sex\n61,Male\n"),
        ("CSV text without a name hint", "scan", b"age,sex\n61,Male\n"),
        ("a pickle", "chest.png", pickle.dumps({"a": 1})),
        ("a gzip that is not .nii.gz", "scan.gz", gzip.compress(b"hello")),
        ("a .nii.gz holding text", "vol.nii.gz", gzip.compress(b"not a nifti header" * 40)),
        ("a .nii.gz that is not gzip inside", "vol.nii.gz", b"\x1f\x8b" + b"\x00" * 50),
        ("a .nii that is too short", "vol.nii", b"\x00" * 100),
        ("empty file", "chest.png", b""),
        ("oversized upload", "chest.png", example_png() + b"\x00" * (MAX_UPLOAD + 10)),
        ("path traversal in the name", "../../etc/chest.png", example_png()),
    ]


@pytest.mark.parametrize("surface", ["api", "page"])
def test_malformed_images_are_refused_and_nothing_written(site, surface):
    bid = site.bundle_ids["diagnosis-image"]
    if surface == "api":
        client, url, extra = site.api("clinician"), f"/api/v1/imaging/{bid}/predict", {}
    else:
        client, url, extra = site.browser("clinician"), f"/imaging/{bid}/predict", {"csrf_token": site.csrf("clinician")}
    before = _counts(site)
    for what, name, data in _image_cases():
        r = client.post(url, files={"file": (name, data, "application/octet-stream")}, data=extra)
        _assert_refused(r, before, site, what)
    r = client.post(url, files={"file": ("scan.dcm", PNG, "application/dicom")}, data=extra)
    assert r.status_code == 415 and "DICM" in r.text and "marker at byte 128" in r.text


def test_malformed_treatment_requests_are_refused_and_nothing_written(site, assistant_bundles):
    from medassist.testing.assistants import example_patient

    api = site.api("clinician")
    url = f"/api/v1/treatment/{site.bundle_ids['treatment']}/advise"
    row = example_patient(assistant_bundles["treatment"])
    other = {k: v for k, v in row.items() if k != "age"}
    before = _counts(site)
    for what, body in [
        ("truncated JSON", '{"patient": {"age": 61,'),
        ("not JSON", "age=61"),
        ("a list", "[]"),
        ("both patient and patients", json.dumps({"patient": row, "patients": [row]})),
        ("neither", '{"explain": false}'),
        ("unknown body field", json.dumps({"patient": row, "arm": "Obs"})),
        ("unknown covariate", json.dumps({"patient": {**row, "rx": "Obs"}})),
        ("a covariate missing", json.dumps({"patient": other})),
        ("text in a numeric field", json.dumps({"patient": {**row, "age": "sixty"}})),
        ("SQL in a numeric field", json.dumps({"patient": {**row, "age": "1; DROP TABLE users;--"}})),
        ("HTML as a field name", json.dumps({"patient": {**row, "<script>alert(1)</script>": 1}})),
        ("nested object", json.dumps({"patient": {**row, "age": {"$gt": 1}}})),
        ("NaN", json.dumps({"patient": {**row, "age": float("nan")}})),
        ("too many patients", json.dumps({"patients": [row] * 51})),
        ("top_k out of range", json.dumps({"patient": row, "top_k": 99})),
    ]:
        r = api.post(url, content=body, headers={"Content-Type": "application/json"})
        _assert_refused(r, before, site, what)


def test_malformed_screening_requests_are_refused_and_nothing_written(site):
    api = site.api("clinician")
    bid = site.bundle_ids["screening"]
    before = _counts(site)
    for what, body in [
        ("bad SMILES only", json.dumps({"smiles": ["C1CC", "xyz(", "c1cccc"]})),
        ("SQL injection as SMILES", json.dumps({"smiles": ["'; DROP TABLE users;--", "1 OR 1=1"]})),
        ("HTML as SMILES", json.dumps({"smiles": ["<script>alert(1)</script>"]})),
        ("an empty list", '{"smiles": []}'),
        ("an empty SMILES", '{"smiles": [""]}'),
        ("a number, not a SMILES", '{"smiles": [42]}'),
        ("an unknown filter", json.dumps({"smiles": ["CCO"], "filters": ["lipinsky"]})),
        ("an unknown rank", json.dumps({"smiles": ["CCO"], "rank": "best"})),
        ("unknown field", json.dumps({"smiles": ["CCO"], "top": 5})),
        ("names that do not match", json.dumps({"smiles": ["CCO", "CCN"], "names": ["a"]})),
        ("too many molecules", json.dumps({"smiles": ["CCO"] * 201})),
        ("truncated JSON", '{"smiles": ["CCO",'),
    ]:
        r = api.post(f"/api/v1/screening/{bid}/predict", content=body, headers={"Content-Type": "application/json"})
        _assert_refused(r, before, site, what)
        assert r.headers["content-type"].startswith("application/json")  # an echoed string is data, never markup
    for what, name, data, params in [
        ("a PNG renamed .smi", "lib.smi", PNG, {}),
        ("a PNG renamed .csv", "lib.csv", PNG, {}),
        ("binary noise", "lib.smi", bytes(range(256)) * 4, {}),
        ("a pickle", "lib.smi", pickle.dumps(["CCO"]), {}),
        ("a CSV without a SMILES column", "lib.csv", b"name,value\nethanol,1\n", {}),
        ("only bad SMILES", "lib.smi", b"C1CC\nxyz(\n'; DROP TABLE users;--\n", {}),
        ("HTML injection rows", "lib.smi", b"<img src=x onerror=alert(1)>\n", {}),
        ("an unknown file type", "lib.xyz", b"CCO\n", {}),
        ("comments only", "lib.smi", b"# nothing here\n", {}),
        ("empty file", "lib.smi", b"", {}),
        ("an unknown filter", "lib.smi", b"CCO\n", {"filters": "lipinsky"}),
        ("top out of range", "lib.smi", b"CCO\n", {"top": 0}),
        ("oversized upload", "lib.smi", b"CCO\n" * (MAX_UPLOAD // 4 + 10), {}),
        ("path traversal in the name", "../lib.smi", b"CCO\n", {}),
    ]:
        r = api.post(f"/api/v1/screening/{bid}/jobs", files={"file": (name, data, "text/plain")}, params=params)
        _assert_refused(r, before, site, what)
        assert r.headers["content-type"].startswith("application/json")
    assert site.app.state.ctx.state.get("screening", {}).get("jobs") is None or not site.app.state.ctx.state["screening"]["jobs"].jobs


def test_malformed_research_requests_are_refused_and_nothing_written(site):
    api = site.api("researcher")
    before = _counts(site)
    bundles = sorted(site.settings.bundles_dir.iterdir()) if site.settings.bundles_dir.is_dir() else []
    for what, body in [
        ("truncated JSON", '{"dataset": "wdbc",'),
        ("a list", "[]"),
        ("SQL as a data set name", json.dumps({"dataset": "wdbc'; DROP TABLE users;--"})),
        ("HTML as a data set name", json.dumps({"dataset": "<script>alert(1)</script>"})),
        ("a server path as a data set", json.dumps({"dataset": "/etc/passwd"})),
        ("a data set name of 100 kB", json.dumps({"dataset": "w" * 100_000})),
        ("a data set of another assistant", json.dumps({"dataset": "actg175"})),
        ("an unknown size", json.dumps({"dataset": "wdbc", "size": "huge"})),
        ("a negative seed", json.dumps({"dataset": "wdbc", "seed": -1})),
        ("zero epochs", json.dumps({"dataset": "wdbc", "epochs": 0})),
        ("NaN epsilon", '{"dataset": "wdbc", "dp_epsilon": NaN}'),
        ("a negative epsilon", json.dumps({"dataset": "wdbc", "dp_epsilon": -1})),
        ("an uploaded file instead", json.dumps({"dataset": "wdbc", "data_file": "patients.csv"})),
    ]:
        r = api.post("/api/v1/research/train", content=body, headers={"Content-Type": "application/json"})
        _assert_refused(r, before, site, what)
    for what, body in [
        ("a bundle id that is a path", json.dumps({"bundle_id": "../../etc/passwd"})),
        ("a bundle that does not exist", json.dumps({"bundle_id": "0" * 16})),
        ("a bundle of another assistant", json.dumps({"bundle_id": site.bundle_ids["screening"]})),
        ("unknown rows", json.dumps({"bundle_id": site.bundle_id, "rows": "some"})),
        ("too few bootstrap resamples", json.dumps({"bundle_id": site.bundle_id, "n_boot": 5})),
        ("an unknown data set", json.dumps({"bundle_id": site.bundle_id, "dataset": "heart"})),
    ]:
        r = api.post("/api/v1/research/evaluate", content=body, headers={"Content-Type": "application/json"})
        _assert_refused(r, before, site, what)
    csrf = site.csrf("researcher")  # signing in is audited
    before = _counts(site)
    r = site.browser("researcher").post("/research/train", data={"csrf_token": csrf, "dataset": "wdbc", "epochs": "ten"})
    _assert_refused(r, before, site, "text in the epochs field")
    assert "epochs" in r.text
    assert (sorted(site.settings.bundles_dir.iterdir()) if site.settings.bundles_dir.is_dir() else []) == bundles
    assert not site.app.state.ctx.state.get("research", {}).get("jobs") or not site.app.state.ctx.state["research"]["jobs"].jobs


def test_malformed_cases_requests_are_refused_and_nothing_written(site):
    from medassist.data.datasets.cases import load_cases
    from medassist.privacy.crypto import IdentifierHasher
    from medassist.store.case_models import CasePatient
    from medassist.store.cases import CaseStore

    ctx = site.app.state.ctx
    store = CaseStore(db=ctx.db, cipher=ctx.cipher, hasher=IdentifierHasher.from_settings(site.settings))
    store.import_records(load_cases("veteran").cases, source="veteran", source_kind="table")
    case_id = store.list_cases(limit=1)[0]["case_id"]
    api = site.api("clinician")
    before = _counts(site)
    for what, path, params in [
        ("SQL in the filter", "/api/v1/cases/cohort", {"where": "age > 60; DROP TABLE patients;--"}),
        ("a quote-breaking filter", "/api/v1/cases/cohort", {"where": "sex == 'female' OR '1'='1"}),
        ("Python in the filter", "/api/v1/cases/cohort", {"where": "__import__('os').system('id')"}),
        ("HTML in the filter", "/api/v1/cases/cohort", {"where": "<script>alert(1)</script>"}),
        ("a filter of 5,000 characters", "/api/v1/cases/cohort", {"where": "age > 1 and " * 420}),
        ("SQL as the group column", "/api/v1/cases/cohort", {"by": "sex; DROP TABLE patients"}),
        ("a path as the data set", "/api/v1/cases/cohort", {"dataset": "../../etc/passwd"}),
        ("SQL as the data set", "/api/v1/cases/search", {"dataset": "veteran' OR '1'='1"}),
        ("a query of 1,000 characters", "/api/v1/cases/search", {"q": "I21" * 333}),
        ("a negative offset", "/api/v1/cases/search", {"offset": -1}),
        ("an unknown parameter", "/api/v1/cases/search", {"q": "I21", "sql": "1"}),
        ("SQL as a case reference", "/api/v1/cases/x' OR '1'='1", {}),
        ("a case that does not exist", "/api/v1/cases/c0000000000000000", {}),
        ("k out of range", f"/api/v1/cases/{case_id}/similar", {"k": 100_000}),
        ("k as text", f"/api/v1/cases/{case_id}/similar", {"k": "ten"}),
        ("identified as a word", f"/api/v1/cases/{case_id}", {"identified": "maybe"}),
    ]:
        r = api.get(path, params=params)
        _assert_refused(r, before, site, what)
    for what, body in [
        ("truncated JSON", '{"text": "No evidence of'),
        ("a list", "[]"),
        ("an empty note", json.dumps({"text": ""})),
        ("a number as the note", json.dumps({"text": 5})),
        ("a note of 100 kB", json.dumps({"text": "chest pain " * 9_000})),
        ("a field to store it", json.dumps({"text": "chest pain", "store": True})),
        ("top out of range", json.dumps({"text": "chest pain", "top": 0})),
    ]:
        r = api.post("/api/v1/cases/code", content=body, headers={"Content-Type": "application/json"})
        _assert_refused(r, before, site, what)
    # injection strings in a search are searched for as text: nothing matches, nothing changes
    n_patients = site.count(CasePatient)
    for q in ("' OR 1=1 --", "%'; DROP TABLE patients;--", "<script>alert(1)</script>"):
        r = api.get("/api/v1/cases/search", params={"q": q})
        assert r.status_code == 200 and r.json()["total"] == 0, q
    assert site.count(CasePatient) == n_patients == 137
    csrf = site.csrf("clinician")  # signing in is audited
    before = _counts(site)
    r = site.browser("clinician").post("/cases/code", data={"csrf_token": csrf, "text": "chest pain " * 9_000})
    _assert_refused(r, before, site, "a note of 100 kB in the form")
    r = site.browser("clinician").get("/cases/cohort", params={"dataset": "veteran", "where": "age >> 1"})
    _assert_refused(r, before, site, "a bad filter on the cohort page")
