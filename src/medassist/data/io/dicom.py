"""DICOM images through pydicom: modality and VOI transforms, windows, series.

Pixel values go through the standard display pipeline, in this order (DICOM PS3.4 N.2):
modality LUT (Rescale Slope/Intercept, e.g. CT values in Hounsfield units) → VOI (a named
``window`` preset, else the file's VOI LUT or Window Center/Width, else its full range) →
MONOCHROME1 inversion (so bright always means dense) → intensities in [0, 1].

Every image comes out as float32 (C, H, W) with C = 1 (grey) or 3 (RGB; YBR is converted);
multi-frame files give (F, C, H, W). Compressed transfer syntaxes decode through the handlers
installed beside pydicom (pylibjpeg: JPEG, JPEG-LS, JPEG 2000, RLE); one that none can decode
raises a DataError naming the file and the transfer syntax.

Example:
    >>> img = read_dicom("CT_small.dcm", window="lung")
    >>> img.pixels.shape, img.modality
    ((1, 128, 128), 'CT')
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from medassist.exceptions import DataError, DataFileNotFoundError
from medassist.options import look_up_option


class Window(StrEnum):
    """Named CT windows (centre, width in Hounsfield units)."""

    LUNG = "lung"
    MEDIASTINUM = "mediastinum"
    BRAIN = "brain"
    BONE = "bone"
    ABDOMEN = "abdomen"


#: (centre, width) of each preset; the usual radiology values.
WINDOW_PRESETS: dict[Window, tuple[float, float]] = {
    Window.LUNG: (-600.0, 1500.0),
    Window.MEDIASTINUM: (50.0, 350.0),
    Window.BRAIN: (40.0, 80.0),
    Window.BONE: (400.0, 1800.0),
    Window.ABDOMEN: (40.0, 400.0),
}
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


@dataclass(frozen=True, kw_only=True)
class DicomImage:
    """One decoded DICOM file.

    Attributes:
        pixels: float32 in [0, 1], (C, H, W), or (F, C, H, W) for a multi-frame file.
        modality: the file's Modality (e.g. "CT"), "" when absent.
        series_uid / patient_id: identifiers for grouping (never logged).
        intensity: how raw values became [0, 1] (e.g. "window lung (C=-600, W=1500)").
    """

    pixels: np.ndarray
    modality: str
    series_uid: str
    patient_id: str
    path: Path
    intensity: str
    photometric: str
    transfer_syntax: str
    n_frames: int = 1
    notes: list[str] = field(default_factory=list)


def window_values(window: str | Window) -> tuple[float, float]:
    """(centre, width) of a named window preset (suggests the closest name if unknown)."""
    return WINDOW_PRESETS[look_up_option(window, Window, name="window")]


def apply_window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Linear VOI window (PS3.3 C.11.2.1.2) mapped to [0, 1]."""
    width = max(float(width), 1.0)
    low = centre - 0.5 - (width - 1) / 2
    return np.clip((values - low) / (width - 1), 0.0, 1.0).astype(np.float32)


def _first(value) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _read(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.exists():
        raise DataFileNotFoundError(f"{path}: file not found.")
    try:
        return pydicom.dcmread(str(path))
    except InvalidDicomError as e:
        raise DataError(f"{path}: not a DICOM file ({e}).") from e
    except Exception as e:  # pydicom raises many types for truncated/corrupt headers
        raise DataError(f"{path}: the DICOM header could not be read ({type(e).__name__}: {e}).") from e


def _transfer_syntax(ds) -> str:
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return f"{uid.name} ({uid})" if uid is not None else "unknown (no TransferSyntaxUID in the file meta)"


def _decode(ds, path: Path) -> np.ndarray:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DataError(f"{path}: the DICOM file holds no image (Modality {ds.get('Modality', '?')}, no Pixel Data).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ds.pixel_array
    except (NotImplementedError, RuntimeError) as e:
        raise DataError(
            f"{path}: cannot decode pixel data in transfer syntax {_transfer_syntax(ds)}; none of the installed "
            "decoders (pydicom, pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle) can read it. "
            "Convert the file to an uncompressed transfer syntax (e.g. 'gdcmconv --raw') or install a decoder for it."
        ) from e
    except (ValueError, AttributeError) as e:
        raise DataError(f"{path}: the pixel data is damaged or inconsistent with the header ({str(e).splitlines()[0]}).") from e


def read_dicom(path: str | Path, *, window: str | Window | None = None) -> DicomImage:
    """Read one DICOM file into [0, 1] float pixels; see the module docstring for the steps.

    Args:
        path: the file.
        window: a preset name (lung, mediastinum, brain, bone, abdomen) overriding the file's
            own VOI; only meaningful for CT (values in Hounsfield units).
    """
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    path = Path(path)
    ds = _read(path)
    raw = _decode(ds, path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    modality = str(ds.get("Modality", "") or "")
    notes: list[str] = []
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR"):
        # pydicom >= 3 returns YBR data already converted to RGB (``as_rgb=True``).
        rgb = apply_color_lut(raw, ds) if photometric == "PALETTE COLOR" else raw
        bits = int(ds.get("BitsStored", 8) or 8)
        scale = float(2**bits - 1) if rgb.dtype.kind in "ui" else max(float(np.max(rgb)), 1.0)
        if photometric == "PALETTE COLOR":
            scale = 65535.0 if rgb.dtype.itemsize > 1 else 255.0
        pix = np.clip(rgb.astype(np.float32) / scale, 0, 1)
        pix = np.moveaxis(pix, -1, -3)  # (..., H, W, 3) → (..., 3, H, W)
        intensity = f"colour ({photometric}) scaled by {scale:g}"
        if window is not None:
            raise DataError(f"{path}: a '{window}' window applies to greyscale CT values; this file is colour ({photometric}).")
    elif photometric in ("MONOCHROME1", "MONOCHROME2"):
        values = apply_modality_lut(raw, ds).astype(np.float32)
        slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        if window is not None:
            if modality and modality != "CT":
                raise DataError(
                    f"{path}: window preset '{window}' is defined in Hounsfield units for CT, but this file's Modality is {modality}; "
                    "leave --window out to use the file's own window."
                )
            c, w = window_values(window)
            pix = apply_window(values, c, w)
            intensity = f"window {look_up_option(window, Window).value} (C={c:g}, W={w:g}) after rescale slope {slope:g}, intercept {intercept:g}"
        elif "VOILUTSequence" in ds:
            voi = apply_voi_lut(values, ds, index=0).astype(np.float32)  # VOI acts on modality-LUT output
            lo, hi = float(voi.min()), float(voi.max())
            pix = ((voi - lo) / (hi - lo) if hi > lo else np.zeros_like(voi)).astype(np.float32)
            intensity = "the file's VOI LUT"
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            c, w = _first(ds.WindowCenter), _first(ds.WindowWidth)
            pix = apply_window(values, c, w)
            intensity = f"the file's window (C={c:g}, W={w:g}) after rescale slope {slope:g}, intercept {intercept:g}"
        else:
            lo, hi = (float(np.min(values)), float(np.max(values))) if values.size else (0.0, 0.0)
            pix = ((values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)).astype(np.float32)
            intensity = "min-max of the image (the file has no window)"
        if photometric == "MONOCHROME1":
            pix = 1.0 - pix
            intensity += ", MONOCHROME1 inverted"
        pix = pix[..., None, :, :]  # add the channel axis
    else:
        raise DataError(f"{path}: photometric interpretation {photometric} is not supported (expected MONOCHROME1/2, RGB, YBR or PALETTE COLOR).")
    if n_frames == 1 and pix.ndim == 4:
        pix = pix[0]
    return DicomImage(
        pixels=np.ascontiguousarray(pix, dtype=np.float32), modality=modality,
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""), patient_id=str(ds.get("PatientID", "") or ""),
        path=path, intensity=intensity, photometric=photometric, transfer_syntax=_transfer_syntax(ds),
        n_frames=n_frames, notes=notes,
    )


@dataclass(frozen=True, kw_only=True)
class DicomSeries:
    """The files of one series (same SeriesInstanceUID), ordered by position or instance number."""

    series_uid: str
    files: list[Path]
    modality: str
    patient_id: str


def group_series(folder: str | Path) -> list[DicomSeries]:
    """Group the DICOM files under ``folder`` (recursively) into series by SeriesInstanceUID.

    Files are ordered within a series by ImagePositionPatient along the slice normal when present,
    else by InstanceNumber, else by name. Non-DICOM files are skipped; a folder without any DICOM
    file raises.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    if not folder.is_dir():
        raise DataFileNotFoundError(f"{folder}: not a directory.")
    groups: dict[str, list[tuple[tuple, Path, str, str]]] = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        try:
            ds = pydicom.dcmread(str(p), stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, KeyError, AttributeError, TypeError, EOFError):
            continue
        if "SOPClassUID" not in ds and "Modality" not in ds:
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or f"(no series UID) {p.name}")
        pos = ds.get("ImagePositionPatient")
        key = (0, float(pos[2]), p.name) if pos is not None and len(pos) == 3 else (1, float(ds.get("InstanceNumber", 0) or 0), p.name)
        groups.setdefault(uid, []).append((key, p, str(ds.get("Modality", "") or ""), str(ds.get("PatientID", "") or "")))
    if not groups:
        raise DataError(f"{folder}: no DICOM files found.")
    out = []
    for uid, items in sorted(groups.items()):
        items.sort(key=lambda t: t[0])
        out.append(DicomSeries(series_uid=uid, files=[t[1] for t in items], modality=items[0][2], patient_id=items[0][3]))
    return out
