"""NIfTI images through nibabel: a 2D image, or a volume as its axial slices.

Voxel values are read with the header's scaling (``scl_slope``/``scl_inter``) applied; the
volume is turned to the closest RAS+ orientation so "axial slice k" means the same thing for
every file. Intensities map to [0, 1] once per volume (so slices of one volume stay
comparable): a CT window preset when asked, else the 0.5th-99.5th percentiles of the volume.

Example:
    >>> vol = read_nifti("head.nii.gz")
    >>> vol.slices.shape       # (Z, 1, H, W), float32 in [0, 1]
    (25, 1, 41, 33)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medassist.data.io.dicom import apply_window, window_values
from medassist.exceptions import DataError, DataFileNotFoundError

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


@dataclass(frozen=True, kw_only=True)
class NiftiImage:
    """Attributes:
    slices: float32 in [0, 1], (Z, 1, H, W); Z = 1 for a 2D image.
    volume: float32 scaled values in RAS+ order, (X, Y, Z) (the volume itself, scaled).
    spacing: voxel size in mm (X, Y, Z).
    intensity: how values became [0, 1].
    """

    slices: np.ndarray
    volume: np.ndarray
    spacing: tuple[float, ...]
    path: Path
    intensity: str


def read_nifti(path: str | Path, *, window: str | None = None, volume_index: int = 0) -> NiftiImage:
    """Read a 2D or 3D NIfTI file (a 4D file: volume ``volume_index`` of its last axis)."""
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: file not found.")
    try:
        img = nib.load(str(path))
        img = nib.as_closest_canonical(img)
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as e:  # nibabel raises ImageFileError, EOFError, zlib errors ...
        raise DataError(f"{path}: not a readable NIfTI image ({type(e).__name__}: {e}).") from e
    if data.ndim == 4:
        if not 0 <= volume_index < data.shape[3]:
            raise DataError(f"{path}: volume index {volume_index} is out of range; the file has {data.shape[3]} volumes.")
        data = data[..., volume_index]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3 or min(data.shape[:2]) < 2:
        raise DataError(f"{path}: expected a 2D image or a 3D volume; got an array of shape {data.shape}.")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: the image holds NaN or infinite values.")
    if window is not None:
        c, w = window_values(window)
        scaled = apply_window(data, c, w)
        intensity = f"window {window} (C={c:g}, W={w:g})"
    else:
        lo, hi = np.percentile(data, [0.5, 99.5]) if data.size else (0.0, 0.0)
        scaled = np.clip((data - lo) / (hi - lo), 0, 1).astype(np.float32) if hi > lo else np.zeros_like(data)
        intensity = f"volume percentiles 0.5-99.5 ({lo:g} to {hi:g})"
    # (X, Y, Z) RAS+ → slices (Z, H=Y flipped so anterior is up, W=X)
    slices = np.ascontiguousarray(np.flip(np.transpose(scaled, (2, 1, 0)), axis=1))[:, None]
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return NiftiImage(slices=slices.astype(np.float32), volume=data, spacing=zooms, path=path, intensity=intensity)
