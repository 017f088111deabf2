"""Per-prediction feature attributions (integrated gradients through Captum), keyed by the
input schema: attributions of one-hot levels and missingness indicators add up to their column."""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import IntegratedGradients
from torch import nn


def integrated_gradients(
    model: nn.Module, features: np.ndarray, targets: np.ndarray, *, n_steps: int = 32, batch_size: int = 256
) -> np.ndarray:
    """Integrated gradients of the target logit for each row, against an all-zero baseline.

    The baseline is the training mean of every scaled numeric feature with no category set
    and nothing missing, i.e. an "average" patient.

    Args:
        features: (N, F) float32 featurized rows.
        targets: (N,) class index to explain per row.

    Returns:
        (N, F) attributions; each row sums (approximately) to logit(x) - logit(baseline).
    """
    model.eval()
    ig = IntegratedGradients(model)
    out = np.zeros_like(features, dtype=np.float32)
    for start in range(0, len(features), batch_size):
        x = torch.as_tensor(features[start : start + batch_size], dtype=torch.float32)
        t = torch.as_tensor(targets[start : start + batch_size], dtype=torch.int64)
        attr = ig.attribute(x, baselines=torch.zeros_like(x), target=t, n_steps=n_steps, internal_batch_size=batch_size * 4)
        out[start : start + len(x)] = attr.detach().numpy()
    return out


def group_attributions(attributions: np.ndarray, groups: list[str]) -> tuple[np.ndarray, list[str]]:
    """Sum attribution columns that belong to the same input column.

    Returns:
        (N, G) attributions and the G input column names, in first-seen order.
    """
    names = list(dict.fromkeys(groups))
    index = {g: i for i, g in enumerate(names)}
    summed = np.zeros((attributions.shape[0], len(names)), dtype=np.float32)
    for j, g in enumerate(groups):
        summed[:, index[g]] += attributions[:, j]
    return summed, names


def top_attributions(grouped: np.ndarray, names: list[str], *, k: int = 3) -> list[list[tuple[str, float]]]:
    """The ``k`` columns with the largest absolute attribution, per row."""
    order = np.argsort(-np.abs(grouped), axis=1)[:, :k]
    return [[(names[j], float(grouped[i, j])) for j in row] for i, row in enumerate(order)]
