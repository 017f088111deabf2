"""Upload checks without a server: type sniffing, DICOM structure, names, pickles."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pytest
from fastapi import HTTPException

from medassist.service.uploads import FileKind, check_upload, safe_filename, sniff

LIMIT = 1 << 20


def test_sniffing_reads_the_bytes_not_the_name():
    assert sniff(b"\x00" * 128 + b"DICM" + b"\x00" * 8) is FileKind.DICOM
    assert sniff(b"\x89PNG\r\n\x1a\nrest") is FileKind.PNG
    assert sniff(b"\xff\xd8\xff\xe0") is FileKind.JPEG
    assert sniff(pickle.dumps({"x": 1})) is FileKind.PICKLE
    assert sniff(b"PK\x03\x04zip") is FileKind.ZIP
    assert sniff(b"age,sex\n61,M\n") is FileKind.CSV
    assert sniff("âge;sexe\n61;H\n".encode()) is FileKind.CSV
    assert sniff("âge\n".encode("latin-1")) is FileKind.BINARY
    assert sniff(b"") is FileKind.EMPTY


@pytest.mark.parametrize("name", ["../x.csv", "a/b.csv", "..\\x.csv", "x\x00.csv", "x\n.csv", "..", "", "a" * 300])
def test_names_with_paths_or_control_characters_are_refused(name):
    with pytest.raises(HTTPException) as e:
        safe_filename(name if name else "..")
    assert e.value.status_code == 400


def test_plain_names_pass():
    assert safe_filename("visit 2024-03 (ward 7).csv") == "visit 2024-03 (ward 7).csv"
    assert safe_filename(None) == "upload"


def _refused(data: bytes, name: str, expected: set[FileKind]) -> HTTPException:
    with pytest.raises(HTTPException) as e:
        check_upload(data, filename=name, expected=expected, max_bytes=LIMIT)
    return e.value


def test_real_dicom_files_pass_and_truncated_ones_are_refused():
    pydicom_data = pytest.importorskip("pydicom.data")
    path = Path(pydicom_data.get_testdata_file("CT_small.dcm"))
    data = path.read_bytes()
    up = check_upload(data, filename="ct.dcm", expected={FileKind.DICOM}, max_bytes=LIMIT)
    assert up.kind is FileKind.DICOM and len(up.sha256) == 64
    for cut in (140, 300, 1000, len(data) // 2, len(data) - 7):
        e = _refused(data[:cut], "ct.dcm", {FileKind.DICOM})
        assert e.status_code == 422 and "not a readable DICOM file" in e.detail, cut
    # pydicom's own deliberately truncated test files
    for name in ("MR_truncated.dcm", "rtplan_truncated.dcm"):
        e = _refused(Path(pydicom_data.get_testdata_file(name)).read_bytes(), name, {FileKind.DICOM})
        assert "truncated" in e.detail


def test_every_pydicom_test_file_that_pydicom_reads_passes():
    pydicom = pytest.importorskip("pydicom")
    folder = Path(pytest.importorskip("pydicom.data").get_testdata_file("CT_small.dcm")).parent
    checked = 0
    for path in sorted(folder.glob("*.dcm")):
        data = path.read_bytes()
        if sniff(data) is not FileKind.DICOM or "truncated" in path.name:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                pydicom.dcmread(path)
            except Exception:  # files pydicom itself cannot read are not the point here
                continue
        check_upload(data, filename=path.name, expected={FileKind.DICOM}, max_bytes=1 << 26)
        checked += 1
    assert checked > 20


def test_wrong_kinds_and_pickles_are_refused_with_messages():
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    e = _refused(png, "scan.dcm", {FileKind.DICOM})
    assert e.status_code == 415 and "DICM" in e.detail and "PNG" in e.detail
    e = _refused(pickle.dumps([1, 2]), "weights.bin", {FileKind.CSV, FileKind.DICOM})
    assert e.status_code == 415 and "never loads pickled data" in e.detail
    e = _refused(b"\x93NUMPY\x01\x00", "a.npy", {FileKind.CSV})
    assert e.status_code == 415
    e = _refused(b"age\n1\n", "x.csv", {FileKind.DICOM})
    assert e.status_code == 415 and "accepts DICOM" in e.detail
    e = _refused(b"x" * (LIMIT + 1), "x.csv", {FileKind.CSV})
    assert e.status_code == 413
