"""NIfTI reading on nibabel's bundled test images."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medassist.data.io.images import read_image
from medassist.data.io.nifti import read_nifti
from medassist.exceptions import DataError

DATA = Path(nib.__file__).parent / "tests" / "data"


def test_volume_becomes_axial_slices_in_unit_range():
    img = read_nifti(DATA / "anatomical.nii")
    canonical = nib.as_closest_canonical(nib.load(DATA / "anatomical.nii"))
    x, y, z = canonical.shape
    assert img.slices.shape == (z, 1, y, x)
    assert img.slices.dtype == np.float32 and img.slices.min() >= 0 and img.slices.max() <= 1
    assert img.volume.shape == (x, y, z)
    # slice k is the k-th axial plane of the canonical volume (rows flipped so anterior is up)
    k = z // 2
    plane = canonical.get_fdata()[:, :, k]
    corr = np.corrcoef(img.slices[k, 0].ravel(), np.flipud(plane.T).ravel())[0, 1]
    assert corr > 0.99


def test_4d_file_reads_the_chosen_volume_and_refuses_a_missing_one():
    first = read_nifti(DATA / "example4d.nii.gz", volume_index=0)
    second = read_nifti(DATA / "example4d.nii.gz", volume_index=1)
    assert first.slices.shape == second.slices.shape
    with pytest.raises(DataError, match="volume index 5 is out of range; the file has 2 volumes"):
        read_nifti(DATA / "example4d.nii.gz", volume_index=5)


def test_read_image_dispatches_on_nifti_suffix():
    img = read_image(DATA / "standard.nii.gz")
    assert img.kind == "nifti" and img.slices.ndim == 4


def test_window_applies_to_nifti_values(tmp_path):
    vol = np.full((8, 8, 2), -1000.0, dtype=np.float32)
    vol[2:6, 2:6, :] = 40.0
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), path)
    img = read_nifti(path, window="brain")
    assert img.slices.min() == 0.0 and np.isclose(img.slices.max(), 0.5, atol=0.01)


def test_corrupt_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="broken.nii.gz: not a readable NIfTI image"):
        read_nifti(bad)
