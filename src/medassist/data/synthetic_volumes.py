"""Synthetic 3D volumes placed in physical space, for tests of spacing and orientation: one
phantom (a textured block, with a bright sphere in a "lesion" volume) sampled at any voxel
spacing, written as NIfTI files (RAS affine) or DICOM CT series (ImagePositionPatient,
ImageOrientationPatient, PixelSpacing), so the same anatomy can be read from either. Synthetic
demo data, not for clinical use.

Example:
    >>> vol = phantom(spacing=(1.0, 1.0, 2.0))                  # (X, Y, Z) float32, RAS
    >>> write_nifti_volume("a.nii.gz", vol, spacing=(1.0, 1.0, 2.0))
    >>> write_dicom_volume("series/", vol, spacing=(1.0, 1.0, 2.0), patient="SYN0001")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medassist.data.synthetic_images import ct_dataset

#: The phantom's field of view in mm along (X, Y, Z).
EXTENT_MM = (32.0, 32.0, 16.0)


def phantom(*, spacing: tuple[float, float, float] = (1.0, 1.0, 2.0), lesion: bool = True, seed: int = 0,
            centre: tuple[float, float, float] | None = None) -> np.ndarray:
    """The phantom sampled at ``spacing`` (mm along X, Y, Z): float32 (X, Y, Z) values in HU-like
    units (background about 200, a lesion sphere of radius 6 mm about 800), RAS order."""
    rng = np.random.default_rng(seed)
    n = [max(1, int(round(e / s))) for e, s in zip(EXTENT_MM, spacing)]
    x, y, z = np.meshgrid(*[(np.arange(k) + 0.5) * s for k, s in zip(n, spacing)], indexing="ij")
    v = 200 + 50 * np.sin(x / 4) + rng.normal(0, 5, x.shape)
    if lesion:
        cx, cy, cz = centre if centre is not None else (20.0, 12.0, 8.0)
        v += 600 * (((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) < 36)
    return v.astype(np.float32)


def write_nifti_volume(path: str | Path, vol: np.ndarray, *, spacing: tuple[float, float, float]) -> Path:
    """``vol`` (X, Y, Z) in RAS as a NIfTI file with a diagonal affine of ``spacing``."""
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(vol, np.diag([*spacing, 1.0])), path)
    return path


def write_dicom_volume(folder: str | Path, vol: np.ndarray, *, spacing: tuple[float, float, float], patient: str = "SYN0001",
                       orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0), seed: int = 0) -> Path:
    """``vol`` (X, Y, Z) in RAS as one axial CT series, one file per slice, named out of order
    (readers must place slices by position). ``orientation`` is ImageOrientationPatient (LPS),
    axis-aligned: a row direction of ±x and a column direction of ±y."""
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid(entropy_srcs=[patient, "spaced volume", str(seed)])
    row, col = np.array(orientation[:3], dtype=float), np.array(orientation[3:], dtype=float)
    normal = np.cross(row, col)
    for k in range(vol.shape[2]):
        sl = vol[:, :, k]  # (X, Y) in RAS; DICOM is LPS, so a row direction of +x runs towards RAS -x
        sl = sl[::-1] if row[0] > 0 else sl
        sl = sl[:, ::-1] if col[1] > 0 else sl
        hu = np.round(sl.T - 1024).astype(np.int16)  # rows follow y, columns follow x
        ds = ct_dataset(hu, patient=patient, series_uid=series, instance=k + 1, z=0.0)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid(entropy_srcs=[series, str(k)])  # as always
        ds.ImagePositionPatient = [float(v) for v in normal * k * spacing[2]]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # (between rows, between columns)
        ds.SliceThickness = float(spacing[2])
        ds.WindowCenter, ds.WindowWidth = -600, 1200
        ds.save_as(folder / f"{(k * 7919) % 1000:03d}.dcm", enforce_file_format=True)
    return folder


def write_volume_folder(folder: str | Path, *, kind: str = "nifti", n_volumes: int = 16, seed: int = 0) -> Path:
    """``folder/<class>/<case>/`` (one NIfTI file or one DICOM series per case), two classes,
    cases alternating between two voxel spacings ((1, 1, 2) and (2, 2, 1) mm) of one field of view."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    for v in range(n_volumes):
        label = v % 2
        spacing = (1.0, 1.0, 2.0) if (v // 2) % 2 == 0 else (2.0, 2.0, 1.0)
        centre = (float(rng.uniform(10, 22)), float(rng.uniform(10, 22)), float(rng.uniform(6, 10)))
        vol = phantom(spacing=spacing, lesion=bool(label), seed=seed * 1000 + v, centre=centre)
        case = folder / ("lesion" if label else "normal") / f"case_{v:03d}"
        if kind == "nifti":
            write_nifti_volume(case / "volume.nii.gz", vol, spacing=spacing)
        else:
            write_dicom_volume(case, vol, spacing=spacing, patient=f"SYN{seed:02d}{v:04d}", seed=seed)
    return folder
