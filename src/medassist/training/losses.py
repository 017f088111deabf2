"""Losses built from the training targets (class weighting happens here, not in the Trainer),
and masked losses for multi-task targets where a missing label (NaN) counts for nothing."""

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


class MemberMeanCrossEntropy(nn.CrossEntropyLoss):
    """Cross-entropy on logits (B, C), or on every member's logits (B, K, C) of a model that
    trains K members at once (TabM): then the mean of the K members' losses, each against the
    same target (B,)."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.ndim == 3:
            # (B, K, C) → (B * K, C): the (weighted) mean over B * K rows is the mean over members
            # of each member's (weighted) mean loss, since every member sees the same targets.
            return super().forward(input.flatten(0, 1), target.repeat_interleave(input.shape[1]))
        return super().forward(input, target)


def classification_loss(targets: np.ndarray, n_classes: int, *, balanced: bool = True) -> nn.Module:
    """Cross-entropy on logits (B, C) or on members' logits (B, K, C) (:class:`MemberMeanCrossEntropy`),
    optionally weighted against class imbalance."""
    weight = torch.tensor(class_weights(targets, n_classes), dtype=torch.float32) if balanced else None
    return MemberMeanCrossEntropy(weight=weight)


def masked_mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the measured entries of ``target`` (B, T); NaN entries are skipped."""
    mask = ~torch.isnan(target)
    diff = torch.where(mask, out - torch.nan_to_num(target), torch.zeros_like(out))
    return (diff**2).sum() / mask.sum().clamp(min=1)


def masked_bce(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits ``out`` (B, T) over the measured 0/1 entries of ``target``."""
    mask = ~torch.isnan(target)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out, torch.nan_to_num(target), reduction="none")
    return (loss * mask).sum() / mask.sum().clamp(min=1)
