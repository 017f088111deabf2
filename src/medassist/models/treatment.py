"""Treatment-effect networks: a multi-arm outcome network (TARNet/DragonNet style), a small
effect-correction network for the doubly robust second stage, and the ensemble that holds both.

Output layout of :class:`MultiArmNet` (one flat tensor, so the shared Trainer can batch it):
``(B, A * K + A)``: for each of the A arms its K outcome outputs (K = 1 for a continuous mean or a
binary logit, K = J hazard logits for a discrete-time survival outcome), then A propensity
logits. :func:`split_outputs` reads it back by name.

Survival helpers turn hazard logits over J bins (edges ``e_0 = 0 < ... < e_J = horizon``) into
survival curves, restricted mean survival time (RMST) and risk at the horizon.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from medassist.models.registry import MODELS, model_from_spec
from medassist.models.tabular import _ResidualBlock


class MultiArmOutputs(NamedTuple):
    """``arm``: (B, A, K) per-arm outcome outputs; ``propensity``: (B, A) assignment logits."""

    arm: torch.Tensor
    propensity: torch.Tensor


def split_outputs(out: torch.Tensor, *, n_arms: int, n_outputs: int) -> MultiArmOutputs:
    """Read a :class:`MultiArmNet` output (B, A*K + A) by name."""
    b = out.shape[0]
    return MultiArmOutputs(arm=out[:, : n_arms * n_outputs].reshape(b, n_arms, n_outputs), propensity=out[:, n_arms * n_outputs :])


@MODELS.register("multiarm")
class MultiArmNet(nn.Module):
    """Shared residual representation, one head per arm, one propensity head.

    Each arm's output is a shared baseline head plus the arm's own head, whose last layer starts
    at zero: the network begins with no treatment effect and the arm heads learn departures from
    the shared prognosis (less variance in effects than independent heads).

    Args:
        n_features: F, width of the featurized covariates.
        n_arms: A, number of treatment arms.
        n_outputs: K, outputs per arm (1: continuous mean or binary logit; J: hazard logits).
        d_hidden: width of the shared representation.
        n_blocks: residual blocks in the representation.
        expansion: feed-forward expansion inside a block.
        d_head: hidden width of each arm's head.
        dropout: dropout in blocks and heads.

    Shapes: x (B, F) → (B, A*K + A); see :func:`split_outputs`.

    Example:
        >>> net, spec = build_model("multiarm", size="small", n_features=20, n_arms=4, n_outputs=1)
        >>> split_outputs(net(torch.zeros(8, 20)), n_arms=4, n_outputs=1).arm.shape
        torch.Size([8, 4, 1])
    """

    PRESETS = {
        "small": {"d_hidden": 64, "n_blocks": 2, "expansion": 2, "d_head": 32, "dropout": 0.1},
        "large": {"d_hidden": 384, "n_blocks": 4, "expansion": 2, "d_head": 128, "dropout": 0.1},
    }

    def __init__(
        self, *, n_features: int, n_arms: int, n_outputs: int, d_hidden: int, n_blocks: int, expansion: int,
        d_head: int, dropout: float,
    ) -> None:
        super().__init__()
        self.n_arms, self.n_outputs = n_arms, n_outputs
        self.stem = nn.Linear(n_features, d_hidden)
        self.blocks = nn.Sequential(*[_ResidualBlock(d=d_hidden, expansion=expansion, dropout=dropout) for _ in range(n_blocks)])
        self.norm = nn.LayerNorm(d_hidden)
        self.heads = nn.ModuleList([
            nn.Sequential(nn.Linear(d_hidden, d_head), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_head, n_outputs))
            for _ in range(n_arms)
        ])
        self.base = nn.Sequential(nn.Linear(d_hidden, d_head), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_head, n_outputs))
        for head in self.heads:  # arms start with no effect: heterogeneity must be earned
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)
        self.propensity = nn.Linear(d_hidden, n_arms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.gelu(self.norm(self.blocks(self.stem(x))))
        base = self.base(z)
        arm = torch.cat([base + head(z) for head in self.heads], dim=1)
        return torch.cat([arm, self.propensity(z)], dim=1)


@MODELS.register("effect_mlp")
class EffectCorrection(nn.Module):
    """Second stage of the DR-learner: a correction to the plug-in effect of each non-reference arm.

    Its last layer starts at zero, so an untrained correction is exactly the plug-in effect.

    Shapes: x (B, F) → (B, A - 1).
    """

    PRESETS = {
        "small": {"d_hidden": 32, "dropout": 0.1},
        "large": {"d_hidden": 128, "dropout": 0.1},
    }

    def __init__(self, *, n_features: int, n_contrasts: int, d_hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_hidden), nn.GELU(),
            nn.Linear(d_hidden, n_contrasts),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@MODELS.register("treatment_ensemble")
class TreatmentEnsemble(nn.Module):
    """K cross-fitted outcome networks and (optionally) K effect corrections: the bundle's model.

    ``forward`` returns the stacked member outputs (K, B, A*K_out + A); the pipeline reads them
    with :func:`split_outputs` and :meth:`corrections`.
    """

    PRESETS: dict[str, dict[str, Any]] = {"small": {}, "large": {}}

    def __init__(self, *, member: dict[str, Any], effect: dict[str, Any] | None, n_members: int) -> None:
        super().__init__()
        self.members = nn.ModuleList([model_from_spec(member) for _ in range(n_members)])
        self.effects = nn.ModuleList([model_from_spec(effect) for _ in range(n_members)]) if effect is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members])

    def corrections(self, x: torch.Tensor) -> torch.Tensor | None:
        """DR corrections (K, B, A - 1), or None when the ensemble has none."""
        if self.effects is None:
            return None
        return torch.stack([e(x) for e in self.effects])


def treatment_ensemble_spec(member: dict[str, Any], effect: dict[str, Any] | None, n_members: int) -> dict[str, Any]:
    return {"name": "treatment_ensemble", "size": member["size"], "params": {"member": member, "effect": effect, "n_members": n_members}}


# ---------------------------------------------------------------------------- losses


def multiarm_loss(
    outputs: torch.Tensor, target: torch.Tensor, *, n_arms: int, n_outputs: int, kind: str, propensity_weight: float
) -> torch.Tensor:
    """Factual loss of the observed arm's head plus the propensity head's cross-entropy.

    Args:
        outputs: (B, A*K + A) network outputs.
        target: (B, 3) float: ``[arm index, y, event]``; ``y`` is the standardised outcome
            (continuous), 0/1 (binary) or the bin index (survival, with ``event`` 1/0).
        kind: ``continuous`` (squared error), ``binary`` (cross-entropy) or ``survival``
            (discrete-time hazard likelihood: an event in bin j adds log h_j and log(1 - h_k),
            k < j; a censored time in bin j adds log(1 - h_k), k < j).
    """
    parts = split_outputs(outputs, n_arms=n_arms, n_outputs=n_outputs)
    arm = target[:, 0].long()
    own = parts.arm[torch.arange(len(arm)), arm]  # (B, K)
    y = target[:, 1]
    if kind == "continuous":
        loss = F.mse_loss(own[:, 0], y)
    elif kind == "binary":
        loss = F.binary_cross_entropy_with_logits(own[:, 0], y)
    else:
        j = y.long()
        event = target[:, 2]
        grid = torch.arange(n_outputs, device=own.device).unsqueeze(0)
        survived = (grid < j.unsqueeze(1)).float()
        at_event = (grid == j.unsqueeze(1)).float() * event.unsqueeze(1)
        ll = survived * F.logsigmoid(-own) + at_event * F.logsigmoid(own)
        loss = -ll.sum(dim=1).mean()
    if propensity_weight > 0:
        loss = loss + propensity_weight * F.cross_entropy(parts.propensity, arm)
    return loss


# ---------------------------------------------------------------------------- survival


def survival_at_edges(hazard_logits: torch.Tensor) -> torch.Tensor:
    """S(e_0..e_J) from hazard logits (..., J): (..., J + 1), starting at 1."""
    s = torch.cumprod(torch.sigmoid(-hazard_logits), dim=-1)
    return torch.cat([torch.ones_like(s[..., :1]), s], dim=-1)


def rmst(hazard_logits: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Restricted mean survival time up to ``edges[-1]`` (trapezoid rule over the bins): (...,)."""
    s = survival_at_edges(hazard_logits)
    widths = edges[1:] - edges[:-1]
    return ((s[..., 1:] + s[..., :-1]) * 0.5 * widths).sum(dim=-1)


def risk_at_horizon(hazard_logits: torch.Tensor) -> torch.Tensor:
    """Probability of the event by the horizon, 1 - S(e_J): (...,)."""
    return 1.0 - survival_at_edges(hazard_logits)[..., -1]
