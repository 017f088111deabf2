"""Whole 3D volumes for volume classification: a NIfTI file or a DICOM series folder as one
grey volume (1, D, H, W) float32 in [0, 1], with its voxel spacing in mm along (D, H, W).

Every volume comes out in one orientation, whatever its file says: turned to the closest RAS+
orientation (``nibabel.as_closest_canonical``), then laid out as axial slices from inferior to
superior (D), anterior at the top (H), and the patient's left to right along the columns (W).
A DICOM series is placed in space from its headers first: slices ordered by
ImagePositionPatient along the slice normal (the cross product of ImageOrientationPatient's row
and column directions), PixelSpacing within a slice, and the distance between slice positions
across them (SpacingBetweenSlices, then SliceThickness, when positions are missing). Intensities
map to [0, 1] once per volume: a CT window preset when asked, else the file's window, else the
volume's 0.5th-99.5th percentiles, so the slices of one volume stay comparable. A series whose
slices differ in size, orientation or pixel spacing, repeat or skip a position, or number fewer
than ``MIN_SLICES`` is refused with one line naming the file and what was expected.

The voxels are a ``VoxelArray``: a numpy array that carries its spacing, so the featurizer
(``VolumeFeaturizer``) can resample every volume to one physical spacing before it crops or pads
it to the model's cube. MedMNIST-3D ``.npz`` volumes carry no spacing and are resized instead.

Example:
    >>> vol = read_volume("ct_series/")          # or "scan.nii.gz"
    >>> vol.voxels.shape, vol.spacing             # (1, D, H, W), (mm, mm, mm)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medassist.exceptions import DataError, DataFileNotFoundError

#: Fewer slices than this is an image (or a stack too thin to call a volume), not a volume.
MIN_SLICES = 3


class VoxelArray(np.ndarray):
    """Voxels (1, D, H, W) that carry ``spacing``: mm between voxel centres along (D, H, W), or
    None when the file does not say. Slices and copies keep it."""

    spacing: tuple[float, float, float] | None

    def __new__(cls, voxels: np.ndarray, spacing: tuple[float, float, float] | None) -> VoxelArray:
        obj = np.asarray(voxels).view(cls)
        obj.spacing = spacing
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.spacing = getattr(obj, "spacing", None)


def spacing_of(volume: Any) -> tuple[float, float, float] | None:
    """The spacing (mm along D, H, W) a volume carries, or None."""
    s = getattr(volume, "spacing", None)
    return None if s is None else (float(s[0]), float(s[1]), float(s[2]))


@dataclass(frozen=True, kw_only=True)
class Volume:
    voxels: np.ndarray  # VoxelArray (1, D, H, W) float32 in [0, 1]
    spacing: tuple[float, float, float] | None  # mm along (D, H, W)
    modality: str
    kind: str  # "nifti" | "dicom"
    intensity: str


def _check_depth(path: Path, depth: int, what: str) -> None:
    if depth < MIN_SLICES:
        raise DataError(f"{path}: {what} has {depth} slice(s); a volume model needs at least {MIN_SLICES} slices.")


def read_volume(path: str | Path, *, window: str | None = None) -> Volume:
    """One NIfTI file, or a folder holding one NIfTI file or one DICOM series, as a grey volume."""
    from medassist.data.io.nifti import is_nifti, read_nifti

    path = Path(path)
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: not found (expected a NIfTI volume or a folder holding one DICOM series).")
    if path.is_dir():
        niftis = [f for f in sorted(path.iterdir()) if f.is_file() and is_nifti(f)]
        if len(niftis) > 1:
            raise DataError(f"{path}: holds {len(niftis)} NIfTI files ({niftis[0].name}, {niftis[1].name}, ...); "
                            "a volume folder holds one NIfTI file or one DICOM series.")
        if len(niftis) == 1:
            path = niftis[0]
        else:
            return _read_series(path, window=window)
    if is_nifti(path):
        img = read_nifti(path, window=window)
        slices = np.asarray(img.slices, dtype=np.float32)  # (Z, 1, Y, X) in RAS+, anterior up
        if len(slices) < 2:
            raise DataError(f"{path}: a 2D image ({slices.shape[-2]}×{slices.shape[-1]}), not a volume; "
                            f"a volume model needs at least {MIN_SLICES} slices.")
        _check_depth(path, len(slices), "the volume")
        zx, zy, zz = (float(z) for z in img.spacing[:3])
        spacing = (zz, zy, zx) if min(zx, zy, zz) > 0 else None
        return Volume(voxels=VoxelArray(slices[:, 0][None], spacing), spacing=spacing, modality="", kind="nifti",
                      intensity=img.intensity)
    raise DataError(f"{path}: a volume model reads a NIfTI file (.nii, .nii.gz) or a folder holding one DICOM series.")


def _floats(value: Any, n: int) -> np.ndarray | None:
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) and np.isfinite(out).all() else None


def _read_series(folder: Path, *, window: str | None) -> Volume:
    """A DICOM series: slices placed in space, stacked, oriented RAS+ and windowed as one volume."""
    from pydicom.pixels import apply_modality_lut

    from medassist.data.io.dicom import _decode, _read, group_series

    files = [f for f in folder.rglob("*") if f.is_file() and not f.name.startswith(".")]
    try:
        series = group_series(folder)
    except DataError:
        raise DataError(f"{folder}: no readable volume ({len(files)} file(s), none of them DICOM); expected one DICOM "
                        "series or one NIfTI file (.nii, .nii.gz).") from None
    if len(series) > 1:
        raise DataError(f"{folder}: holds {len(series)} DICOM series; a volume is one series (put each in its own folder).")
    s = series[0]
    _check_depth(folder, len(s.files), "the DICOM series")
    values, positions, headers, inverted = [], [], [], False
    for f in s.files:
        ds = _read(f)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise DataError(f"{f}: photometric interpretation {photometric}; a volume is built from greyscale slices (MONOCHROME1/2).")
        raw = _decode(ds, f)
        if raw.ndim != 2:
            raise DataError(f"{f}: a multi-frame or colour file (pixel array {raw.shape}); a series volume is built from one "
                            "2D slice per file.")
        headers.append((f, raw.shape, _floats(ds.get("ImageOrientationPatient"), 6), _floats(ds.get("PixelSpacing"), 2), ds))
        values.append(apply_modality_lut(raw, ds).astype(np.float32))
        positions.append(_floats(ds.get("ImagePositionPatient"), 3))
        inverted = photometric == "MONOCHROME1"
    _check_alike(headers, 1, "size", "size", "the slices of one series must have one size")
    _check_alike(headers, 2, "ImageOrientationPatient", "orientation", "the slices of one series must share one orientation")
    _check_alike(headers, 3, "PixelSpacing", "pixel spacing", "the slices of one series must share one pixel spacing")
    first = headers[0]
    f0, _, iop, ps, ds0 = first
    rows = iop[:3] if iop is not None else np.array([1.0, 0.0, 0.0])  # direction of increasing column index (LPS)
    cols = iop[3:] if iop is not None else np.array([0.0, 1.0, 0.0])  # direction of increasing row index (LPS)
    normal = np.cross(rows, cols)
    order = list(range(len(values)))
    dz = None
    if all(p is not None for p in positions):
        along = np.array([float(np.dot(p, normal)) for p in positions])  # type: ignore[arg-type]
        order = list(np.argsort(along, kind="stable"))
        gaps = np.diff(along[order])
        if (np.abs(gaps) < 1e-4).any():
            k = int(np.argmin(np.abs(gaps)))
            raise DataError(f"{s.files[order[k + 1]]}: at the same position along the slice normal as {s.files[order[k]].name}; "
                            "a series volume holds one slice per position (split repeated acquisitions into their own folders).")
        dz = float(np.median(gaps))
        if gaps.max() > 1.5 * dz:  # a missing slice would stretch the anatomy after it
            k = int(np.argmax(gaps))
            raise DataError(f"{s.files[order[k + 1]]}: {gaps[k]:g} mm from {s.files[order[k]].name} along the slice normal, but the "
                            f"series' slices are {dz:g} mm apart; a slice seems to be missing (expected evenly spaced slices).")
    if dz is None:
        for tag in ("SpacingBetweenSlices", "SliceThickness"):
            v = _floats([ds0.get(tag)], 1) if ds0.get(tag) is not None else None
            if v is not None and v[0] > 0:
                dz = float(v[0])
                break
    stack = np.stack([values[i] for i in order], axis=-1)  # (rows j, columns i, slices k)
    origin = positions[order[0]]
    vol, spacing = _to_canonical(np.transpose(stack, (1, 0, 2)), rows=rows, cols=cols, normal=normal,
                                 pixel_spacing=ps, slice_spacing=dz, origin=origin if origin is not None else np.zeros(3))
    intensity, scaled = _intensity(vol, ds0, window=window, path=f0, modality=s.modality)
    if inverted:  # MONOCHROME1: bright means dense after inversion
        scaled, intensity = 1.0 - scaled, intensity + ", MONOCHROME1 inverted"
    voxels = np.ascontiguousarray(np.flip(np.transpose(scaled, (2, 1, 0)), axis=1))[None].astype(np.float32)
    return Volume(voxels=VoxelArray(voxels, spacing), spacing=spacing, modality=s.modality, kind="dicom", intensity=intensity)


def _check_alike(headers: list[tuple], field: int, tag: Any, what: str, expected: str) -> None:
    """Refuse a series whose slices differ in one header field, naming a slice that departs from
    the most common value (a stray slice, not the first one read, is usually the odd one)."""
    def key(v: Any) -> str:
        return "none" if v is None else "×".join(str(int(n)) for n in v) if field == 1 else str(np.round(v, 3).tolist())

    keys = [key(h[field]) for h in headers]
    common = max(set(keys), key=keys.count)
    for h, k in zip(headers, keys):
        if k != common:
            ref = headers[keys.index(common)][0].name
            label = f"a {k} slice" if field == 1 else f"{tag} {k}"
            raise DataError(f"{h[0]}: {label}, but {ref} and {keys.count(common) - 1} more have {common} ({what}); {expected}.")


def _to_canonical(arr: np.ndarray, *, rows: np.ndarray, cols: np.ndarray, normal: np.ndarray, pixel_spacing: np.ndarray | None,
                  slice_spacing: float | None, origin: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    """(i columns, j rows, k slices) values → RAS+ (X, Y, Z) through the series' affine, and the
    spacing along (Z, Y, X), i.e. (D, H, W) of the volume; None when PixelSpacing is unknown."""
    import nibabel as nib

    col_step = float(pixel_spacing[1]) if pixel_spacing is not None else 1.0  # PixelSpacing: (between rows, between columns)
    row_step = float(pixel_spacing[0]) if pixel_spacing is not None else 1.0
    k_step = slice_spacing if slice_spacing is not None else 1.0
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = rows * col_step, cols * row_step, normal * k_step, origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # DICOM's LPS → RAS
    canon = nib.as_closest_canonical(nib.Nifti1Image(arr.astype(np.float32), affine))
    data = np.asarray(canon.dataobj, dtype=np.float32)
    zx, zy, zz = (float(z) for z in canon.header.get_zooms()[:3])
    known = pixel_spacing is not None and slice_spacing is not None
    return data, ((zz, zy, zx) if known and min(zx, zy, zz) > 0 else None)


def _intensity(values: np.ndarray, ds: Any, *, window: str | None, path: Path, modality: str) -> tuple[str, np.ndarray]:
    from medassist.data.io.dicom import _first, apply_window, window_values

    if window is not None:
        if modality and modality != "CT":
            raise DataError(f"{path}: window preset '{window}' is defined in Hounsfield units for CT, but this series' Modality is "
                            f"{modality}; leave --window out to use the file's own window.")
        c, w = window_values(window)
        return f"window {window} (C={c:g}, W={w:g}), one per volume", apply_window(values, c, w)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        c, w = _first(ds.WindowCenter), _first(ds.WindowWidth)
        return f"the series' window (C={c:g}, W={w:g}), one per volume", apply_window(values, c, w)
    lo, hi = (np.percentile(values, [0.5, 99.5]) if values.size else (0.0, 0.0))
    scaled = np.clip((values - lo) / (hi - lo), 0, 1).astype(np.float32) if hi > lo else np.zeros_like(values)
    return f"volume percentiles 0.5-99.5 ({lo:g} to {hi:g})", scaled


def is_series_folder(folder: str | Path) -> bool:
    """``folder/<class>/<series folder>/...``: class folders that hold folders (one volume each), no files."""
    classes = [d for d in Path(folder).iterdir() if d.is_dir() and not d.name.startswith(".")]
    return bool(classes) and all(
        any(c.is_dir() for c in d.iterdir()) and not any(c.is_file() and not c.name.startswith(".") for c in d.iterdir())
        for d in classes)


def load_volume_folder(folder: str | Path, *, window: str | None = None):
    """A labelled set of volumes from ``folder/<class>/<volume>/`` (a DICOM series per folder) or
    ``folder/<class>/<volume>/<file>.nii[.gz]``: ImageSet of (1, D, H, W) ``VoxelArray`` volumes."""
    from medassist.data.io.images import ImageSet

    folder = Path(folder)
    vols: list[np.ndarray] = []
    labels, groups, modalities, kinds, intensity = [], [], [], set(), ""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    for c in classes:
        items = [item for item in sorted((folder / c).iterdir()) if not item.name.startswith(".")]
        if not items:
            raise DataError(f"{folder / c}: no volume in this class folder; expected <class>/<volume folder>/ holding one DICOM "
                            "series or one NIfTI file.")
        for item in items:
            vol = read_volume(item, window=window)
            vols.append(vol.voxels)
            labels.append(classes.index(c))
            groups.append(f"{c}/{item.name}")
            modalities.append(vol.modality)
            kinds.add(vol.kind)
            intensity = vol.intensity
    if len(set(labels)) < 2:
        raise DataError(f"{folder}: volumes of {len(set(labels))} class(es); expected at least two class folders with volumes.")
    spaced = sum(spacing_of(v) is not None for v in vols)
    note = (f"{len(vols)} volumes read whole (one per folder), turned to RAS+; "
            + ("resampled to one physical spacing (the training volumes' median) before cropping/padding to the model's cube."
               if spaced == len(vols) else
               f"{len(vols) - spaced} without a known voxel spacing, so all are resized to a common grid, not a common spacing."))
    return ImageSet(images=vols, targets=np.asarray(labels, dtype=np.int64), classes=classes,
                    task="binary" if len(classes) == 2 else "multiclass", groups=np.asarray(groups), modalities=modalities,
                    source=folder.name, provenance=f"volume folder {folder}", intensity=intensity, formats=sorted(kinds),
                    notes=[note])
