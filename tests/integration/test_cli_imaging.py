"""Images through the CLI, in real subprocesses: a DICOM folder, NIfTI volumes and a MedMNIST
file each train (small preset, one epoch, tiny data) and predict with a Grad-CAM PNG."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medassist.data.synthetic_images import write_dicom_folder, write_medmnist_npz, write_nifti_folder
from medassist.testing import one_line_error

FAST = ["--size", "small", "--epochs", "1", "--no-progress"]




def _check_prediction(proc, png, classes):
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert sorted(result["probabilities"]) == sorted(classes)
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert result["prediction"] in classes and result["explanation"]["png"] == str(png)
    assert "not a medical device" in result["disclaimer"].lower()
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width >= 28
    return result


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("imaging")


def test_dicom_folder_trains_with_a_window_and_predicts_with_gradcam(data_dir, cli):
    folder = write_dicom_folder(data_dir / "ct", n_patients=12, slices=2, size=24)
    out = data_dir / "ct_model"
    proc = cli("train", "--data", folder, "--out", out, "--window", "abdomen", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert f"bundle: {out}" in proc.stdout and "test AUC" in proc.stderr
    card = json.loads((out / "model_card.json").read_text())
    assert card["data"]["window"] == "abdomen" and card["data"]["modalities"] == ["CT"]
    assert "Grad-CAM" in (out / "report.html").read_text()
    png = data_dir / "ct.png"
    result = _check_prediction(cli("predict", out, "--image", next((folder / "lesion").glob("*.dcm")), "--explain", png), png, ["lesion", "normal"])
    assert result["format"] == "dicom" and "window abdomen" in result["intensity"]


def test_nifti_volumes_train_and_a_volume_is_predicted_slice_by_slice(data_dir, cli):
    folder = write_nifti_folder(data_dir / "nii", n_volumes=12, depth=3, size=24)
    out = data_dir / "nii_model"
    assert cli("train", "--data", folder, "--out", out, "--model", "densenet121", *FAST).returncode == 0
    png = data_dir / "vol.png"
    result = _check_prediction(cli("predict", out, "--image", folder / "lesion" / "vol_001.nii.gz", "--explain", png), png, ["lesion", "normal"])
    assert result["n_slices"] == 3 and len(result["per_slice"]) == 3 and result["aggregation"] == "mean of per-slice probabilities"


@pytest.fixture(scope="module")
def npz_model(data_dir, cli):
    npz = write_medmnist_npz(data_dir / "pneumoniamnist.npz", n=60, size=28)
    out = data_dir / "npz_model"
    proc = cli("train", "--data", npz, "--out", out, *FAST)
    assert proc.returncode == 0, proc.stderr
    return npz, out


def test_medmnist_file_trains_predicts_and_evaluates_on_its_test_split(data_dir, npz_model, cli):
    npz, out = npz_model
    picture = data_dir / "xray.png"
    Image.fromarray(np.load(npz)["test_images"][0]).save(picture)
    png = data_dir / "xray_cam.png"
    _check_prediction(cli("predict", out, "--image", picture, "--explain", png), png, ["normal", "pneumonia"])
    proc = cli("evaluate", out, "--data", npz, "--n-boot", "50", "--report", data_dir / "eval.html", "--json")
    assert proc.returncode == 0, proc.stderr
    ev = json.loads(proc.stdout)
    assert ev["split"] == "test (official)" and ev["n"] == 9
    assert 0 <= ev["medmnist"]["auc"] <= 1 and (data_dir / "eval.html").exists()


def test_wrong_images_are_refused_with_one_clear_line(data_dir, npz_model, cli):
    _, out = npz_model
    colour = data_dir / "photo.png"
    rgb = np.zeros((28, 28, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(colour)
    line = one_line_error(cli("predict", out, "--image", colour))
    assert "photo.png" in line and "colour (RGB) image, but the model was trained on greyscale" in line


def test_auto_task_picks_images_for_folders_npz_and_path_label_csvs(data_dir, npz_model):
    from medassist.cli.commands import infer_task

    folder = write_dicom_folder(data_dir / "ct_csv", n_patients=6, slices=1, size=24)
    rows = [f"{p.relative_to(data_dir)},{p.parent.name}" for p in sorted(folder.rglob("*.dcm"))]
    csv = data_dir / "studies.csv"
    csv.write_text("path,label\n" + "\n".join(rows) + "\n")
    table = data_dir / "table.csv"
    table.write_text("age,outcome\n50,1\n")
    assert [infer_task(str(p)) for p in (folder, npz_model[0], csv, table)] == ["image", "image", "image", "diagnosis"]


def test_default_train_is_the_base_preset_with_a_baseline_and_init_from_a_state_dict(data_dir, npz_model, cli):
    import torch

    from medassist.models import build_model

    npz, _ = npz_model
    weights = data_dir / "pretrained.pth"  # a plain state dict, as a hospital's own checkpoint might be
    torch.save(build_model("resnet18", size="base", in_channels=1, n_outputs=4, image_size=28)[0].state_dict(), weights)
    out = data_dir / "base_model"
    proc = cli("train", "--data", npz, "--out", out, "--epochs", "1", "--no-progress", "--init-from", weights)
    assert proc.returncode == 0, proc.stderr
    assert "tensors loaded, 2 skipped (shape mismatch)" in proc.stderr and "skipped net.fc.weight: shape (4, 256)" in proc.stderr
    assert "Logistic regression on 16×16 pooled pixels (baseline): test AUC" in proc.stderr
    card = json.loads((out / "model_card.json").read_text())
    assert card["model"]["size"] == "base" and card["model"]["n_parameters"] > 1_000_000
    assert card["model"]["weights"].startswith(f"initialised from {weights}")
    assert card["baselines"]["comparators"][0]["name"] == "logistic"
    line = one_line_error(cli("train", "--data", npz, "--out", data_dir / "none", "--init-from", data_dir / "missing.pt", "--no-progress"))
    assert "--init-from" in line and "missing.pt" in line and not (data_dir / "none").exists()
