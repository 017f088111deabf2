"""Diagnosis from images: preprocess → build → train → evaluate → bundle, and using a bundle.

- Splits: the file's official splits (MedMNIST), else stratified splits grouped by patient
  (DICOM PatientID / series / file), so slices of one patient never straddle splits.
- Featurizer fitted on the training split only; augmentation (a small affine, contrast and
  noise) on training batches only.
- Class imbalance: class-weighted cross-entropy (binary/multi-class) or BCE with per-label
  ``pos_weight`` (multi-label); the prior shift the weights cause is undone on the head's bias
  afterwards, so probabilities are unweighted again.
- Presets and recipe: ``base`` (the default) trains with mixup, label smoothing, EMA weights and
  channels-last convolutions (``RECIPES``; the parts live in ``imaging_recipe``); ``--init-from``
  starts from a local checkpoint. Calibration: temperature and class biases on validation.
- Volumes (N, 1, D, H, W) (MedMNIST-3D, DICOM series / NIfTI volume folders) take the same path
  with a ``VolumeFeaturizer`` and the family's MONAI 3D network; Grad-CAM shows axial slices.
- Evaluation: the existing classification metrics with bootstrap CIs, plus the MedMNIST AUC/ACC;
  per-label AUC for multi-label. Grad-CAM overlays of test images go into the report. A logistic
  regression on pooled pixels, fitted on the same training split, is compared on the same test
  images (paired bootstrap AUC difference) and stored as JSON coefficients for ``evaluate``.
- Differential privacy (``spec.train.privacy``): DP-SGD through the Trainer (BatchNorm becomes
  GroupNorm, recorded in the model spec), checked against and recorded in the privacy ledger.
  Nothing else learnt from the training images may escape the guarantee, so the featurizer
  keeps a fixed normalisation (no per-channel mean/std of the training pixels) and class
  weights (counts of training labels) are refused.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from medassist.data.io.images import ImageSet, read_image
from medassist.data.splits import split_indices
from medassist.data.synthetic_images import SYNTHETIC_NOTICE
from medassist.evaluation.calibration import calibration_warning
from medassist.evaluation.metrics import compute_ece, evaluate_classification
from medassist.evaluation.model_card import DISCLAIMER, ModelCard, default_card_texts
from medassist.evaluation.multilabel import (
    evaluate_multilabel,
    medmnist_acc,
    medmnist_auc,
)
from medassist.evaluation.report import write_report
from medassist.exceptions import ConfigError, DataError
from medassist.explain.gradcam import grad_cam, overlay_png, save_overlay, volume_slices
from medassist.featurizers.images import ImageFeaturizer, VolumeFeaturizer
from medassist.models import build_model, count_parameters
from medassist.models.imaging import HasGradCamLayer, HasHead
from medassist.options import ModelSize, look_up_option
from medassist.pipeline.imaging_baselines import (
    BASELINES_FILE,
    baseline_probabilities,
    baseline_row,
    fit_image_baseline,
)
from medassist.pipeline.imaging_recipe import (
    BatchAugment,
    EMAModel,
    ImageTensorDataset,
    load_initial_weights,
)
from medassist.privacy.ledger import PrivacyLedger
from medassist.registry.bundle import ModelBundle, check_out_dir, save_bundle
from medassist.training import Monitor, TrainConfig, Trainer, TrainResult, class_weights
from medassist.training.privacy import private_model_spec
from medassist.training.trainer import TrainerCallback
from medassist.types import TaskSchema

IMAGE_MODELS = ("resnet18", "resnet50", "densenet121")
TASK = "diagnosis-image"


@dataclass(frozen=True, kw_only=True)
class ImageSpec:
    """How an image model is built and trained."""

    model: str = "resnet18"
    size: ModelSize = ModelSize.BASE
    seed: int = 0
    image_size: int | None = None
    window: str | None = None
    augment: bool = True
    class_weight: str = "balanced"
    n_boot: int = 1000
    n_gradcam: int = 4
    #: None: the preset's recipe (``RECIPES``).
    recipe: Recipe | None = None
    #: A local checkpoint to start from (``--init-from``): safetensors, a bundle folder, or a state dict file.
    init_from: str | None = None
    #: Fit the pixel logistic-regression baseline beside the network (and compare on the test split).
    baseline: bool = True
    #: None: the preset's defaults (``PRESET_LR``, 30 epochs, early stopping on validation AUC).
    train: TrainConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", look_up_option(self.size, ModelSize, name="model size"))
        if self.recipe is None:
            object.__setattr__(self, "recipe", RECIPES[self.size])
        if self.train is None:
            object.__setattr__(self, "train", _preset_train_config(self.size, self.seed))
        if self.model not in IMAGE_MODELS:
            from medassist.options import unknown_name_error

            raise unknown_name_error(self.model, list(IMAGE_MODELS), kind="image model")
        if self.class_weight not in ("none", "balanced"):
            raise ConfigError(f"The 'class_weight' parameter of ImageSpec must be 'none' or 'balanced'. Got {self.class_weight!r} instead.")
        if self.train_config.privacy is not None and self.class_weight == "balanced":
            raise ConfigError("--class-weight balanced cannot be combined with --dp-epsilon: the weights are counts of the training "
                              "labels, which DP-SGD does not cover; use --class-weight none.")

    # ``train`` and ``recipe`` are None only as arguments ("the preset's"); ``__post_init__`` fills
    # them in, and these give them their filled-in types.
    @property
    def train_config(self) -> TrainConfig:
        """``train``, or the preset's defaults when none was given."""
        return self.train if self.train is not None else _preset_train_config(self.size, self.seed)

    @property
    def preset_recipe(self) -> Recipe:
        """``recipe``, or the preset's (``RECIPES``) when none was given."""
        return self.recipe if self.recipe is not None else RECIPES[self.size]


def make_augmentation(seed: int, spatial_dims: int = 2) -> BatchAugment:
    """Mild, anatomy-preserving augmentation: small affine, contrast, noise (no flips, since left
    and right matter in medical images); vectorised over a batch (see imaging_recipe)."""
    return BatchAugment(seed=seed, spatial_dims=spatial_dims)


def is_volumetric(data: ImageSet) -> bool:
    """Volumes (N, 1, D, H, W) (MedMNIST-3D, NIfTI volumes, DICOM series), not 2D images."""
    first = data.images[0] if len(data) else None
    return first is not None and np.ndim(first) == 4


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """How a preset trains beyond the TrainConfig (each off for ``small``, the tests' preset).

    label_smoothing: cross-entropy target smoothing; mixup: Beta(α, α) of batch mixing (0: off);
    ema: decay of the averaged weights that are validated and kept (0: off); channels_last:
    memory order of the convolutions.
    """

    label_smoothing: float = 0.0
    mixup: float = 0.0
    ema: float = 0.0
    channels_last: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"label_smoothing": self.label_smoothing, "mixup": self.mixup, "ema": self.ema, "channels_last": self.channels_last}


#: Peak AdamW learning rate of each preset: ``base`` (mixup, EMA) gained 0.06 test AUC going from
#: 1e-3 to 3e-3 on the lesion benchmark (benchmarks/imaging.py); ``large`` keeps the MedMNIST v2 paper's 1e-3.
PRESET_LR = {ModelSize.SMALL: 1e-3, ModelSize.BASE: 3e-3, ModelSize.LARGE: 1e-3}

#: The recipe of each preset (measured in benchmarks/imaging.py; see its README section).
RECIPES = {
    ModelSize.SMALL: Recipe(),
    ModelSize.BASE: Recipe(label_smoothing=0.05, mixup=0.2, ema=0.99, channels_last=True),
    ModelSize.LARGE: Recipe(label_smoothing=0.05, mixup=0.2, ema=0.99, channels_last=True),
}


def _preset_train_config(size: ModelSize, seed: int) -> TrainConfig:
    """The preset's training defaults (``ImageSpec.train`` when none is given)."""
    return TrainConfig(epochs=30, batch_size=128, lr=PRESET_LR[size], weight_decay=1e-4, patience=8, seed=seed,
                       monitor=Monitor.VAL_METRIC)


def probabilities(logits: np.ndarray, *, task: str, temperature: float = 1.0, bias: list[float] | None = None) -> np.ndarray:
    """Probabilities (N, K) of logits (N, K): softmax (sigmoid for multi-label) of logits / T + bias."""
    z = torch.as_tensor(logits, dtype=torch.float64) / temperature
    if bias is not None:
        z = z + torch.as_tensor(bias, dtype=torch.float64)
    return (torch.sigmoid(z) if task == "multilabel" else torch.softmax(z, dim=1)).numpy()


def _metric_fn(task: str):
    def metric(logits: np.ndarray, targets: np.ndarray) -> float:
        p = probabilities(logits, task=task)
        v = medmnist_auc(p, targets, task=task)
        return v if math.isfinite(v) else medmnist_acc(p, targets, task=task)

    return metric


def _loss(task: str, targets: np.ndarray, n_out: int, balanced: bool, *, smoothing: float = 0.0) -> tuple[nn.Module, np.ndarray | None]:
    if task == "multilabel":
        pos = targets.sum(axis=0)
        w = np.where(pos > 0, np.clip((len(targets) - pos) / np.maximum(pos, 1), 1.0, 50.0), 1.0) if balanced else None
        return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(w, dtype=torch.float32) if w is not None else None), w
    w = class_weights(targets, n_out) if balanced else None
    return nn.CrossEntropyLoss(weight=torch.tensor(w, dtype=torch.float32) if w is not None else None, label_smoothing=smoothing), w


def _undo_weighting(model: nn.Module, weights: np.ndarray | None) -> None:
    """Weighted CE fits p_w(c|x) ∝ w_c p(c|x); BCE with pos_weight w shifts the logit by log w.
    Either way, subtracting log w from the head's bias restores unweighted probabilities."""
    if weights is None:
        return
    if not isinstance(model, HasHead):
        raise TypeError(f"{type(model).__name__} has no head() to correct the class weighting on.")
    with torch.no_grad():
        bias = model.head().bias
        bias.sub_(torch.log(torch.as_tensor(np.where(weights > 0, weights, 1.0), dtype=bias.dtype)))


def _gradcam_layer(model: nn.Module) -> nn.Module:
    if not isinstance(model, HasGradCamLayer):
        raise TypeError(f"{type(model).__name__} names no layer for Grad-CAM (gradcam_layer()).")
    return model.gradcam_layer()


def _to_memory_format(model: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    # Module.to(memory_format=...) is supported at runtime, but torch's stubs list no overload for it.
    return model.to(memory_format=memory_format)  # type: ignore[call-overload]


def fit_temperature_and_bias(logits: np.ndarray, y: np.ndarray) -> tuple[float, list[float]]:
    """Temperature T and class biases b (b[0] = 0) minimising the validation NLL of softmax(z / T + b).

    Temperature alone rescales confidence but cannot move it: a network stopped early on AUC (a
    ranking metric) or trained with mixup and label smoothing may be shifted towards one class as
    a whole, which only a bias corrects (for two classes this is Platt scaling). Both are fitted
    on the validation split; T is kept in [0.05, 20] and each bias in [-5, 5].
    """
    z = torch.as_tensor(logits, dtype=torch.float64)
    t = torch.as_tensor(y, dtype=torch.int64)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(z.shape[1] - 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t, b], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        full = torch.cat([torch.zeros(1, dtype=torch.float64), b])
        loss = nn.functional.cross_entropy(z / log_t.exp() + full, t) + 1e-4 * (b**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    temperature = float(np.clip(np.exp(float(log_t.detach())), 0.05, 20.0))
    bias = [0.0, *np.clip(b.detach().numpy(), -5, 5).tolist()]
    if not np.isfinite(temperature) or not np.all(np.isfinite(bias)):
        return 1.0, [0.0] * z.shape[1]
    return temperature, [float(v) for v in bias]


def _fit_sigmoid_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """One temperature for all labels, minimising validation BCE (a grid is enough in 1-D)."""
    z, t = torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    grid = np.exp(np.linspace(np.log(0.25), np.log(4.0), 81))
    nll = [float(nn.functional.binary_cross_entropy_with_logits(z / T, t)) for T in grid]
    return float(grid[int(np.argmin(nll))])


@dataclass
class FittedImages:
    featurizer: ImageFeaturizer | VolumeFeaturizer
    model: nn.Module
    model_spec: dict[str, Any]
    temperature: float
    result: TrainResult
    bias: list[float] | None = None
    recipe: Recipe = field(default_factory=Recipe)
    #: ``load_initial_weights``' report when the network started from ``--init-from``.
    init: dict[str, Any] | None = None


def _splits(data: ImageSet, seed: int) -> dict[str, np.ndarray]:
    if data.splits is not None:
        return data.splits
    y = data.targets if data.task != "multilabel" else data.targets.argmax(axis=1)
    groups = data.groups if len(np.unique(data.groups)) < len(data.groups) else None
    s = split_indices(y, groups=groups, seed=seed)
    return {"train": s.train, "val": s.val, "test": s.test}


def _subset(images: Any, idx: np.ndarray) -> Any:
    return [images[i] for i in idx] if isinstance(images, list) else images[idx]


def fit_images(data: ImageSet, splits: dict[str, np.ndarray], *, spec: ImageSpec, progress: bool = False,
               console: Console | None = None, checkpoint_dir: Path | None = None,
               callbacks: list[TrainerCallback] | None = None) -> FittedImages:
    """Fit featurizer (training split), network (Trainer) and temperature (validation split)."""
    tr, va = splits["train"], splits["val"]
    # Under DP the per-channel mean/std of the training pixels would be released without noise.
    dims = 3 if is_volumetric(data) else 2
    featurizer = VolumeFeaturizer if dims == 3 else ImageFeaturizer
    fz = featurizer(size=spec.image_size, window=spec.window, standardize=spec.train_config.privacy is None).fit(
        _subset(data.images, tr), modalities=[data.modalities[i] for i in tr])
    x_tr, x_va = fz.transform(_subset(data.images, tr)), fz.transform(_subset(data.images, va))
    ttype = torch.float32 if data.task == "multilabel" else torch.int64
    y_tr, y_va = torch.as_tensor(data.targets[tr], dtype=ttype), torch.as_tensor(data.targets[va], dtype=ttype)
    n_out = len(data.classes)
    torch.manual_seed(spec.seed)
    # overrides named (as None) so that mypy does not match the int dimensions below against it
    model, model_spec = build_model(spec.model, size=spec.size, overrides=None, in_channels=fz.channels_, n_outputs=n_out,
                                    image_size=fz.size_, **({"spatial_dims": 3} if dims == 3 else {}))
    init = load_initial_weights(model, spec.init_from) if spec.init_from else None
    recipe = spec.preset_recipe if spec.train_config.privacy is None else Recipe()  # DP-SGD: per-sample gradients of the plain network
    if dims == 3:  # channels-last is a 2D memory format
        recipe = Recipe(label_smoothing=recipe.label_smoothing, mixup=recipe.mixup, ema=recipe.ema)
    loss, weights = _loss(data.task, data.targets[tr], n_out, spec.class_weight == "balanced", smoothing=recipe.label_smoothing)
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model = _to_memory_format(model, fmt)
    train_ds = ImageTensorDataset(images=x_tr, targets=y_tr, augment=make_augmentation(spec.seed, dims) if spec.augment else None,
                                  mixup=recipe.mixup, n_classes=n_out, channels_last=recipe.channels_last, seed=spec.seed)
    val_ds = ImageTensorDataset(images=x_va, targets=y_va, channels_last=recipe.channels_last)
    trainer = Trainer(config=spec.train_config, checkpoint_dir=checkpoint_dir, progress=progress, console=console)
    net = EMAModel(model, decay=recipe.ema) if recipe.ema > 0 else model
    result = trainer.fit(net, train_data=train_ds, val_data=val_ds, loss_fn=loss, metric_fn=_metric_fn(data.task),
                         callbacks=callbacks)
    model = net.averaged() if isinstance(net, EMAModel) else net
    model = _to_memory_format(model, torch.contiguous_format)
    _undo_weighting(model, weights)
    if result.privacy is not None:
        model_spec = private_model_spec(model_spec, result.privacy.get("model_conversions", []))
    val_logits = _logits(model, x_va)
    if data.task == "multilabel":
        return FittedImages(fz, model, model_spec, _fit_sigmoid_temperature(val_logits, data.targets[va]), result, None, recipe, init)
    temperature, bias = fit_temperature_and_bias(val_logits, data.targets[va])
    return FittedImages(fz, model, model_spec, temperature, result, bias, recipe, init)


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).numpy() if len(x) else np.zeros((0, 0))


def _evaluate(p: np.ndarray, y: np.ndarray, *, data_task: str, classes: list[str], pos: int, n_boot: int, seed: int,
              ordinal: bool = False) -> dict[str, Any]:
    if data_task == "multilabel":
        return evaluate_multilabel(p, y, labels=classes, n_boot=min(n_boot, 200), seed=seed)
    ev = evaluate_classification(p, y, classes=classes, positive_index=pos, n_boot=n_boot, seed=seed)
    kind = "binary" if len(classes) == 2 else "multiclass"
    scores = p if kind != "binary" or pos == 1 else p[:, ::-1]
    ev["medmnist"] = {"auc": medmnist_auc(scores, y if pos == 1 or kind != "binary" else 1 - y, task=kind),
                      "acc": medmnist_acc(scores, y if pos == 1 or kind != "binary" else 1 - y, task=kind),
                      "definition": "MedMNIST v2 evaluator (AUC: positive-class score / mean one-vs-rest; ACC: 0.5 threshold / arg-max)"}
    if ordinal:
        ev["medmnist"]["note"] = "ordinal labels scored as multi-class, as in MedMNIST v2"
    return ev


def _gradcam_section(fitted: FittedImages, x: torch.Tensor, p: np.ndarray, y: np.ndarray, *, task: str, classes: list[str],
                     pos: int, n: int) -> tuple[str, list[bytes]]:
    """HTML figures of Grad-CAM overlays for the ``n`` test images the model is surest about."""
    if n <= 0 or len(x) == 0:
        return "", []
    target = p.argmax(axis=1) if task != "binary" else np.full(len(p), pos)
    order = np.argsort(-p[np.arange(len(p)), target])[:n]
    pngs, figs = [], []
    for i in order:
        cam = grad_cam(fitted.model, x[i : i + 1], target=int(target[i]), layer=_gradcam_layer(fitted.model))
        true = ", ".join(classes[j] for j in np.flatnonzero(y[i])) if task == "multilabel" else classes[int(y[i])]
        title = f"{classes[target[i]]} {p[i, target[i]]:.2f} (true: {true or 'none'})"
        display = fitted.featurizer.to_display(x[i])
        # a volume: its axial slices with the most Grad-CAM weight, one overlay each
        views = ([(display[k][..., None], cam[k], f"{title}, slice {k}") for k in volume_slices(cam, image=display)] if cam.ndim == 3
                 else [(display, cam, title)])
        for image, heat, caption in views:
            png = overlay_png(image, heat, title=caption)
            pngs.append(png)
            figs.append(f'<figure style="display:inline-block;margin:4px"><img alt="Grad-CAM" src="data:image/png;base64,'
                        f'{base64.b64encode(png).decode()}"><figcaption>{html.escape(caption)}</figcaption></figure>')
    section = ("<section><h2>Grad-CAM: where the model looked</h2><p>Test images the model was most confident about, "
               "with the Grad-CAM map of the predicted class (red: most weight). It shows where, not why.</p>"
               + "".join(figs) + "</section>")
    return section, pngs


def _multilabel_report(title: str, ev: dict[str, Any], card: ModelCard, extra: str, synthetic: bool) -> str:
    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    rows = "".join(
        f"<tr><td>{html.escape(r['label'])}</td><td>{r['n_positive']}</td><td>{f(r['auc'])}</td>"
        f"<td>{f(r['sensitivity'])}</td><td>{f(r['specificity'])}</td></tr>" for r in ev["per_label"])
    m = ev["metrics"]

    banner = f"<p><strong>{html.escape(SYNTHETIC_NOTICE)}</strong></p>" if synthetic else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
            f"<h1>{html.escape(title)}</h1>{banner}<p><em>{html.escape(DISCLAIMER)}</em></p>"
            f"<p>n = {ev['n']} test images. Macro AUC {f(m['macro_auc']['value'])} (95% CI {f(m['macro_auc']['ci_low'])} to "
            f"{f(m['macro_auc']['ci_high'])}); MedMNIST AUC {f(m['medmnist_auc']['value'])}, ACC {f(m['medmnist_acc']['value'])}.</p>"
            f"<table border='1' cellpadding='3'><tr><th>label</th><th>positives</th><th>AUC</th><th>sensitivity</th><th>specificity</th></tr>{rows}</table>"
            f"{extra}<h2>Model card</h2><pre>{html.escape(card.to_markdown())}</pre></body></html>")


@dataclass
class ImageTrainOutcome:
    bundle_dir: Path
    metrics: dict[str, Any]
    report: Path
    notes: list[str]
    n_parameters: int
    result: TrainResult
    task: str
    #: DP-SGD runs: the (ε, δ) spent, with the ledger's total for this image set and its budget.
    privacy: dict[str, Any] | None = None
    #: ``compare`` rows: the pixel baseline on the test split, paired AUC difference, verdict.
    baselines: list[dict[str, Any]] = field(default_factory=list)
    #: ``load_initial_weights``' report (``--init-from``).
    init: dict[str, Any] | None = None


def image_set_fingerprint(data: ImageSet) -> str:
    """SHA-256 of the images and labels: the privacy ledger's key for this image set."""
    h = hashlib.sha256()
    for i in range(len(data)):
        img = np.ascontiguousarray(data.images[i])
        h.update(str((img.dtype.str, img.shape)).encode())
        h.update(img.tobytes())
    h.update(np.ascontiguousarray(data.targets).tobytes())
    return h.hexdigest()


def _image_baselines(fitted: FittedImages, data: ImageSet, splits: dict[str, np.ndarray], spec: ImageSpec, *, x_te: torch.Tensor,
                     p: np.ndarray, y: np.ndarray, pos: int) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any] | None]:
    """The pixel logistic regression, fitted on the training split and compared on the test split;
    or the reason it was not fitted."""
    why = None
    if not spec.baseline:
        why = "turned off for this run"
    elif spec.train_config.privacy is not None:
        why = ("the model was trained under differential privacy; a non-private baseline fitted on the same images would fall "
               "outside the privacy guarantee")
    elif data.task == "multilabel":
        why = "multi-label outputs are not compared with a baseline yet"
    if why is not None:
        return [], {"not_fitted": {"logistic regression on pooled pixels": why}}, None
    tr = splits["train"]
    x_tr = fitted.featurizer.transform(_subset(data.images, tr))
    try:
        state = fit_image_baseline(x_tr, data.targets[tr], n_classes=len(data.classes), seed=spec.seed)
    except DataError as e:
        return [], {"not_fitted": {"logistic regression on pooled pixels": str(e)}}, None
    side = state["pool_side"]
    grid = "×".join([str(side)] * state["spatial_dims"])
    fitted_on = f"training split only ({len(tr)} images): the model's normalised input average-pooled to {grid} pixels"
    row = baseline_row(p, baseline_probabilities(state, x_te), y, family=f"{spec.model}-{spec.size}", state=state,
                        classes=list(data.classes), pos=pos, n_boot=spec.n_boot, seed=spec.seed, fitted_on=fitted_on)
    record = {"comparators": [row], "fitted_on": fitted_on,
              "settings": {"logistic": "L2, C=1, lbfgs, max_iter=1000" + ("" if state["converged"] else " (did not converge)")},
              "evaluate": f"stored as coefficients ({BASELINES_FILE}) and re-applied by evaluate on the same images"}
    return [row], record, state


def train_images(data: ImageSet, *, spec: ImageSpec, out_dir: Path, overwrite: bool = False, progress: bool = True,
                 console: Console | None = None, ledger: PrivacyLedger | None = None,
                 callbacks: list[TrainerCallback] | None = None) -> ImageTrainOutcome:
    """Preprocess → build → train → evaluate → bundle, for a labelled image set.

    With ``spec.train.privacy`` set, training is DP-SGD and ``ledger`` must be given: the run is
    refused when it would exceed the image set's budget, and recorded once the bundle is written.
    """
    console = console or Console(stderr=True)
    check_out_dir(Path(out_dir), overwrite=overwrite)
    dataset_id = None
    if spec.train_config.privacy is not None:
        if ledger is None:
            raise ConfigError("Differentially private training needs a privacy ledger to record the budget it spends.")
        dataset_id = image_set_fingerprint(data)
        ledger.check(dataset_id, spec.train_config.privacy.target_epsilon, source=data.source)
    splits = _splits(data, spec.seed)
    for s in ("train", "val", "test"):
        if len(splits[s]) == 0:
            raise DataError(f"{data.source}: the {s} split is empty; more images are needed.")
    fitted = fit_images(data, splits, spec=spec, progress=progress, console=console, callbacks=callbacks)
    te = splits["test"]
    x_te = fitted.featurizer.transform(_subset(data.images, te))
    logits = _logits(fitted.model, x_te)
    p = probabilities(logits, task=data.task, temperature=fitted.temperature, bias=fitted.bias)
    y = data.targets[te]
    pos = data.classes.index(data.positive_class) if data.positive_class in data.classes else (1 if data.task == "binary" else 0)
    ev = _evaluate(p, y, data_task=data.task, classes=data.classes, pos=pos, n_boot=spec.n_boot, seed=spec.seed, ordinal=data.ordinal)
    calibration: dict[str, Any] = {"temperature": fitted.temperature, "fitted_on": "validation split",
                                   "method": "temperature scaling (one temperature for all sigmoid outputs)" if data.task == "multilabel"
                                   else "temperature and class-bias scaling (softmax(logits / T + b); Platt scaling for two classes)"}
    if fitted.bias is not None:
        calibration["bias"] = fitted.bias
    if data.task != "multilabel":
        raw = probabilities(logits, task=data.task)
        calibration.update(test_ece_uncalibrated=compute_ece(raw, y, positive_index=pos), test_ece_calibrated=compute_ece(p, y, positive_index=pos))
    kind = data.task
    comparators, baseline_record, lr_state = _image_baselines(fitted, data, splits, spec, x_te=x_te, p=p, y=y, pos=pos)
    positive = data.positive_class if kind == "binary" else None
    if kind == "binary" and positive is None:
        positive = data.classes[pos]
    n_params = count_parameters(fitted.model)
    schema = TaskSchema(input_schema=fitted.featurizer.input_schema(), output_schema={"diagnosis": kind}, classes=list(data.classes),
                        positive_class=positive, extras={"ordinal": data.ordinal, "synthetic": data.synthetic,
                                                         "window": spec.window, "intensity": data.intensity})
    texts = default_card_texts(kind if kind != "multilabel" else "multiclass", "diagnosis")
    limitations = ["Evaluated on a held-out split of the same source; other scanners, sites or protocols may differ.",
                   "Grad-CAM maps show where the model looked, at the resolution of its last feature maps, not why.",
                   *data.notes[:10]]
    if data.synthetic:
        limitations.insert(0, f"Trained on {SYNTHETIC_NOTICE}: its figures say nothing about any real disease.")
    if fitted.result.privacy is not None:
        limitations.append("Trained with DP-SGD; the input size and channel count come from the training images' shapes, and the "
                           "calibration temperature (one number) and the reported test metrics use held-out images without privacy noise.")
    created = datetime.now(UTC).isoformat(timespec="seconds")
    card = ModelCard(
        name=f"{spec.model}-{spec.size}{' 3D' if is_volumetric(data) else ''} image diagnosis ({data.source})" + (f" [{SYNTHETIC_NOTICE}]" if data.synthetic else ""),
        version="1", created=created, task=kind, target="diagnosis", classes=list(data.classes), positive_class=positive,
        intended_use=(f"{SYNTHETIC_NOTICE.capitalize()}: demonstration of the pipeline only. " if data.synthetic else "") + texts["intended_use"],
        out_of_scope=texts["out_of_scope"],
        data={"source": data.source, "provenance": data.provenance, "synthetic": data.synthetic, "n_images": len(data),
              "n_train": len(splits["train"]), "n_val": len(splits["val"]), "n_test": len(te),
              "split": "official file splits" if data.splits is not None else f"stratified, grouped by patient/series/file, seed {spec.seed}",
              "intensity": data.intensity, "window": spec.window, "modalities": fitted.featurizer.modalities_,
              "input": fitted.featurizer.input_schema()["image"]},
        model={"family": spec.model, "size": spec.size, "n_parameters": n_params, "hyperparameters": fitted.model_spec["params"],
               "weights": (fitted.init["summary"] if fitted.init else "trained from scratch (no downloaded weights)"),
               **({"init_from": {k: fitted.init[k] for k in ("path", "skipped", "not_in_checkpoint")}} if fitted.init else {})},
        training={**spec.train_config.to_dict(), "augmentation": "random affine, gamma contrast, Gaussian noise (batched)" if spec.augment else "none",
                  "recipe": fitted.recipe.to_dict(),
                  "class_weight": spec.class_weight, "best_epoch": fitted.result.best_epoch, "epochs_run": len(fitted.result.history),
                  "stopped_early": fitted.result.stopped_early, "seconds": round(fitted.result.seconds, 2)},
        metrics=ev, calibration={k: v for k, v in calibration.items() if k != "scaler"}, limitations=limitations,
        baselines=baseline_record,
        ethical_considerations=texts["ethical_considerations"], privacy=fitted.result.privacy or {},
    )
    section, pngs = _gradcam_section(fitted, x_te, p, y, task=kind, classes=data.classes, pos=pos, n=spec.n_gradcam)
    title = f"medassist image diagnosis model ({data.source})" + (f" - {SYNTHETIC_NOTICE}" if data.synthetic else "")
    if kind == "multilabel":
        report_html = _multilabel_report(title, ev, card, section, data.synthetic)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = write_report(Path(tmp) / "report.html", title=title, evaluation=ev, y_prob=p, y_true=y, classes=data.classes,
                                positive_index=pos, model_card=card, history=fitted.result.history,
                                comparison={"model_label": f"This model ({spec.model}-{spec.size}, {n_params:,} parameters)",
                                            "comparators": comparators,
                                            "notes": [f"{k}: not fitted ({v})" for k, v in (baseline_record.get("not_fitted") or {}).items()]})
            report_html = path.read_text()
        if data.synthetic:
            section = f"<p><strong>{html.escape(SYNTHETIC_NOTICE)}</strong></p>" + section
        report_html = report_html.replace("</body>", section + "</body>", 1) if "</body>" in report_html else report_html + section
    bundle = ModelBundle(
        model=fitted.model, model_spec=fitted.model_spec, featurizer=fitted.featurizer, schema=schema, calibration=calibration,
        metrics={"test": ev, "baselines": comparators}, model_card=card.to_dict(), model_card_markdown=card.to_markdown(), history=fitted.result.history,
        train_config=spec.train_config.to_dict(), meta={"created": created, "data_source": data.source, "task": TASK, "synthetic": data.synthetic,
                                                 "training_inputs": {"formats": list(data.formats),
                                                                     "modalities": sorted({m for m in data.modalities if m})}},
    )
    attachments = {"report.html": report_html.encode(), "splits.json": json.dumps({k: v.tolist() for k, v in splits.items()}).encode(),
                   BASELINES_FILE: json.dumps({"what": "logistic regression on average-pooled model inputs, fitted on the training split; "
                                                       "plain coefficients, re-applied by evaluate", "logistic": lr_state,
                                               **({"not_fitted": baseline_record["not_fitted"]} if "not_fitted" in baseline_record else {})},
                                              indent=1).encode()}
    attachments.update({f"gradcam_{i}.png": png for i, png in enumerate(pngs)})
    out = save_bundle(bundle, Path(out_dir), overwrite=overwrite, attachments=attachments)
    privacy = None
    if fitted.result.privacy is not None and ledger is not None and dataset_id is not None:
        dp = fitted.result.privacy
        ledger.record(dataset_id, epsilon=dp["epsilon"], delta=dp["delta"], source=data.source, bundle=str(out))
        privacy = {**dp, "ledger_spent": ledger.spent(dataset_id), "ledger_budget": ledger.total_epsilon}
    return ImageTrainOutcome(bundle_dir=out, metrics=ev, report=out / "report.html", notes=list(data.notes), n_parameters=n_params,
                             result=fitted.result, task=kind, privacy=privacy, baselines=comparators, init=fitted.init)


# --------------------------------------------------------------------------------------------
# Using a bundle


def _bundle_task(bundle: ModelBundle) -> str:
    return bundle.schema.kind


def _temperature(bundle: ModelBundle) -> float:
    return float(bundle.calibration.get("temperature", 1.0))


def _bias(bundle: ModelBundle) -> list[float] | None:
    return bundle.calibration.get("bias")  # absent in bundles written before class-bias scaling


_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.Lock:
    """One lock per loaded model. Grad-CAM puts hooks on a layer of the shared model, so a forward
    pass in another thread (a server answers requests in a thread pool) would feed those hooks
    its own activations: predictions and explanations of one model take turns."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.Lock()
        return lock


#: Image file kinds that hold the same sort of pixels (8-bit display pictures).
_SAME_PIXELS = {"npz": "picture", "picture": "picture", "dicom": "dicom", "nifti": "nifti"}


def image_warnings(bundle: ModelBundle, *, kind: str | None = None, modality: str = "") -> list[str]:
    """Warnings an answer of this image bundle carries: poor calibration on its test set, and an
    input unlike the training images (a DICOM CT scored by a model trained on PNG pictures)."""
    found = []
    ece = ((bundle.metrics.get("test") or {}).get("metrics") or {}).get("ece", {})
    w = calibration_warning(ece.get("value") if isinstance(ece, dict) else None)
    if w:
        found.append(w)
    seen = bundle.meta.get("training_inputs")
    if kind is not None and seen and seen.get("formats"):
        trained = {_SAME_PIXELS.get(f, f) for f in seen["formats"]}
        this = "a DICOM image" + (f" (modality {modality})" if modality else "") if kind == "dicom" else f"a {kind} image"
        was = ", ".join(seen["formats"]) + (f" (modality {', '.join(seen['modalities'])})" if seen.get("modalities") else "")
        if _SAME_PIXELS.get(kind, kind) not in trained:
            found.append(f"this is {this}, but the model was trained on {was} images: its answer may not apply")
        elif modality and seen.get("modalities") == [] and kind == "dicom":
            found.append(f"this DICOM image has modality {modality}; the training images recorded none: check they match")
    return found


def predict_image(bundle: ModelBundle, path: str | Path, *, explain_path: Path | None = None) -> dict[str, Any]:
    """Class probabilities for one image file (a volume or multi-frame file: per slice and their
    mean), with a Grad-CAM overlay of the most telling slice when ``explain_path`` is given."""
    fz: ImageFeaturizer = bundle.featurizer
    if isinstance(fz, VolumeFeaturizer):
        return _predict_volume(bundle, path, explain_path=explain_path)
    img = read_image(path, window=fz.window)
    notes: list[str] = []
    for k in range(len(img.slices)):
        for note in fz.check(img.slices[k], modality=img.modality, source=str(path)):
            if note not in notes:
                notes.append(note)
    x = fz.transform(list(img.slices))
    task, classes = _bundle_task(bundle), bundle.schema.classes
    with model_lock(bundle.model):
        p = probabilities(_logits(bundle.model, x), task=task, temperature=_temperature(bundle), bias=_bias(bundle))
    mean = p.mean(axis=0)
    out: dict[str, Any] = {"image": str(path), "format": img.kind, "n_slices": len(img.slices), "task": task,
                           "probabilities": {c: round(float(v), 6) for c, v in zip(classes, mean)}}
    if task == "multilabel":
        out["findings"] = [c for c, v in zip(classes, mean) if v >= 0.5]
        target = int(mean.argmax())
    else:
        if task == "binary":
            pos = bundle.schema.positive_index
            target = pos if mean[pos] >= 0.5 else 1 - pos
        else:
            target = int(mean.argmax())
        out["prediction"] = classes[target]
    if len(img.slices) > 1:
        out["aggregation"] = "mean of per-slice probabilities"
        out["per_slice"] = [{c: round(float(v), 6) for c, v in zip(classes, row)} for row in p]
    if explain_path is not None:
        k = int(p[:, target].argmax())
        with model_lock(bundle.model):
            cam = grad_cam(bundle.model, x[k : k + 1], target=target, layer=_gradcam_layer(bundle.model))
        title = f"{classes[target]} {p[k, target]:.2f}" + (f" (slice {k})" if len(img.slices) > 1 else "")
        save_overlay(fz.to_display(x[k]), cam, explain_path, title=title)
        out["explanation"] = {"method": "Grad-CAM (Captum LayerGradCam)", "class": classes[target], "slice": k, "png": str(explain_path)}
    out["intensity"] = img.intensity
    out["warnings"] = image_warnings(bundle, kind=img.kind, modality=img.modality)
    out["notes"] = notes
    if bundle.meta.get("synthetic"):
        out["warning"] = f"This model was trained on {SYNTHETIC_NOTICE}."
    out["model"] = bundle.model_card.get("name", "")
    out["disclaimer"] = DISCLAIMER
    return out


def _stored_baselines(bundle: ModelBundle, x: torch.Tensor, p: np.ndarray, y: np.ndarray, *, n_boot: int,
                      seed: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The bundle's pixel logistic regression on the same images (same resamples), or why not."""
    path = Path(bundle.path) / BASELINES_FILE if bundle.path else None
    if path is None or not path.is_file():
        return [], ["no baseline: this bundle was written before baselines were stored with it"]
    rec = json.loads(path.read_text())
    state = rec.get("logistic")
    if not state:
        return [], [f"{k}: not fitted ({v})" for k, v in (rec.get("not_fitted") or {}).items()] or ["no baseline stored with this bundle"]
    if _bundle_task(bundle) == "multilabel":
        return [], ["multi-label outputs are not compared with a baseline yet"]
    family = f"{bundle.model_spec.get('name', 'model')}-{bundle.model_spec.get('size', '')}"
    row = baseline_row(p, baseline_probabilities(state, x), y, family=family, state=state, classes=bundle.schema.classes,
                        pos=bundle.schema.positive_index if _bundle_task(bundle) == "binary" else 0, n_boot=n_boot, seed=seed,
                        fitted_on="the training split of the bundle")
    return [row], []


def _predict_volume(bundle: ModelBundle, path: str | Path, *, explain_path: Path | None) -> dict[str, Any]:
    """One volume (a NIfTI file or a DICOM series folder) through a volume model, with the
    Grad-CAM overlay of the axial slice holding the most weight."""
    from medassist.data.io.volumes import read_volume

    fz: VolumeFeaturizer = bundle.featurizer
    vol = read_volume(path, window=fz.window)
    notes = fz.check(vol.voxels, modality=vol.modality, source=str(path))
    x = fz.transform([vol.voxels])
    task, classes = _bundle_task(bundle), bundle.schema.classes
    with model_lock(bundle.model):
        p = probabilities(_logits(bundle.model, x), task=task, temperature=_temperature(bundle), bias=_bias(bundle))[0]
    out: dict[str, Any] = {"image": str(path), "format": vol.kind, "n_slices": int(vol.voxels.shape[1]), "task": task,
                           "input": "volume", "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)}}
    if task == "multilabel":
        out["findings"] = [c for c, v in zip(classes, p) if v >= 0.5]
        target = int(p.argmax())
    else:
        pos = bundle.schema.positive_index if task == "binary" else 0
        target = (pos if p[pos] >= 0.5 else 1 - pos) if task == "binary" else int(p.argmax())
        out["prediction"] = classes[target]
    if explain_path is not None:
        with model_lock(bundle.model):
            cam = grad_cam(bundle.model, x, target=target, layer=_gradcam_layer(bundle.model))
        shown = fz.to_display(x[0])
        k = volume_slices(cam, 1, image=shown)[0]
        save_overlay(shown[k][..., None], cam[k], explain_path, title=f"{classes[target]} {p[target]:.2f} (slice {k})")
        out["explanation"] = {"method": "3D Grad-CAM (Captum LayerGradCam)", "class": classes[target], "slice": k, "png": str(explain_path)}
    out["intensity"] = vol.intensity
    out["warnings"] = image_warnings(bundle)
    out["notes"] = notes
    if bundle.meta.get("synthetic"):
        out["warning"] = f"This model was trained on {SYNTHETIC_NOTICE}."
    out["model"] = bundle.model_card.get("name", "")
    out["disclaimer"] = DISCLAIMER
    return out


def evaluate_images(bundle: ModelBundle, data: ImageSet, *, n_boot: int = 1000, seed: int = 0, report: Path | None = None) -> dict[str, Any]:
    """Metrics of a bundle on labelled images: a file's official test split, else every image."""
    fz: ImageFeaturizer = bundle.featurizer
    classes, task = bundle.schema.classes, _bundle_task(bundle)
    if task == "multilabel" and data.task != "multilabel":
        raise DataError(f"{data.source}: single-label data, but the model predicts {len(classes)} labels at once.")
    if task != "multilabel":
        if data.task == "multilabel":
            raise DataError(f"{data.source}: multi-label data, but the model predicts one of {classes}.")
        unknown = sorted(set(data.classes) - set(classes))
        if unknown and not all(c.isdigit() for c in data.classes):
            raise DataError(f"{data.source}: class(es) {unknown} are unknown to the model; expected {classes}.")
    if task == "multilabel" and data.targets.shape[1] != len(classes):
        raise DataError(f"{data.source}: {data.targets.shape[1]} labels per image; the model predicts {len(classes)}.")
    idx = data.splits["test"] if data.splits is not None else np.arange(len(data))
    images = _subset(data.images, idx)
    for i in range(len(idx)):
        fz.check(images[i] if isinstance(images, list) else images[i], modality=data.modalities[idx[i]], source=f"{data.source} image {idx[i]}")
    y = data.targets[idx]
    if task != "multilabel" and data.classes != classes:
        names = [data.classes[t] for t in y]
        mapping = {c: i for i, c in enumerate(classes)}
        y = np.array([mapping[n] if n in mapping else int(n) for n in names], dtype=np.int64)
    x = fz.transform(images)
    p = probabilities(_logits(bundle.model, x), task=task, temperature=_temperature(bundle), bias=_bias(bundle))
    pos = bundle.schema.positive_index if task == "binary" else 0
    ev = _evaluate(p, y, data_task=task, classes=classes, pos=pos, n_boot=n_boot, seed=seed, ordinal=bool(bundle.schema.extras.get("ordinal")))
    ev["baselines"], ev["baseline_notes"] = _stored_baselines(bundle, x, p, y, n_boot=n_boot, seed=seed)
    ev["split"] = "test (official)" if data.splits is not None else "all images"
    ev["bundle"] = str(bundle.path) if bundle.path else None
    if report is not None:
        card = ModelCard.from_dict(bundle.model_card)
        title = f"medassist evaluation: {bundle.model_card.get('name', '')} on {data.source}"
        if task == "multilabel":
            from medassist.fileio import write_atomic

            write_atomic(Path(report), mode=0o644, data=_multilabel_report(title, ev, card, "", bool(bundle.meta.get("synthetic"))))
        else:
            write_report(Path(report), title=title, evaluation=ev, y_prob=p, y_true=y, classes=classes, positive_index=pos,
                         model_card=card, history=bundle.history,
                         comparison={"model_label": "This model", "comparators": ev["baselines"], "notes": ev["baseline_notes"]})
        ev["report"] = str(report)
    return ev
