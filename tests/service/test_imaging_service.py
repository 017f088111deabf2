"""The imaging plugin over real HTTP: the answer is the assistant's own calibrated prediction of
the uploaded file (PNG, DICOM, NIfTI), with a Grad-CAM PNG, audited, naming its bundle."""

from __future__ import annotations

import base64
import hashlib

import pytest

from medassist.assistants.imaging import ImagingAssistant
from medassist.data.synthetic_images import write_dicom_folder, write_nifti_folder
from medassist.store.models import AuditEntry, Prediction
from medassist.testing.assistants import example_png
from medassist.testing.server import csrf_of
from medassist.types import SCORE_TOLERANCE

SITE_ASSISTANTS = True
DISCLAIMER = "Decision support, not a medical device."


def _url(site) -> str:
    return f"/api/v1/imaging/{site.bundle_ids['diagnosis-image']}/predict"


def test_png_prediction_is_the_assistants_own_and_is_audited(site, assistant_bundles, tmp_path):
    png = example_png()
    before = (site.count(Prediction), site.count(AuditEntry))
    r = site.api("clinician").post(_url(site), files={"file": ("chest.png", png, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["disclaimer"] == DISCLAIMER and body["bundle"]["id"] == site.bundle_ids["diagnosis-image"]
    res = body["result"]
    path = tmp_path / "same.png"
    path.write_bytes(png)
    direct = ImagingAssistant.load(assistant_bundles["imaging"]).predict(path)
    assert res["probabilities"] == pytest.approx(direct["probabilities"], abs=SCORE_TOLERANCE)
    assert res["prediction"] == direct["prediction"]
    assert res["confidence"] == pytest.approx(direct["probabilities"][direct["prediction"]], abs=SCORE_TOLERANCE)
    assert "synthetic" in res["warning"] and body["calibration"]["method"].startswith("temperature and class-bias scaling")
    assert body["overlay_png"].startswith("data:image/png;base64,")
    assert base64.b64decode(body["overlay_png"].split(",", 1)[1]).startswith(b"\x89PNG")
    assert (site.count(Prediction), site.count(AuditEntry)) == (before[0] + 1, before[1] + 1)
    with site.db.session() as s:
        entry = s.get(AuditEntry, body["audit_id"])
        assert entry.bundle_id == site.bundle_ids["diagnosis-image"] and entry.input_sha256 == hashlib.sha256(png).hexdigest()
    assert str(site.settings.home) not in r.text  # no server path leaks into an answer


def test_dicom_and_nifti_uploads_and_explain_off(site, tmp_path):
    dcm = next((write_dicom_folder(tmp_path / "ct", n_patients=2, slices=1, size=24) / "lesion").glob("*.dcm"))
    r = site.api("clinician").post(_url(site), files={"file": ("scan.dcm", dcm.read_bytes(), "application/dicom")}, params={"explain": "false"})
    assert r.status_code == 200, r.text
    assert r.json()["result"]["format"] == "dicom" and r.json()["overlay_png"] is None
    nii = write_nifti_folder(tmp_path / "nii", n_volumes=2, depth=3, size=24) / "lesion" / "vol_001.nii.gz"
    r = site.api("clinician").post(_url(site), files={"file": ("vol.nii.gz", nii.read_bytes(), "application/gzip")})
    assert r.status_code == 200, r.text
    res = r.json()["result"]
    assert res["format"] == "nifti" and res["n_slices"] == 3 and len(res["per_slice"]) == 3


def test_pages_show_the_result_with_the_overlay_and_the_bundle(site):
    client = site.browser("clinician")
    bid = site.bundle_ids["diagnosis-image"]
    assert bid in client.get("/imaging").text
    page = client.get(f"/imaging/{bid}")
    assert page.status_code == 200 and DISCLAIMER in page.text
    files = {"file": ("chest.png", example_png(), "image/png")}
    for hx in ({"HX-Request": "true"}, {}):
        r = client.post(f"/imaging/{bid}/predict", files=files, data={"csrf_token": csrf_of(page.text), "explain": "on"}, headers=hx)
        assert r.status_code == 200, r.text[:300]
        assert 'id="imaging-result"' in r.text and 'id="gradcam" src="data:image/png;base64,' in r.text
        assert DISCLAIMER in r.text and bid in r.text and "synthetic" in r.text
        assert ("<html" in r.text) == (not hx)


def test_a_bundle_of_another_kind_is_not_an_imaging_model(site):
    r = site.api("clinician").post(f"/api/v1/imaging/{site.bundle_id}/predict", files={"file": ("x.png", example_png(), "image/png")})
    assert r.status_code == 404 and "No image-diagnosis model bundle" in r.json()["detail"]
