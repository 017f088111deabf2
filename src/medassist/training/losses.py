"""Losses built from the training targets (class weighting happens here, not in the Trainer)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def class_weights(targets: np.ndarray, n_classes: int) -> np.ndarray:
    """'Balanced' weights n / (C * count_c), the scikit-learn convention; absent classes get 0."""
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=n_classes).astype(float)
    w = np.zeros(n_classes)
    present = counts > 0
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w


def classification_loss(targets: np.ndarray, n_classes: int, *, balanced: bool = True) -> nn.Module:
    """Cross-entropy on logits (B, C), optionally weighted against class imbalance."""
    weight = torch.tensor(class_weights(targets, n_classes), dtype=torch.float32) if balanced else None
    return nn.CrossEntropyLoss(weight=weight)
