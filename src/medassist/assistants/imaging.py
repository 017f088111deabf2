"""The diagnosis assistant for images: "what does this image most likely show, how sure are we,
and where did the model look?" Train on DICOM/NIfTI/PNG folders, path,label CSVs or MedMNIST
files; predict one image (or volume) with a Grad-CAM overlay; evaluate on labelled images.

The demo uses MedMNIST files when the user has fetched them (``medassist data fetch medmnist``)
and otherwise a clearly labelled synthetic set: synthetic demo data, not for clinical use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.console import Console

from medassist.data.io.images import ImageSet, load_image_data
from medassist.data.synthetic_images import SYNTHETIC_NOTICE, synthetic_images
from medassist.exceptions import ConfigError
from medassist.options import ModelSize, look_up_option
from medassist.pipeline.imaging import (
    IMAGE_MODELS,
    PRESET_LR,
    TASK,
    ImageSpec,
    ImageTrainOutcome,
    evaluate_images,
    predict_image,
    train_images,
)
from medassist.privacy.ledger import PrivacyLedger
from medassist.registry.bundle import ModelBundle, load_bundle
from medassist.settings import Settings
from medassist.training import Monitor, TrainConfig
from medassist.training.privacy import privacy_config

_LABELS_FROM_DATA = "does not apply to images: labels come from class folders, the CSV's label column or the .npz file."


@dataclass(frozen=True, kw_only=True)
class ImageTrainOptions:
    """What ``medassist train --task image`` accepts; any other train option is refused by name.

    ``dp_epsilon`` is honoured: DP-SGD through the Trainer, BatchNorm converted to GroupNorm,
    a fixed input normalisation, ε spent written to the model card and the privacy ledger.
    """

    model: str | None = None
    size: ModelSize = ModelSize.BASE
    seed: int = 0
    epochs: int | None = None
    window: str | None = None
    init_from: Path | None = None
    class_weight: str = "none"
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0

    REFUSED: ClassVar[dict[str, str]] = {
        "target": f"--target {_LABELS_FROM_DATA}", "id_column": f"--id-column {_LABELS_FROM_DATA}",
        "smiles_column": f"--smiles-column {_LABELS_FROM_DATA}", "treatment_column": f"--treatment-column {_LABELS_FROM_DATA}",
    }

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", look_up_option(self.size, ModelSize, name="model size"))
        privacy_config(self.dp_epsilon, delta=self.dp_delta, max_grad_norm=self.dp_max_grad_norm)  # checks the DP values


def default_image_config(*, seed: int = 0, epochs: int | None = None, batch_size: int = 128,
                         size: ModelSize | str = ModelSize.BASE) -> TrainConfig:
    """Training defaults: AdamW (the preset's learning rate), cosine schedule with warm-up, early
    stopping on validation AUC."""
    lr = PRESET_LR[look_up_option(size, ModelSize, name="model size")]
    return TrainConfig(epochs=epochs or 30, batch_size=batch_size, lr=lr, weight_decay=1e-4, patience=8, seed=seed,
                       monitor=Monitor.VAL_METRIC)


def train_image_diagnosis(
    data: str | Path | ImageSet, *, out: Path, model: str = "resnet18", size: ModelSize | str = ModelSize.BASE, seed: int = 0,
    epochs: int | None = None, window: str | None = None, class_weight: str = "balanced", augment: bool = True,
    image_size: int | None = None, dp_epsilon: float | None = None, dp_delta: float = 1e-5, dp_max_grad_norm: float = 1.0,
    init_from: str | Path | None = None, overwrite: bool = False, progress: bool = True, console: Console | None = None,
) -> ImageTrainOutcome:
    """Train an image classifier and write a bundle (task ``diagnosis-image``).

    With ``dp_epsilon`` the network trains with DP-SGD to that ε (``class_weight`` must then be
    ``"none"``); the run is checked against and recorded in the privacy ledger. ``init_from``
    starts the network from a local checkpoint (see ``load_initial_weights``).
    """
    if model not in IMAGE_MODELS:
        from medassist.options import unknown_name_error

        raise unknown_name_error(model, list(IMAGE_MODELS), kind="image model")
    size = look_up_option(size, ModelSize, name="model size")
    cfg = default_image_config(seed=seed, epochs=epochs, size=size)
    privacy = privacy_config(dp_epsilon, delta=dp_delta, max_grad_norm=dp_max_grad_norm)
    ledger = None
    if privacy is not None:
        cfg = TrainConfig.from_dict({**cfg.to_dict(), "privacy": privacy.to_dict()})
        settings = Settings()
        ledger = PrivacyLedger(path=settings.privacy_ledger_path, total_epsilon=settings.privacy_budget_epsilon)
    spec = ImageSpec(model=model, size=size, seed=seed, window=window, class_weight=class_weight, augment=augment,
                     image_size=image_size, init_from=str(init_from) if init_from else None, train=cfg)  # checked before the images are read
    if init_from is not None and not Path(init_from).exists():
        from medassist.exceptions import DataError

        raise DataError(f"--init-from {init_from}: no such file or folder.")
    dataset = data if isinstance(data, ImageSet) else load_image_data(data, window=window)
    return train_images(dataset, spec=spec, out_dir=Path(out), overwrite=overwrite, progress=progress, console=console,
                        ledger=ledger)


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
