"""Images from any supported file, and labelled image sets from folders, CSVs and ``.npz``.

``read_image(path)`` gives float32 slices (K, C, H, W) in [0, 1] from a DICOM (K frames), a
NIfTI (K axial slices), or a PNG/JPEG (K = 1, grey or RGB). ``load_image_data(source)`` builds an
``ImageSet`` from

- a labelled folder: ``DIR/<class name>/*.{dcm,png,jpg,nii,nii.gz}`` (or nested series folders),
- a CSV with the columns ``path,label`` (paths relative to the CSV's folder),
- a MedMNIST-layout ``.npz`` (see ``medmnist.py``).

A volume or multi-frame file contributes each slice as an image; all slices of one patient
(PatientID, else series, else file) share a group, so splits never separate them.

Example:
    >>> data = load_image_data("studies/")      # studies/normal/*.dcm, studies/pneumonia/*.dcm
    >>> data.classes, len(data)
    (['normal', 'pneumonia'], 240)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from medassist.exceptions import DataError, DataFileNotFoundError, SchemaError

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Positive-class names of a binary label, in order of preference (as for tables).
POSITIVE_NAMES = ("1", "true", "yes", "positive", "abnormal", "disease", "malignant", "pneumonia", "lesion", "case")


@dataclass(kw_only=True)
class ImageSet:
    """A labelled set of 2D images.

    Attributes:
        images: uint8 (N, C, H, W) array (scale 1/255), float32 array in [0, 1], or a list of
            float32 (C, H, W) arrays of different sizes.
        targets: class index (N,) int64, or (N, L) float32 0/1 for multi-label.
        classes: class (or label) names.
        task: "binary", "multiclass" or "multilabel"; ``ordinal`` marks ordered classes.
        groups: (N,) patient/series/file key per image, for grouped splits.
        modalities: DICOM Modality per image ("" when unknown).
        splits: official train/val/test positions (MedMNIST), else None.
    """

    images: np.ndarray | list[np.ndarray]
    targets: np.ndarray
    classes: list[str]
    task: str
    groups: np.ndarray
    modalities: list[str]
    source: str
    provenance: str
    intensity: str
    splits: dict[str, np.ndarray] | None = None
    ordinal: bool = False
    positive_class: str | None = None
    notes: list[str] = field(default_factory=list)
    synthetic: bool = False
    #: File formats the images came from ("picture", "dicom", "nifti", "npz"), for the bundle.
    formats: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, i: int) -> np.ndarray:
        x = self.images[i]
        return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else np.asarray(x, dtype=np.float32)


@dataclass(frozen=True, kw_only=True)
class ReadImage:
    slices: np.ndarray  # (K, C, H, W) float32 [0, 1]
    modality: str
    group: str
    intensity: str
    kind: str  # "dicom" | "nifti" | "picture"


def _read_picture(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32)
                hi = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
                return (arr / hi)[None]
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except UnidentifiedImageError as e:
        raise DataError(f"{path}: not a readable image file ({e}).") from e
    except OSError as e:
        raise DataError(f"{path}: the image is damaged or truncated ({e}).") from e
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[None, ..., 0]  # a grey picture (whatever mode it was saved in) has one channel
    return np.moveaxis(rgb, -1, 0)


def read_image(path: str | Path, *, window: str | None = None) -> ReadImage:
    """Read one file of any supported format as float32 slices (K, C, H, W) in [0, 1]."""
    from medassist.data.io.dicom import read_dicom
    from medassist.data.io.nifti import is_nifti, read_nifti

    path = Path(path)
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: file not found.")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; expected one image file (.dcm, .nii/.nii.gz, .png, .jpg).")
    name = path.name.lower()
    if is_nifti(name):
        img = read_nifti(path, window=window)
        return ReadImage(slices=img.slices, modality="", group=str(path), intensity=img.intensity, kind="nifti")
    if name.endswith(PIL_SUFFIXES):
        if window is not None:
            raise DataError(f"{path}: a '{window}' window needs CT values (DICOM or NIfTI); a picture file holds display values already.")
        return ReadImage(slices=_read_picture(path)[None], modality="", group=str(path), intensity="8/16-bit display values", kind="picture")
    if name.endswith(".npz") or name.endswith(".npy"):
        raise DataError(f"{path}: a NumPy file is not a single image; pass it as --data to train or evaluate.")
    dcm = read_dicom(path, window=window)  # .dcm or files without a suffix (DICOM often has none)
    slices = dcm.pixels if dcm.pixels.ndim == 4 else dcm.pixels[None]
    group = dcm.patient_id or dcm.series_uid or str(path)
    return ReadImage(slices=slices, modality=dcm.modality, group=group, intensity=dcm.intensity, kind="dicom")


def _is_image_file(p: Path) -> bool:
    from medassist.data.io.dicom import DICOM_SUFFIXES
    from medassist.data.io.nifti import is_nifti

    n = p.name.lower()
    return p.is_file() and not n.startswith(".") and (n.endswith(PIL_SUFFIXES + DICOM_SUFFIXES) or is_nifti(n))


def _label_order(labels: list[str]) -> tuple[list[str], str | None]:
    classes = sorted(set(labels))
    if len(classes) != 2:
        return classes, None
    lowered = {c.lower(): c for c in classes}
    named = [lowered[n] for n in POSITIVE_NAMES if n in lowered]
    return classes, named[0] if named else classes[1]


def _build(paths: list[Path], labels: list[str], *, source: str, provenance: str, window: str | None) -> ImageSet:
    images, targets, groups, modalities, intensities, formats = [], [], [], [], set(), set()
    notes: list[str] = []
    for p, lab in zip(paths, labels):
        img = read_image(p, window=window)
        keep = [k for k in range(len(img.slices)) if float(img.slices[k].max()) > float(img.slices[k].min())]
        if len(keep) < len(img.slices):
            notes.append(f"{p.name}: {len(img.slices) - len(keep)} blank slice(s) of {len(img.slices)} skipped.")
        for k in keep:
            images.append(img.slices[k])
            targets.append(lab)
            groups.append(img.group)
            modalities.append(img.modality)
        intensities.add(img.intensity.split(" (")[0])
        formats.add(img.kind)
    if not images:
        raise DataError(f"{source}: no usable (non-blank) images found.")
    classes, positive = _label_order(targets)
    if len(classes) < 2:
        raise DataError(f"{source}: every image has the label '{classes[0]}'; a classifier needs at least two classes.")
    index = {c: i for i, c in enumerate(classes)}
    counts = pd.Series(targets).value_counts()
    rare = counts[counts < 3]
    if len(rare):
        raise DataError(f"{source}: class(es) {', '.join(repr(c) for c in rare.index)} have fewer than 3 images; each class needs images in the training, validation and test splits.")
    return ImageSet(
        images=images, targets=np.array([index[t] for t in targets], dtype=np.int64), classes=classes,
        task="binary" if len(classes) == 2 else "multiclass", positive_class=positive, groups=np.array(groups),
        modalities=modalities, source=source, provenance=provenance, intensity="; ".join(sorted(intensities)), notes=notes,
        formats=sorted(formats),
    )


def load_folder(folder: str | Path, *, window: str | None = None) -> ImageSet:
    """A labelled folder: one sub-folder per class holding image files (searched recursively)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFileNotFoundError(f"{folder}: not a directory.")
    paths, labels = [], []
    loose = [p.name for p in folder.iterdir() if _is_image_file(p)]
    if loose:
        raise DataError(
            f"{folder}: image files lie directly in the folder ({', '.join(sorted(loose)[:3])}...); expected one sub-folder per class "
            "(e.g. normal/*.dcm, pneumonia/*.dcm) or a CSV of path,label."
        )
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in sub.rglob("*") if _is_image_file(p))
        paths += files
        labels += [sub.name] * len(files)
    if not paths:
        raise DataError(f"{folder}: no image files (.dcm, .nii/.nii.gz, .png, .jpg) in class sub-folders.")
    return _build(paths, labels, source=folder.name, provenance=f"labelled folder {folder}", window=window)


def load_csv(path: str | Path, *, window: str | None = None) -> ImageSet:
    """A CSV with columns ``path,label``; relative paths are read from the CSV's folder."""
    path = Path(path)
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: file not found.")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    cols = {c.strip().lower(): c for c in frame.columns}
    if "path" not in cols or "label" not in cols:
        raise SchemaError(f"{path}: expected the columns 'path' and 'label'; the file has: {', '.join(frame.columns)}.")
    paths, labels = [], []
    for row, (p, lab) in enumerate(zip(frame[cols["path"]], frame[cols["label"]]), start=1):
        if not str(lab).strip():
            raise DataError(f"{path}: row {row} has no label; an unlabelled image is never given a default class.")
        full = Path(p) if Path(p).is_absolute() else path.parent / p
        if not full.exists():
            raise DataFileNotFoundError(f"{path}: row {row}: image '{p}' not found (looked for {full}).")
        paths.append(full)
        labels.append(str(lab).strip())
    if not paths:
        raise DataError(f"{path}: no rows.")
    return _build(paths, labels, source=path.name, provenance=f"CSV of path,label {path}", window=window)


def is_image_csv(path: str | Path) -> bool:
    """True for a CSV whose header is exactly path,label (any case, any order)."""
    try:
        header = pd.read_csv(path, nrows=0).columns
    except Exception:  # not a CSV at all: not an image CSV
        return False
    return sorted(c.strip().lower() for c in header) == ["label", "path"]


def load_image_data(source: str | Path, *, window: str | None = None) -> ImageSet:
    """An ImageSet from a labelled folder, a path,label CSV or a MedMNIST ``.npz``."""
    from medassist.data.io.medmnist import load_medmnist

    p = Path(source)
    if not p.exists():
        raise DataFileNotFoundError(f"{p}: not found (expected a MedMNIST .npz, a labelled folder or a CSV of path,label).")
    if p.is_dir():
        from medassist.data.io.volumes import is_series_folder, load_volume_folder

        if is_series_folder(p):  # class/<series folder>/: one volume per folder, classified whole
            return load_volume_folder(p, window=window)
        return load_folder(p, window=window)
    if p.name.lower().endswith(".npz"):
        if window is not None:
            raise DataError(f"{p}: MedMNIST images are 8-bit display values; a '{window}' window cannot be applied.")
        return load_medmnist(p)
    if p.name.lower().endswith(".csv"):
        return load_csv(p, window=window)
    raise DataError(f"{p}: expected a MedMNIST .npz, a labelled folder (class_name/*.dcm|png) or a CSV of path,label.")
