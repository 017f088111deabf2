"""The simple baseline fitted beside every image model: a logistic regression on average-pooled
pixels (16×16) or voxels (8×8×8) of the model's normalised input, fitted on the training split,
compared on the same test images with the paired bootstrap AUC difference, and stored as plain
JSON coefficients (``baselines.json``) so that ``evaluate`` re-applies it without pickle.

Example:
    >>> state = fit_image_baseline(x_train, y_train, n_classes=2, seed=0)   # x: (N, C, S, S)
    >>> baseline_probabilities(state, x_test).shape
    (M, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from medassist.evaluation.comparison import compare
from medassist.models.baselines import fit_logistic, logistic_logits, softmax

#: Bundle attachment with the pixel baseline: logistic regression as plain coefficients (JSON).
BASELINES_FILE = "baselines.json"
#: Side of the average-pooled image the logistic baseline reads (at most the model input's).
BASELINE_SIDE = 16


def pixel_features(x: torch.Tensor, side: int) -> np.ndarray:
    """The baseline's input: model inputs (N, C, S, S) average-pooled to (N, C·side·side);
    volumes (N, C, S, S, S) to (N, C·side³)."""
    pool = nn.functional.adaptive_avg_pool3d if x.ndim == 5 else nn.functional.adaptive_avg_pool2d
    return pool(x, side).flatten(1).numpy() if len(x) else np.zeros((0, x.shape[1] * side ** (x.ndim - 2)))


def fit_image_baseline(x_tr: torch.Tensor, y_tr: np.ndarray, *, n_classes: int, seed: int) -> dict[str, Any]:
    """Logistic regression (L2, C=1) on average-pooled pixels of the training split, as plain JSON."""
    side = min(BASELINE_SIDE if x_tr.ndim == 4 else BASELINE_SIDE // 2, int(x_tr.shape[-1]))
    state = fit_logistic(pixel_features(x_tr, side), y_tr, n_classes=n_classes, seed=seed)
    return {**state, "pool_side": side, "spatial_dims": x_tr.ndim - 2}


def baseline_probabilities(state: dict[str, Any], x: torch.Tensor) -> np.ndarray:
    return softmax(logistic_logits(state, pixel_features(x, int(state["pool_side"]))))


def baseline_label(state: dict[str, Any]) -> str:
    side = state["pool_side"]
    if state.get("spatial_dims") == 3:
        return f"Logistic regression on {side}×{side}×{side} pooled voxels (baseline)"
    return f"Logistic regression on {side}×{side} pooled pixels (baseline)"


def baseline_row(p: np.ndarray, p_lr: np.ndarray, y: np.ndarray, *, family: str, state: dict[str, Any], classes: list[str], pos: int,
                  n_boot: int, seed: int, fitted_on: str) -> dict[str, Any]:
    row = compare(p, p_lr, y, model=family, baseline="logistic", classes=classes, positive_index=pos, n_boot=n_boot, seed=seed,
                  fitted_on=fitted_on)
    row["label"] = baseline_label(state)
    return row
