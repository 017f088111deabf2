"""3D volume classification: MedMNIST-3D files train and evaluate a MONAI 3D network; NIfTI
volumes and DICOM series folders are predicted as whole volumes, with 3D Grad-CAM slices."""

from __future__ import annotations

import json

import pytest

from medassist.assistants.imaging import ImagingAssistant
from medassist.data.io.medmnist import load_medmnist
from medassist.data.io.volumes import read_volume
from medassist.data.synthetic_images import write_dicom_folder, write_medmnist3d_npz, write_nifti_folder
from medassist.exceptions import DataError
from medassist.pipeline.imaging import ImageSpec, train_images
from medassist.training import Monitor, TrainConfig


@pytest.fixture(scope="module")
def volume_bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("volumes")
    npz = write_medmnist3d_npz(tmp / "nodulemnist3d.npz", n=40, size=12)
    data = load_medmnist(npz)
    spec = ImageSpec(size="small", n_boot=20, n_gradcam=1, train=TrainConfig(epochs=1, batch_size=16, monitor=Monitor.VAL_METRIC))
    return npz, data, train_images(data, spec=spec, out_dir=tmp / "bundle", progress=False), tmp


def test_medmnist_3d_file_trains_a_3d_network_with_a_voxel_baseline_and_gradcam_slices(volume_bundle):
    _, data, out, _ = volume_bundle
    assert data.images.shape == (40, 1, 12, 12, 12)
    card = json.loads((out.bundle_dir / "model_card.json").read_text())
    assert card["model"]["hyperparameters"]["spatial_dims"] == 3 and card["data"]["input"] == "volume 1×12×12×12"
    assert out.baselines[0]["label"] == "Logistic regression on 8×8×8 pooled voxels (baseline)"
    report = (out.bundle_dir / "report.html").read_text()
    assert report.count(", slice ") >= 3 and "Grad-CAM" in report  # one volume, its three most telling slices


def test_volume_model_evaluates_and_predicts_nifti_and_dicom_series_as_volumes(volume_bundle):
    npz, data, out, tmp = volume_bundle
    assistant = ImagingAssistant.load(out.bundle_dir)
    ev = assistant.evaluate(npz, n_boot=10)
    assert ev["n"] == len(data.splits["test"]) and ev["baselines"][0]["name"] == "logistic"
    nii = write_nifti_folder(tmp / "nii", n_volumes=2, depth=4, size=12)
    png = tmp / "cam.png"
    result = assistant.predict(nii / "lesion" / "vol_001.nii.gz", explain_path=png)
    assert result["input"] == "volume" and result["n_slices"] == 4 and png.exists()
    assert result["explanation"]["method"].startswith("3D Grad-CAM") and "resized from 4×12×12 to 12×12×12." in result["notes"]
    dcm = write_dicom_folder(tmp / "dcm", n_patients=2, slices=3, size=12)
    series = assistant.predict(dcm / "lesion")
    assert series["format"] == "dicom" and series["n_slices"] == 3 and abs(sum(series["probabilities"].values()) - 1) < 1e-4
    assert read_volume(dcm / "lesion").voxels.shape == (1, 3, 12, 12)
    with pytest.raises(DataError, match="holds 2 DICOM series"):
        read_volume(dcm)


def test_a_folder_of_dicom_series_trains_one_volume_per_series(tmp_path):
    from medassist.data.io.images import load_image_data
    from medassist.data.synthetic_images import write_dicom_series_folder

    data = load_image_data(write_dicom_series_folder(tmp_path / "series", n_patients=12, slices=5, size=12))
    assert len(data) == 12 and data.images[0].shape == (1, 5, 12, 12) and data.modalities[0] == "CT"
    spec = ImageSpec(size="small", n_boot=0, n_gradcam=0, train=TrainConfig(epochs=1, batch_size=8, monitor=Monitor.VAL_METRIC))
    out = train_images(data, spec=spec, out_dir=tmp_path / "b", progress=False)
    card = json.loads((out.bundle_dir / "model_card.json").read_text())
    assert card["data"]["modalities"] == ["CT"] and card["model"]["hyperparameters"]["spatial_dims"] == 3
    result = ImagingAssistant.load(out.bundle_dir).predict(tmp_path / "series" / "lesion" / "SYN0001")
    assert result["input"] == "volume" and result["n_slices"] == 5


def test_a_folder_of_nifti_volume_folders_reads_whole_volumes(tmp_path):
    import shutil

    from medassist.data.io.images import load_image_data

    flat = write_nifti_folder(tmp_path / "flat", n_volumes=4, depth=5, size=12)
    for c in ("lesion", "normal"):  # class/<volume folder>/vol.nii.gz
        for f in sorted((flat / c).glob("*.nii.gz")):
            (tmp_path / "vols" / c / f.name.split(".")[0]).mkdir(parents=True)
            shutil.copy(f, tmp_path / "vols" / c / f.name.split(".")[0] / f.name)
    data = load_image_data(tmp_path / "vols")
    assert len(data) == 4 and data.images[0].shape == (1, 5, 12, 12) and data.formats == ["nifti"]
    assert len(load_image_data(flat)) == 20  # the flat layout still reads slice by slice


def _centre(x):
    """Centre of the brightest voxels (the lesion) of a (1, D, H, W) volume, in voxels."""
    import numpy as np

    x = np.asarray(x)[0]
    return np.argwhere(x > 0.9 * x.max()).mean(axis=0)


def test_one_anatomy_at_two_spacings_and_in_two_formats_resamples_to_the_same_input(tmp_path):
    import numpy as np

    from medassist.data.synthetic_volumes import phantom, write_dicom_volume, write_nifti_volume
    from medassist.featurizers.images import VolumeFeaturizer

    fine_z = write_nifti_volume(tmp_path / "a.nii.gz", phantom(spacing=(1.0, 1.0, 2.0)), spacing=(1.0, 1.0, 2.0))
    fine_xy = write_nifti_volume(tmp_path / "b.nii.gz", phantom(spacing=(2.0, 2.0, 1.0), seed=1), spacing=(2.0, 2.0, 1.0))
    # the same anatomy as a DICOM series whose rows run right-to-left: read back in the same orientation
    series = write_dicom_volume(tmp_path / "series", phantom(spacing=(1.0, 1.0, 2.0), seed=2), spacing=(1.0, 1.0, 2.0),
                                orientation=(-1, 0, 0, 0, 1, 0))
    a, b, c = (read_volume(p) for p in (fine_z, fine_xy, series))
    assert (a.voxels.shape, a.spacing) == ((1, 8, 32, 32), (2.0, 1.0, 1.0))  # (D, H, W) = (Z, Y, X)
    assert (b.voxels.shape, b.spacing) == ((1, 16, 16, 16), (1.0, 2.0, 2.0))
    assert (c.voxels.shape, c.spacing, c.kind) == ((1, 8, 32, 32), (2.0, 1.0, 1.0), "dicom")
    assert np.allclose(_centre(a.voxels), _centre(c.voxels), atol=0.6)  # NIfTI and DICOM agree on left/right, up/down
    fz = VolumeFeaturizer(size=16).fit([a.voxels, b.voxels])
    assert fz.spacing_ == [1.5, 2.0, 2.0] and fz.input_schema()["image"] == "volume 1×16×16×16 at 1.5×2×2 mm (D×H×W), RAS+"
    assert fz.check(a.voxels)[0].startswith("resampled from 8×32×32 voxels of 2×1×1 mm to 1.5×2×2 mm")
    xa, xb, xc = fz.transform([a.voxels, b.voxels, c.voxels])
    assert xa.shape == xb.shape == (1, 16, 16, 16)
    inside = slice(3, 12)  # 16 mm at 1.5 mm: 11 slices, zero-padded to 16 (a window maps the DICOM background above 0)
    for x in (xb, xc):
        assert np.corrcoef(xa[:, inside].flatten(), x[:, inside].flatten())[0, 1] > 0.9
        assert np.allclose(_centre(xa), _centre(x), atol=1.0)
    with pytest.raises(DataError, match=r"cases\.npz: the volume carries no voxel spacing, but the model was trained on volumes resampled to 1\.5×2×2 mm"):
        fz.check(np.zeros((1, 8, 8, 8), dtype=np.float32), source="cases.npz")
    restored = type(fz).from_dict(json.loads(json.dumps(fz.to_dict())))
    assert restored.spacing_ == fz.spacing_ and _torch_equal(restored.transform([b.voxels]), fz.transform([b.voxels]))


def _torch_equal(x, y) -> bool:
    import torch

    return bool(torch.equal(x, y))


def test_bad_volumes_are_refused_naming_the_file_and_what_was_expected(tmp_path):
    import shutil

    from medassist.data.io.volumes import load_volume_folder
    from medassist.data.synthetic_volumes import phantom, write_dicom_volume, write_nifti_volume

    def series(name, spacing=(1.0, 1.0, 2.0), **kw):
        return write_dicom_volume(tmp_path / name, phantom(spacing=spacing), spacing=spacing, patient=name, **kw)

    mixed = series("mixed")  # one slice of another size, from another series' geometry but the same series UID
    other = series("other", spacing=(2.0, 2.0, 2.0))
    first = sorted(mixed.glob("*.dcm"))[0]
    import pydicom

    ds, donor = pydicom.dcmread(first), pydicom.dcmread(sorted(other.glob("*.dcm"))[0])
    ds.Rows, ds.Columns, ds.PixelData = donor.Rows, donor.Columns, donor.PixelData
    ds.save_as(first)
    with pytest.raises(DataError, match=rf"{first.name}: a 16×16 slice, but \S+ and 6 more have 32×32 \(size\); the slices of one series must have one size"):
        read_volume(mixed)
    tilted = series("tilted")
    f = sorted(tilted.glob("*.dcm"))[1]
    ds = pydicom.dcmread(f)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # a coronal slice in an axial series
    ds.save_as(f)
    with pytest.raises(DataError, match=rf"{f.name}: ImageOrientationPatient \[1\.0, 0\.0, 0\.0, 0\.0, 0\.0, -1\.0\], but .* have \[1\.0, 0\.0, 0\.0, 0\.0, 1\.0, 0\.0\] \(orientation\); .* one orientation"):
        read_volume(tilted)
    thin = write_nifti_volume(tmp_path / "thin.nii.gz", phantom(spacing=(1.0, 1.0, 8.0)), spacing=(1.0, 1.0, 8.0))
    with pytest.raises(DataError, match=r"thin\.nii\.gz: the volume has 2 slice\(s\); a volume model needs at least 3 slices"):
        read_volume(thin)
    for f in sorted(series("short").glob("*.dcm"))[2:]:
        f.unlink()
    with pytest.raises(DataError, match=r"short: the DICOM series has 2 slice\(s\); a volume model needs at least 3"):
        read_volume(tmp_path / "short")
    gap = series("gap")
    by_position = sorted(gap.glob("*.dcm"), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    by_position[3].unlink()
    with pytest.raises(DataError, match=rf"{by_position[4].name}: 4 mm from {by_position[2].name} along the slice normal, but the "
                                        r"series' slices are 2 mm apart; a slice seems to be missing"):
        read_volume(gap)
    (tmp_path / "set" / "normal" / "case_1").mkdir(parents=True)
    (tmp_path / "set" / "normal" / "case_1" / "notes.txt").write_text("no image here")
    shutil.copytree(other, tmp_path / "set" / "lesion" / "case_2")
    with pytest.raises(DataError, match=r"case_1: no readable volume \(1 file\(s\), none of them DICOM\); expected one DICOM series or one NIfTI"):
        load_volume_folder(tmp_path / "set")


def test_a_real_ct_header_from_pydicom_places_a_series_in_space(tmp_path):
    """pydicom's CT_small.dcm (a real scanner header), repeated at three table positions 5 mm apart
    and written out of order: read as one volume with its PixelSpacing and the positions' gap."""
    import numpy as np
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    z0 = float(ds.ImagePositionPatient[2])
    for k in (2, 0, 1):
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], z0 + 5.0 * k]
        ds.InstanceNumber = 3 - k  # reversed: positions, not instance numbers, order the slices
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID.rsplit('.', 1)[0]}.{900 + k}"
        ds.save_as(tmp_path / f"slice_{k}.dcm")
    vol = read_volume(tmp_path)
    assert vol.voxels.shape == (1, 3, 128, 128) and vol.kind == "dicom" and vol.modality == "CT"
    assert vol.spacing == pytest.approx((5.0, 0.661468, 0.661468)) and vol.voxels.spacing == vol.spacing
    assert "volume percentiles" in vol.intensity and 0 <= float(np.min(vol.voxels)) <= float(np.max(vol.voxels)) <= 1
