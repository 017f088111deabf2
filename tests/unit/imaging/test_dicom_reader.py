"""DICOM reading on the real files pydicom ships (CT_small, MR_small and its compressed twins)."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medassist.data.io.dicom import WINDOW_PRESETS, Window, apply_window, group_series, read_dicom
from medassist.exceptions import ConfigError, DataError


def _file(name: str) -> str:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} is missing"
    return path


def test_ct_rescale_and_lung_window_follow_the_dicom_formulas():
    img = read_dicom(_file("CT_small.dcm"), window="lung")
    ds = pydicom.dcmread(_file("CT_small.dcm"))
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    c, w = WINDOW_PRESETS[Window.LUNG]
    expected = np.clip((hu - (c - 0.5 - (w - 1) / 2)) / (w - 1), 0, 1)
    assert img.pixels.shape == (1, 128, 128) and img.modality == "CT"
    np.testing.assert_allclose(img.pixels[0], expected, atol=1e-6)
    assert "lung" in img.intensity and "intercept -1024" in img.intensity


def test_presets_give_different_images_and_unknown_preset_suggests_a_name():
    bone = read_dicom(_file("CT_small.dcm"), window="bone").pixels
    brain = read_dicom(_file("CT_small.dcm"), window="brain").pixels
    assert not np.allclose(bone, brain)
    with pytest.raises(ConfigError, match="did you mean 'lung'"):
        read_dicom(_file("CT_small.dcm"), window="lugn")


def test_ct_window_refused_for_mr():
    with pytest.raises(DataError, match="Modality is MR"):
        read_dicom(_file("MR_small.dcm"), window="lung")


def test_mr_uses_the_files_own_window():
    img = read_dicom(_file("MR_small.dcm"))
    ds = pydicom.dcmread(_file("MR_small.dcm"))
    np.testing.assert_allclose(img.pixels[0], apply_window(ds.pixel_array.astype(np.float32), float(ds.WindowCenter), float(ds.WindowWidth)))
    assert "file's window" in img.intensity


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm"])
def test_lossless_compressed_variants_decode_to_the_same_pixels(name):
    reference = read_dicom(_file("MR_small.dcm")).pixels
    img = read_dicom(_file(name))
    np.testing.assert_array_equal(img.pixels, reference)


def test_undecodable_transfer_syntax_names_it():
    with pytest.raises(DataError, match=r"JPEG Extended \(Process 2 and 4\).*1\.2\.840\.10008\.1\.2\.4\.51"):
        read_dicom(_file("JPEG-lossy.dcm"))


def test_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = tmp_path / "mono1.dcm"
    ds.save_as(path)
    mono2 = read_dicom(_file("CT_small.dcm"), window="abdomen").pixels
    mono1 = read_dicom(path, window="abdomen").pixels
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)


def test_multiframe_gives_one_image_per_frame_also_when_rle_compressed():
    plain = read_dicom(_file("rtdose.dcm"))
    rle = read_dicom(_file("rtdose_rle.dcm"))
    assert plain.pixels.shape == (15, 1, 10, 10) and plain.n_frames == 15
    np.testing.assert_array_equal(plain.pixels, rle.pixels)


def test_colour_files_come_out_as_three_channels():
    img = read_dicom(_file("SC_rgb_jpeg_dcmtk.dcm"))  # YBR_FULL JPEG baseline
    assert img.pixels.shape == (3, 100, 100) and 0 <= img.pixels.min() and img.pixels.max() <= 1
    with pytest.raises(DataError, match="colour"):
        read_dicom(_file("SC_rgb_jpeg_dcmtk.dcm"), window="lung")


def test_truncated_pixel_data_and_non_dicom_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="MR_truncated.dcm"):
        read_dicom(_file("MR_truncated.dcm"))
    junk = tmp_path / "notes.dcm"
    junk.write_text("not an image")
    with pytest.raises(DataError, match="notes.dcm"):
        read_dicom(junk)


def test_folder_is_grouped_into_series_and_ordered_by_position(tmp_path):
    ds = pydicom.dcmread(_file("CT_small.dcm"))
    for k, z in enumerate([30.0, 10.0, 20.0]):
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.InstanceNumber = k + 1
        ds.save_as(tmp_path / f"slice_{k}.dcm")
    shutil.copy(_file("MR_small.dcm"), tmp_path / "mr.dcm")
    (tmp_path / "README.txt").write_text("not DICOM")
    series = group_series(tmp_path)
    by_modality = {s.modality: s for s in series}
    assert sorted(by_modality) == ["CT", "MR"]
    assert [p.name for p in by_modality["CT"].files] == ["slice_1.dcm", "slice_2.dcm", "slice_0.dcm"]
    assert len(by_modality["MR"].files) == 1
