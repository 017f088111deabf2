"""Pictures (PNG/JPEG), labelled folders, path,label CSVs and MedMNIST .npz files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medassist.data.io.images import is_image_csv, load_image_data, read_image
from medassist.data.io.medmnist import load_medmnist
from medassist.data.synthetic_images import write_dicom_folder, write_medmnist_npz, write_png_folder
from medassist.exceptions import DataError, SchemaError


def test_png_grey_rgb_16bit_and_jpeg(tmp_path):
    grey = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    Image.fromarray(grey).save(tmp_path / "g.png")
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "grey_as_rgb.png")
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "red.jpg", quality=95)
    Image.fromarray(grey.astype(np.uint16) * 256).save(tmp_path / "g16.png")
    g = read_image(tmp_path / "g.png").slices
    assert g.shape == (1, 1, 8, 8)
    np.testing.assert_allclose(g[0, 0], grey / 255.0)
    assert read_image(tmp_path / "grey_as_rgb.png").slices.shape == (1, 1, 8, 8)
    red = read_image(tmp_path / "red.jpg").slices
    assert red.shape == (1, 3, 8, 8) and red[0, 0].mean() > 0.9 and red[0, 1].mean() < 0.1
    np.testing.assert_allclose(read_image(tmp_path / "g16.png").slices[0, 0], grey.astype(np.float64) * 256 / 65535.0, atol=1e-6)


def test_damaged_picture_and_window_on_picture_are_refused(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match="bad.png"):
        read_image(tmp_path / "bad.png")
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(DataError, match="window needs CT values"):
        read_image(tmp_path / "ok.png", window="lung")


def test_labelled_png_folder(tmp_path):
    data = load_image_data(write_png_folder(tmp_path / "pngs", n=12))
    assert data.classes == ["lesion", "normal"] and data.positive_class == "lesion"
    assert len(data) == 12 and data.task == "binary" and np.bincount(data.targets).tolist() == [6, 6]


def test_dicom_folder_groups_slices_by_patient(tmp_path):
    data = load_image_data(write_dicom_folder(tmp_path / "dcm", n_patients=6, slices=2))
    assert len(data) == 12 and set(data.modalities) == {"CT"}
    assert len(set(data.groups.tolist())) == 6  # two slices per patient share a group


def test_folder_with_loose_files_or_one_class_is_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "loose.png")
    with pytest.raises(DataError, match="one sub-folder per class"):
        load_image_data(tmp_path)
    only = tmp_path / "one"
    write_png_folder(only, n=6)
    for p in (only / "normal").iterdir():
        p.rename(only / "lesion" / ("n_" + p.name))
    (only / "normal").rmdir()
    with pytest.raises(DataError, match="at least two classes"):
        load_image_data(only)


def test_csv_of_path_label(tmp_path):
    root = write_png_folder(tmp_path / "pngs", n=12)
    rows = [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(root.rglob("*.png"))]
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "\n".join(rows) + "\n")
    assert is_image_csv(csv)
    data = load_image_data(csv)
    assert len(data) == 12 and data.classes == ["lesion", "normal"]
    csv.write_text("path,label\nmissing.png,normal\n")
    with pytest.raises(DataError, match="row 1: image 'missing.png' not found"):
        load_image_data(csv)
    csv.write_text("path,label\n" + rows[0].split(",")[0] + ",\n")
    with pytest.raises(DataError, match="row 1 has no label"):
        load_image_data(csv)
    csv.write_text("file,diagnosis\na.png,x\n")
    assert not is_image_csv(csv)
    with pytest.raises(SchemaError, match="'path' and 'label'"):
        load_image_data(csv)


@pytest.mark.parametrize(
    ("task", "channels", "size", "expected_task"),
    [("binary", 1, 28, "binary"), ("multiclass", 3, 28, "multiclass"), ("multilabel", 1, 28, "multilabel"), ("binary", 1, 64, "binary")],
)
def test_medmnist_flavours(tmp_path, task, channels, size, expected_task):
    path = write_medmnist_npz(tmp_path / "set.npz", n=20, size=size, task=task, channels=channels)
    data = load_medmnist(path)
    assert data.task == expected_task and data.images.shape == (20, channels, size, size) and data.images.dtype == np.uint8
    assert sorted(np.concatenate(list(data.splits.values())).tolist()) == list(range(20))
    if expected_task == "multilabel":
        assert data.targets.shape == (20, 3) and data.targets.dtype == np.float32


def test_medmnist_official_names_and_ordinal(tmp_path):
    x = np.zeros((5, 28, 28), dtype=np.uint8)
    arrays = {f"{s}_images": x for s in ("train", "val", "test")}
    np.savez(tmp_path / "pneumoniamnist.npz", **arrays, **{f"{s}_labels": np.array([[0], [1], [0], [1], [1]]) for s in ("train", "val", "test")})
    assert load_medmnist(tmp_path / "pneumoniamnist.npz").classes == ["normal", "pneumonia"]
    np.savez(tmp_path / "retinamnist_64.npz", **arrays, **{f"{s}_labels": np.array([[0], [1], [2], [3], [4]]) for s in ("train", "val", "test")})
    retina = load_medmnist(tmp_path / "retinamnist_64.npz")
    assert retina.ordinal and retina.task == "multiclass" and len(retina.classes) == 5
    chest = np.zeros((5, 14), dtype=np.uint8)
    chest[0, 13] = 1
    np.savez(tmp_path / "chestmnist.npz", **arrays, **{f"{s}_labels": chest for s in ("train", "val", "test")})
    assert load_medmnist(tmp_path / "chestmnist.npz").classes[13] == "hernia"


def test_medmnist_bad_layout_is_named(tmp_path):
    np.savez(tmp_path / "x.npz", train_images=np.zeros((2, 28, 28), dtype=np.uint8), train_labels=np.zeros((2, 1)))
    with pytest.raises(SchemaError, match="missing array\\(s\\) val_images, val_labels, test_images, test_labels"):
        load_medmnist(tmp_path / "x.npz")
    (tmp_path / "y.npz").write_bytes(b"nope")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_medmnist(tmp_path / "y.npz")
