"""Model weights as the list of NumPy arrays Flower sends between server and sites."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medassist.exceptions import TrainingError


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """Every tensor of ``model.state_dict()`` (parameters and buffers), in its order."""
    return [v.detach().cpu().numpy().copy() for v in model.state_dict().values()]


def set_weights(model: nn.Module, arrays: list[np.ndarray]) -> None:
    """Load arrays from ``get_weights`` (or an aggregate of them) into ``model``.

    Averaging turns integer buffers (e.g. BatchNorm's ``num_batches_tracked``) into floats; each
    array is cast back to the dtype the model holds.
    """
    state = model.state_dict()
    if len(arrays) != len(state):
        raise TrainingError(f"Received {len(arrays)} weight arrays for a model with {len(state)} tensors; server and site disagree on the model.")
    new = {}
    for (name, old), arr in zip(state.items(), arrays):
        if tuple(arr.shape) != tuple(old.shape):
            raise TrainingError(f"Weight '{name}' has shape {tuple(arr.shape)}; the model expects {tuple(old.shape)}.")
        new[name] = torch.as_tensor(np.asarray(arr)).to(old.dtype)
    model.load_state_dict(new)
