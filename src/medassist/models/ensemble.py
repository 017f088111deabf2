"""A deep ensemble of identical members: the mean of their predicted probabilities.

``forward`` returns log mean probabilities, which act as logits: ``softmax(forward(x))`` is the
ensemble's probability, and temperature scaling and attributions work on it unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from medassist.models.registry import MODELS, model_from_spec


@MODELS.register("ensemble")
class Ensemble(nn.Module):
    """K members built from one spec. Shapes: x (B, ...) → log mean probabilities (B, C)."""

    PRESETS: dict[str, dict[str, Any]] = {"small": {}, "large": {}}

    def __init__(self, *, member: dict[str, Any], n_members: int) -> None:
        super().__init__()
        self.members = nn.ModuleList([model_from_spec(member) for _ in range(n_members)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([torch.log_softmax(m(x), dim=-1) for m in self.members])
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's probabilities, (K, B, C): their spread is the ensemble's uncertainty."""
        return torch.stack([torch.softmax(m(x), dim=-1) for m in self.members])


def ensemble_spec(member_spec: dict[str, Any], n_members: int) -> dict[str, Any]:
    return {"name": "ensemble", "size": member_spec["size"], "params": {"member": member_spec, "n_members": n_members}}
