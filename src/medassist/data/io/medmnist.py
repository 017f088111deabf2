"""MedMNIST ``.npz`` files in the official layout: ``{train,val,test}_{images,labels}``.

Every 2D flavour: binary (PneumoniaMNIST, BreastMNIST), multi-class (DermaMNIST, BloodMNIST,
...), multi-label (ChestMNIST: labels (N, 14) of 0/1) and ordinal (RetinaMNIST, trained and
scored as multi-class as in the MedMNIST v2 paper); sizes 28, 64, 128 and 224. Images are
(N, H, W) grey or (N, H, W, 3) RGB uint8; they are kept as uint8 (N, C, H, W) until featurized.

Example:
    >>> ds = load_medmnist("pneumoniamnist.npz")
    >>> ds.task, ds.classes, ds.images.shape
    ('binary', ['normal', 'pneumonia'], (5856, 1, 28, 28))
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from medassist.data.io.images import ImageSet
from medassist.exceptions import DataError, DataFileNotFoundError, SchemaError

SPLITS = ("train", "val", "test")
SIZES = (28, 64, 128, 224)

#: Official facts per 2D data set (MedMNIST v2/v3 ``INFO``): task, label names, licence.
MEDMNIST_INFO: dict[str, dict] = {
    "pathmnist": {"task": "multiclass", "labels": ["adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                  "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium"], "licence": "CC BY 4.0"},
    "chestmnist": {"task": "multilabel", "labels": ["atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule",
                   "pneumonia", "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"],
                   "licence": "CC BY 4.0"},
    "dermamnist": {"task": "multiclass", "labels": ["actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions"],
                   "licence": "CC BY-NC 4.0"},
    "octmnist": {"task": "multiclass", "labels": ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
                 "licence": "CC BY 4.0"},
    "pneumoniamnist": {"task": "binary", "labels": ["normal", "pneumonia"], "licence": "CC BY 4.0"},
    "retinamnist": {"task": "ordinal", "labels": ["0", "1", "2", "3", "4"], "licence": "CC BY 4.0"},
    "breastmnist": {"task": "binary", "labels": ["malignant", "normal, benign"], "licence": "CC BY 4.0"},
    "bloodmnist": {"task": "multiclass", "labels": ["basophil", "eosinophil", "erythroblast", "immature granulocytes", "lymphocyte",
                   "monocyte", "neutrophil", "platelet"], "licence": "CC BY 4.0"},
    "tissuemnist": {"task": "multiclass", "labels": ["Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
                    "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes", "Podocytes",
                    "Proximal Tubule Segments", "Thick Ascending Limb"], "licence": "CC BY 4.0"},
    "organamnist": {"task": "multiclass", "labels": ["bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
                    "liver", "lung-left", "lung-right", "pancreas", "spleen"], "licence": "CC BY 4.0"},
}


def medmnist_name(path: str | Path) -> str | None:
    """'pneumoniamnist' from 'pneumoniamnist_64.npz' (None when the name is not a known set)."""
    stem = re.sub(r"(_\d+)?\.npz$", "", Path(path).name.lower())
    return stem if stem in MEDMNIST_INFO else None


def load_medmnist(path: str | Path, *, name: str | None = None) -> ImageSet:
    """Read an official-layout MedMNIST file (or any file in the same layout).

    Args:
        path: the ``.npz`` file.
        name: the data set's name when the file name does not say it (label names come from it).
    """
    path = Path(path)
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: file not found.")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e}).") from e
    missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in arrays]
    if missing:
        raise SchemaError(
            f"{path}: missing array(s) {', '.join(missing)}; expected the MedMNIST layout train_images, train_labels, "
            f"val_images, val_labels, test_images, test_labels. The file has: {', '.join(sorted(arrays)) or 'nothing'}."
        )
    images, labels, split_of = [], [], []
    shape = None
    for s in SPLITS:
        x, y = arrays[f"{s}_images"], arrays[f"{s}_labels"]
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[-1] in (1, 3):
            x = np.moveaxis(x, -1, 1)
        elif x.ndim == 4 and min(x.shape[1:]) >= 8:  # MedMNIST-3D: (N, D, H, W) volumes, one channel
            x = x[:, None]
        elif x.ndim == 5 and x.shape[1] == 1:  # (N, 1, D, H, W)
            pass
        else:
            raise DataError(f"{path}: {s}_images has shape {x.shape}; expected (N, H, W), (N, H, W, 3) or MedMNIST-3D volumes (N, D, H, W).")
        if shape is not None and x.shape[1:] != shape:
            raise DataError(f"{path}: {s}_images has images of shape {x.shape[1:]} but train_images has {shape}.")
        shape = x.shape[1:]
        if x.dtype != np.uint8:
            raise DataError(f"{path}: {s}_images has dtype {x.dtype}; expected uint8 as in the official files.")
        y = np.asarray(y)
        if y.ndim == 1:
            y = y[:, None]
        if len(y) != len(x):
            raise DataError(f"{path}: {s}_labels has {len(y)} rows but {s}_images has {len(x)} images.")
        if len(x) == 0:
            raise DataError(f"{path}: the {s} split is empty.")
        images.append(x)
        labels.append(y)
        split_of.append(np.full(len(x), s))
    y_all = np.concatenate(labels)
    if not np.issubdtype(y_all.dtype, np.integer) or y_all.min() < 0:
        raise DataError(f"{path}: labels must be non-negative integers; got dtype {y_all.dtype}, minimum {y_all.min()}.")
    name = name or medmnist_name(path)
    info = MEDMNIST_INFO.get(name or "", {})
    if y_all.shape[1] > 1:
        task = "multilabel"
        if y_all.max() > 1:
            raise DataError(f"{path}: multi-label labels (shape {y_all.shape}) must be 0 or 1; found {y_all.max()}.")
        n = y_all.shape[1]
        targets = y_all.astype(np.float32)
    else:
        n = int(y_all.max()) + 1
        task = info.get("task") or ("binary" if n <= 2 else "multiclass")
        targets = y_all[:, 0].astype(np.int64)
    names: list[str] = info["labels"] if info and len(info.get("labels", [])) == max(n, 2) else [str(i) for i in range(max(n, 2))]
    if task != "multilabel" and max(n, 2) != len(names):
        names = [str(i) for i in range(max(n, 2))]
    split = np.concatenate(split_of)
    return ImageSet(
        images=np.concatenate(images), targets=targets, classes=list(names),
        task="multiclass" if task == "ordinal" else task, ordinal=task == "ordinal",
        groups=np.array([f"{s}:{i}" for i, s in enumerate(split)]), modalities=[""] * len(split),
        splits={s: np.flatnonzero(split == s) for s in SPLITS}, source=path.name,
        provenance=f"MedMNIST file {path.name}" + (f" ({name}, {info.get('licence', '')})" if info else ""),
        intensity="uint8 / 255", notes=[], formats=["npz"],
    )
