"""Synthetic labelled images for tests and the demo: synthetic demo data, not for clinical use.

A "lesion" image holds a bright round blob on a textured background; a "normal" one does not.
Multi-class sets vary the blob's shape, multi-label sets combine independent findings. Writers
put the same images in every format medassist reads (PNG folder, CT DICOM series, NIfTI volumes,
MedMNIST ``.npz``), so the whole pipeline can be exercised offline. Nothing here resembles real
anatomy; never use it to judge a model's clinical worth.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

SYNTHETIC_NOTICE = "synthetic demo data, not for clinical use"
FINDINGS = ("blob", "bar", "ring")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.25 + 0.1 * np.sin(2 * np.pi * (xx * rng.uniform(0.5, 2) + yy * rng.uniform(0.5, 2)))
    return base + rng.normal(0, 0.04, (size, size))


def _draw(img: np.ndarray, finding: str, rng: np.random.Generator, *, contrast: float = 0.55,
          radius: tuple[float, float] = (0.12, 0.2)) -> None:
    size = img.shape[0]
    cy, cx = rng.uniform(0.3, 0.7, 2) * size
    r = rng.uniform(*radius) * size
    yy, xx = np.mgrid[0:size, 0:size]
    d = np.hypot(yy - cy, xx - cx)
    if finding == "blob":
        img += contrast * np.exp(-(d / r) ** 2)
    elif finding == "bar":
        img[(np.abs(yy - cy) < r / 3) & (np.abs(xx - cx) < 1.5 * r)] += 0.5
    else:  # ring
        img[(d > 0.7 * r) & (d < r)] += 0.5


def synthetic_images(
    *, n: int = 60, size: int = 28, task: str = "binary", channels: int = 1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images uint8 (N, C, H, W), targets and class names; synthetic demo data, not for clinical use.

    Args:
        task: "binary" (normal / lesion), "multiclass" (normal / blob / bar / ring) or
            "multilabel" (blob, bar, ring present or not; targets (N, 3) of 0/1).
    """
    rng = np.random.default_rng(seed)
    imgs = np.empty((n, channels, size, size), dtype=np.uint8)
    if task == "binary":
        classes, targets = ["normal", "lesion"], np.arange(n) % 2
    elif task == "multiclass":
        classes, targets = ["normal", *FINDINGS], np.arange(n) % 4
    elif task == "multilabel":
        classes, targets = list(FINDINGS), (rng.random((n, 3)) < 0.4).astype(np.int64)
    else:
        raise ValueError(f"task must be binary, multiclass or multilabel; got {task!r}.")
    for i in range(n):
        img = _background(rng, size)
        if task == "binary" and targets[i] == 1:
            _draw(img, "blob", rng)
        elif task == "multiclass" and targets[i] > 0:
            _draw(img, FINDINGS[targets[i] - 1], rng)
        elif task == "multilabel":
            for j, f in enumerate(FINDINGS):
                if targets[i, j]:
                    _draw(img, f, rng)
        grey = np.clip(img, 0, 1)
        if channels == 3:
            tint = rng.uniform(0.8, 1.0, 3)[:, None, None]
            imgs[i] = np.round(255 * np.clip(grey[None] * tint, 0, 1)).astype(np.uint8)
        else:
            imgs[i, 0] = np.round(255 * grey).astype(np.uint8)
    return imgs, targets, classes


def lesion_difficulty_set(
    *, n: int = 3000, size: int = 28, seed: int = 0, difficulty: tuple[float, float] = (0.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A binary lesion set whose difficulty is known per image: synthetic demo data, not for clinical use.

    Each image draws a difficulty d uniformly from ``difficulty`` (0: obvious, 1: barely there).
    A lesion's contrast falls from 0.5 to 0.06 and its radius from 0.16 to 0.06 of the side as d
    rises; every image has textured background, noise and one to three bright "vessel" streaks,
    and half of the normal images hold a faint ring (a look-alike that is not a lesion). So no
    model reaches AUC 1, and a model that only finds bright pixels is fooled.

    Returns:
        images uint8 (N, 1, H, W), labels (N,) 0/1 (normal / lesion), difficulty (N,).
    """
    rng = np.random.default_rng(seed)
    imgs = np.empty((n, 1, size, size), dtype=np.uint8)
    y = rng.permutation(np.arange(n) % 2)
    d = rng.uniform(*difficulty, n)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        img = _background(rng, size) + rng.normal(0, 0.03 + 0.05 * d[i], (size, size))
        for _ in range(rng.integers(1, 4)):  # streaks: bright, thin, anywhere
            a, c = rng.uniform(0, np.pi), rng.uniform(0.1, 0.9)
            img += 0.25 * np.exp(-(((xx - c) * np.cos(a) + (yy - 0.5) * np.sin(a)) * size / 0.8) ** 2)
        if y[i] == 1:
            _draw(img, "blob", rng, contrast=0.5 - 0.44 * d[i], radius=(0.16 - 0.1 * d[i], 0.17 - 0.1 * d[i]))
        elif rng.random() < 0.5:  # a faint ring: bright pixels where a lesion would be, but not one
            cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.08, 0.14)
            ring = np.abs(np.hypot(yy - cy, xx - cx) - r)
            img += 0.25 * np.exp(-(ring * size / 1.2) ** 2)
        imgs[i, 0] = np.round(255 * np.clip(img, 0, 1)).astype(np.uint8)
    return imgs, y.astype(np.int64), d


def write_lesion_npz(path: str | Path, *, n: int = 3000, size: int = 28, seed: int = 0) -> Path:
    """:func:`lesion_difficulty_set` in the official MedMNIST layout (70/10/20 split), with the
    per-image difficulty as ``{split}_difficulty``."""
    imgs, y, d = lesion_difficulty_set(n=n, size=size, seed=seed)
    a, b = int(0.7 * n), int(0.8 * n)
    path = Path(path)
    parts = {"train": slice(0, a), "val": slice(a, b), "test": slice(b, n)}
    arrays = {}
    for k, s in parts.items():
        arrays.update({f"{k}_images": imgs[s, 0], f"{k}_labels": y[s].reshape(-1, 1).astype(np.uint8), f"{k}_difficulty": d[s]})
    np.savez_compressed(path, allow_pickle=False, **arrays)  # numbers only; naming allow_pickle keeps it out of **arrays' keys
    return path


def write_medmnist_npz(path: str | Path, *, n: int = 60, size: int = 28, task: str = "binary", channels: int = 1, seed: int = 0) -> Path:
    """A synthetic file in the official MedMNIST layout (70/15/15 split)."""
    imgs, y, _ = synthetic_images(n=n, size=size, task=task, channels=channels, seed=seed)
    y = y.reshape(len(y), -1).astype(np.uint8)
    x = imgs[:, 0] if channels == 1 else np.moveaxis(imgs, 1, -1)
    a, b = int(0.7 * n), int(0.85 * n)
    path = Path(path)
    np.savez_compressed(path, train_images=x[:a], train_labels=y[:a], val_images=x[a:b], val_labels=y[a:b],
                        test_images=x[b:], test_labels=y[b:])
    return path


def write_png_folder(folder: str | Path, *, n: int = 30, size: int = 28, seed: int = 0) -> Path:
    """``folder/<class>/img_i.png`` of a binary synthetic set."""
    from PIL import Image

    imgs, y, classes = synthetic_images(n=n, size=size, seed=seed)
    folder = Path(folder)
    for i, (img, t) in enumerate(zip(imgs, y)):
        (folder / classes[t]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0]).save(folder / classes[t] / f"img_{i:03d}.png")
    return folder


def _ct_slices(rng: np.random.Generator, *, size: int, slices: int, lesion: range) -> Iterator[np.ndarray]:
    """``slices`` int16 (size, size) slices in a soft-tissue HU range; slice ``k`` holds a bright
    blob when ``k in lesion``."""
    for k in range(slices):
        img = _background(rng, size)
        if k in lesion:
            _draw(img, "blob", rng)
        yield np.round(np.clip(img, 0, 1) * 400 - 160).astype(np.int16)


def ct_dataset(hu: np.ndarray, *, patient: str, series_uid: str, instance: int, z: float):
    """One synthetic CT slice (a pydicom ``Dataset``) of ``hu`` (rows, columns) int16 HU at
    ImagePositionPatient ``(0, 0, z)``, with a soft-tissue window; callers set the geometry of
    a spaced volume over it."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(instance)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientName = "CT", patient, "SYNTHETIC^DEMO"
    ds.StudyDescription = SYNTHETIC_NOTICE
    ds.SeriesInstanceUID, ds.StudyInstanceUID = series_uid, generate_uid(entropy_srcs=[patient])
    ds.InstanceNumber, ds.ImagePositionPatient = instance, [0.0, 0.0, z]
    ds.Rows, ds.Columns = hu.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
    return ds


def write_dicom_folder(folder: str | Path, *, n_patients: int = 12, slices: int = 2, size: int = 24, seed: int = 0) -> Path:
    """``folder/<class>/<patient>_<k>.dcm``: one CT series of ``slices`` slices per patient."""
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(seed)
    classes = ["normal", "lesion"]
    folder = Path(folder)
    for p in range(n_patients):
        label = p % 2
        patient = f"SYN{p:04d}"
        series = generate_uid(entropy_srcs=[patient, "series", str(seed)])
        (folder / classes[label]).mkdir(parents=True, exist_ok=True)
        for k, hu in enumerate(_ct_slices(rng, size=size, slices=slices, lesion=range(slices) if label else range(0))):
            ds = ct_dataset(hu, patient=patient, series_uid=series, instance=k + 1, z=float(k))
            ds.save_as(folder / classes[label] / f"{patient}_{k}.dcm", enforce_file_format=True)
    return folder


def write_nifti_folder(folder: str | Path, *, n_volumes: int = 12, depth: int = 3, size: int = 24, seed: int = 0) -> Path:
    """``folder/<class>/vol_i.nii.gz``: small 3D volumes (every slice of a lesion volume holds it)."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    classes = ["normal", "lesion"]
    folder = Path(folder)
    for v in range(n_volumes):
        label = v % 2
        vol = np.empty((size, size, depth), dtype=np.float32)
        for k in range(depth):
            img = _background(rng, size)
            if label:
                _draw(img, "blob", rng)
            vol[:, :, k] = np.clip(img, 0, 1) * 1000
        (folder / classes[label]).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 2.0, 1.0])), folder / classes[label] / f"vol_{v:03d}.nii.gz")
    return folder


def synthetic_volumes(*, n: int = 20, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Volumes uint8 (N, D, H, W) and labels (N,) 0/1: a "lesion" volume holds a bright 3D blob
    on a noisy textured background. Synthetic demo data, not for clinical use."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[0:size, 0:size, 0:size]
    y = np.arange(n) % 2
    vols = np.empty((n, size, size, size), dtype=np.uint8)
    for i in range(n):
        v = 0.25 + 0.1 * np.sin(2 * np.pi * (xx + yy * rng.uniform(0.5, 2)) / size) + rng.normal(0, 0.05, (size,) * 3)
        if y[i]:
            c = rng.uniform(0.3, 0.7, 3) * size
            v += 0.5 * np.exp(-((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) / (0.15 * size) ** 2)
        vols[i] = np.round(255 * np.clip(v, 0, 1)).astype(np.uint8)
    return vols, y


def write_medmnist3d_npz(path: str | Path, *, n: int = 40, size: int = 16, seed: int = 0) -> Path:
    """Synthetic volumes in the MedMNIST-3D layout (``{split}_images`` (N, D, H, W) uint8, 70/15/15)."""
    vols, y = synthetic_volumes(n=n, size=size, seed=seed)
    a, b = int(0.7 * n), int(0.85 * n)
    path = Path(path)
    np.savez_compressed(path, train_images=vols[:a], train_labels=y[:a, None].astype(np.uint8), val_images=vols[a:b],
                        val_labels=y[a:b, None].astype(np.uint8), test_images=vols[b:], test_labels=y[b:, None].astype(np.uint8))
    return path


def write_dicom_series_folder(folder: str | Path, *, n_patients: int = 12, slices: int = 6, size: int = 16, seed: int = 0) -> Path:
    """``folder/<class>/<patient>/<k>.dcm``: one CT series (a volume) per patient folder; a lesion
    series holds a bright blob through its middle slices."""
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(seed)
    classes = ["normal", "lesion"]
    folder = Path(folder)
    for p in range(n_patients):
        label = p % 2
        patient = f"SYN{p:04d}"
        series = generate_uid(entropy_srcs=[patient, "volume", str(seed)])
        target = folder / classes[label] / patient
        target.mkdir(parents=True, exist_ok=True)
        lesion = range(1, slices - 1) if label else range(0)  # the middle slices
        for k, hu in enumerate(_ct_slices(rng, size=size, slices=slices, lesion=lesion)):
            ct_dataset(hu, patient=patient, series_uid=series, instance=k + 1, z=float(k)).save_as(target / f"{k}.dcm", enforce_file_format=True)
    return folder
