"""The diagnosis assistant for images: "what does this image most likely show, how sure are we,
and where did the model look?" Train on DICOM/NIfTI/PNG folders, path,label CSVs or MedMNIST
files; predict one image (or volume) with a Grad-CAM overlay; evaluate on labelled images.

The demo uses MedMNIST files when the user has fetched them (``medassist data fetch medmnist``)
and otherwise a clearly labelled synthetic set: synthetic demo data, not for clinical use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from medassist.data.io.images import ImageSet, load_image_data
from medassist.data.synthetic_images import SYNTHETIC_NOTICE, synthetic_images
from medassist.exceptions import ConfigError
from medassist.pipeline.imaging import IMAGE_MODELS, TASK, ImageSpec, ImageTrainOutcome, evaluate_images, predict_image, train_images
from medassist.registry.bundle import ModelBundle, load_bundle
from medassist.training import Monitor, TrainConfig


def default_image_config(*, seed: int = 0, epochs: int | None = None, batch_size: int = 128) -> TrainConfig:
    """Training defaults: AdamW 1e-3, cosine schedule, early stopping on validation AUC."""
    return TrainConfig(epochs=epochs or 30, batch_size=batch_size, lr=1e-3, weight_decay=1e-4, patience=8, seed=seed,
                       monitor=Monitor.VAL_METRIC)


def train_image_diagnosis(
    data: str | Path | ImageSet, *, out: Path, model: str = "resnet18", size: str = "small", seed: int = 0,
    epochs: int | None = None, window: str | None = None, class_weight: str = "balanced", augment: bool = True,
    image_size: int | None = None, overwrite: bool = False, progress: bool = True, console: Console | None = None,
) -> ImageTrainOutcome:
    """Train an image classifier and write a bundle (task ``diagnosis-image``)."""
    if model not in IMAGE_MODELS:
        from medassist.options import unknown_name_error

        raise unknown_name_error(model, list(IMAGE_MODELS), kind="image model")
    dataset = data if isinstance(data, ImageSet) else load_image_data(data, window=window)
    spec = ImageSpec(model=model, size=size, seed=seed, window=window, class_weight=class_weight, augment=augment,
                     image_size=image_size, train=default_image_config(seed=seed, epochs=epochs))
    return train_images(dataset, spec=spec, out_dir=Path(out), overwrite=overwrite, progress=progress, console=console)


def synthetic_image_set(*, n: int = 240, size: int = 28, seed: int = 0) -> ImageSet:
    """The demo's stand-in when no MedMNIST file is present: synthetic demo data, not for clinical use."""
    import numpy as np

    imgs, y, classes = synthetic_images(n=n, size=size, task="binary", seed=seed)
    return ImageSet(images=imgs, targets=y.astype(np.int64), classes=classes, task="binary", positive_class="lesion",
                    groups=np.array([f"syn{i}" for i in range(n)]), modalities=[""] * n, source="synthetic-lesions",
                    provenance=f"medassist.data.synthetic_images ({SYNTHETIC_NOTICE})", intensity="uint8 / 255",
                    synthetic=True, notes=[f"All images are {SYNTHETIC_NOTICE}."])


def demo_image_data(medmnist_dir: Path | None) -> ImageSet:
    """PneumoniaMNIST (or any MedMNIST file) from ``medmnist_dir`` when present, else the synthetic set."""
    if medmnist_dir is not None and Path(medmnist_dir).is_dir():
        files = sorted(Path(medmnist_dir).glob("pneumoniamnist*.npz")) or sorted(Path(medmnist_dir).glob("*mnist*.npz"))
        if files:
            return load_image_data(files[0])
    return synthetic_image_set()


class ImagingAssistant:
    """Predict and evaluate with an image-diagnosis bundle."""

    def __init__(self, *, bundle: ModelBundle) -> None:
        if bundle.task != TASK:
            raise ConfigError(f"{bundle.path}: a '{bundle.task}' bundle, not an image-diagnosis ('{TASK}') one.")
        self.bundle = bundle

    @classmethod
    def load(cls, path: str | Path) -> ImagingAssistant:
        return cls(bundle=load_bundle(path))

    def predict(self, image: str | Path, *, explain_path: Path | None = None) -> dict[str, Any]:
        return predict_image(self.bundle, image, explain_path=explain_path)

    def evaluate(self, data: str | Path | ImageSet, *, n_boot: int = 1000, report: Path | None = None) -> dict[str, Any]:
        window = self.bundle.featurizer.window
        dataset = data if isinstance(data, ImageSet) else load_image_data(data, window=window)
        return evaluate_images(self.bundle, dataset, n_boot=n_boot, report=report)
