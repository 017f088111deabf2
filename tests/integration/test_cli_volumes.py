"""3D volumes through the CLI, in real subprocesses: a NIfTI volume folder and a DICOM series
folder (``<class>/<case>/``, cases at two voxel spacings) each train a MONAI 3D network (small
preset, two epochs; ``train`` evaluates on its own held-out split and writes the report with the
Grad-CAM slices) and predict one case with a Grad-CAM slice; ``evaluate`` scores held-out cases
of both formats at once. Five subprocesses in all, to keep the run short.
(MedMNIST-3D ``.npz`` files: tests/unit/imaging/test_volumes.py.)"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from PIL import Image

from medassist.data.synthetic_volumes import write_volume_folder

FAST = ["--size", "small", "--epochs", "2", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cli):
    """One small 3D model per format, trained through ``medassist train``."""
    tmp = tmp_path_factory.mktemp("volumes_cli")
    models = {}
    for kind in ("nifti", "dicom"):
        out = tmp / f"{kind}_model"
        proc = cli("train", "--data", write_volume_folder(tmp / kind, kind=kind, n_volumes=12, seed=0), "--out", out, *FAST)
        assert proc.returncode == 0, proc.stderr
        models[kind] = (out, " ".join(proc.stderr.split()))  # rich wraps long lines
    return tmp, models


@pytest.mark.parametrize("kind", ["nifti", "dicom"])
def test_a_volume_folder_trains_at_one_spacing_with_gradcam_slices_and_predicts_a_case(kind, trained, cli):
    tmp, models = trained
    out, said = models[kind]
    assert "resampled to one physical spacing" in said and "test AUC" in said
    card = json.loads((out / "model_card.json").read_text())
    assert card["model"]["hyperparameters"]["spatial_dims"] == 3 and card["data"]["n_test"] >= 2
    assert re.fullmatch(r"volume 1×(\d+)×\1×\1 at [\d.]+×[\d.]+×[\d.]+ mm \(D×H×W\), RAS\+", card["data"]["input"])
    report = (out / "report.html").read_text()
    slices = re.findall(r'<img alt="Grad-CAM" src="data:image/png;base64,[^"]+"><figcaption>[^<]*, slice \d+</figcaption>', report)
    assert len(slices) >= 3  # a test volume's three most telling axial slices, as images
    case = write_volume_folder(tmp / f"{kind}_new", kind=kind, n_volumes=2, seed=2) / "lesion" / "case_001"
    png = tmp / f"{kind}_cam.png"
    proc = cli("predict", out, "--image", case / "volume.nii.gz" if kind == "nifti" else case, "--explain", png)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["input"] == "volume" and result["format"] == kind and sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert result["explanation"]["method"].startswith("3D Grad-CAM") and result["notes"][0].startswith("resampled from ")
    with Image.open(png) as im:
        assert im.format == "PNG"


def test_evaluate_scores_held_out_nifti_and_dicom_cases_at_the_models_spacing(trained, cli):
    tmp, models = trained
    held_out = write_volume_folder(tmp / "held_out", kind="nifti", n_volumes=4, seed=1)
    series = write_volume_folder(tmp / "held_out_dicom", kind="dicom", n_volumes=4, seed=3)
    for c in ("lesion", "normal"):  # one folder, cases of both formats side by side
        for case in (series / c).iterdir():
            shutil.copytree(case, held_out / c / f"dicom_{case.name}")
    report = tmp / "eval.html"
    proc = cli("evaluate", models["nifti"][0], "--data", held_out, "--n-boot", "20", "--report", report, "--json")
    assert proc.returncode == 0, proc.stderr
    ev = json.loads(proc.stdout)
    assert ev["n"] == 8 and ev["split"] == "all images" and 0 <= ev["metrics"]["auc"]["value"] <= 1 and report.exists()
