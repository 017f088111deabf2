"""Treatment-effect networks: a multi-arm outcome network (TARNet/DragonNet style), a small
effect-correction network for the doubly robust second stage, and the ensemble that holds both.

Output layout of :class:`MultiArmNet` (one flat tensor, so the shared Trainer can batch it):
``(B, A * K + A)``: for each of the A arms its K outcome outputs (K = 1 for a continuous mean or a
binary logit, K = J hazard logits for a discrete-time survival outcome), then A propensity
logits. :func:`split_outputs` reads it back by name.

:class:`TreatmentModel` holds a fitted ensemble with its featurizer and turns the raw outputs into
outcomes per member (the pipeline builds it; evaluation and the assistant read it).

A survival outcome uses the one survival core of ``models/survival.py``: hazard logits over J
bins (edges ``e_0 = 0 < ... < e_J = horizon``), its likelihood, curves, RMST and risk at the horizon.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from medassist.featurizers.tabular import TabularFeaturizer
from medassist.models.registry import MODELS, model_from_spec

# the one survival core: curves, RMST and the discrete-time likelihood (re-exported for old imports)
from medassist.models.survival import discrete_time_nll, risk_at_horizon, survival_at_edges
from medassist.models.survival import restricted_mean as rmst
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
        heads, lasts = [], []
        for _ in range(n_arms):
            hidden = nn.Linear(d_hidden, d_head)  # built before the last layer: the same random draws as always
            lasts.append(nn.Linear(d_head, n_outputs))
            heads.append(nn.Sequential(hidden, nn.GELU(), nn.Dropout(dropout), lasts[-1]))
        self.heads = nn.ModuleList(heads)
        self.base = nn.Sequential(nn.Linear(d_hidden, d_head), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_head, n_outputs))
        for last in lasts:  # arms start with no effect: heterogeneity must be earned
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
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
        trunk = [nn.Linear(n_features, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_hidden), nn.GELU()]
        last = nn.Linear(d_hidden, n_contrasts)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*trunk, last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def start_at(self, effect: torch.Tensor) -> None:
        """Make the untrained correction output ``effect`` (A - 1,) for every input (its output bias)."""
        last = self.net[-1]
        if not isinstance(last, nn.Linear):
            raise TypeError(f"EffectCorrection ends in {type(last).__name__}, not the linear layer it was built with.")
        last.bias.copy_(effect)


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

    def load_effects(self, effects: list[nn.Module]) -> None:
        """Copy K fitted effect corrections into this ensemble's own."""
        if self.effects is None:
            raise ValueError("This treatment ensemble was built without effect corrections.")
        for dst, src in zip(self.effects, effects, strict=True):
            dst.load_state_dict(src.state_dict())


def treatment_ensemble_spec(member: dict[str, Any], effect: dict[str, Any] | None, n_members: int) -> dict[str, Any]:
    return {"name": "treatment_ensemble", "size": member["size"], "params": {"member": member, "effect": effect, "n_members": n_members}}


# ---------------------------------------------------------------------------- a fitted model


class TreatmentModel:
    """Featurizer + ensemble + what is needed to turn outputs into outcomes (from training or a bundle).

    ``info`` holds plain JSON: arms, ref, kind, better, y_mean, y_sd, edges, corr_scale, and more.
    """

    def __init__(self, *, featurizer: TabularFeaturizer, ensemble: TreatmentEnsemble, info: dict[str, Any]) -> None:
        self.featurizer, self.ensemble, self.info = featurizer, ensemble, info
        self.n_arms, self.ref, self.kind = len(info["arms"]), int(info["ref"]), info["kind"]
        self.n_outputs = len(info["edges"]) - 1 if self.kind == "survival" else 1

    def features(self, frame: pd.DataFrame, *, source: str) -> np.ndarray:
        return self.featurizer.transform(frame, source=source).values

    def member_outcomes(self, x: torch.Tensor, *, corrected: bool = True) -> dict[str, torch.Tensor]:
        """Per-member predictions in outcome units: ``pred`` (K, B, A), ``risk`` (survival),
        ``propensity`` (K, B, A) probabilities."""
        raw = self.ensemble(x)
        parts = split_outputs(raw.reshape(-1, raw.shape[-1]), n_arms=self.n_arms, n_outputs=self.n_outputs)
        k, b = raw.shape[0], raw.shape[1]
        arm = parts.arm.reshape(k, b, self.n_arms, self.n_outputs)
        out: dict[str, torch.Tensor] = {"propensity": torch.softmax(parts.propensity.reshape(k, b, self.n_arms), dim=-1)}
        if self.kind == "continuous":
            mu = arm[..., 0] * self.info["y_sd"] + self.info["y_mean"]
        elif self.kind == "binary":
            mu = torch.sigmoid(arm[..., 0])
        else:
            edges = torch.tensor(self.info["edges"], dtype=arm.dtype)
            mu = rmst(arm, edges)
            out["risk"] = risk_at_horizon(arm)
        if corrected:
            corr = self.ensemble.corrections(x)
            if corr is not None:
                cols = list(torch.unbind(corr * self.info["corr_scale"], dim=-1))
                cols.insert(self.ref, torch.zeros_like(cols[0]))
                mu = mu + torch.stack(cols, dim=-1)
                if self.kind == "binary":
                    mu = mu.clamp(0.0, 1.0)
        out["pred"] = mu
        return out

    @torch.no_grad()
    def draws(self, x: np.ndarray, *, corrected: bool = True, batch_size: int = 1024) -> dict[str, np.ndarray]:
        self.ensemble.eval()
        chunks: dict[str, list[np.ndarray]] = {}
        for s in range(0, len(x), batch_size):
            for key, v in self.member_outcomes(torch.as_tensor(x[s : s + batch_size]), corrected=corrected).items():
                chunks.setdefault(key, []).append(v.numpy())
        return {k: np.concatenate(v, axis=1) for k, v in chunks.items()}

    def propensity(self, prop_draws: np.ndarray) -> np.ndarray:
        """(N, A) assignment probabilities: known by design, or the ensemble's estimate, clipped."""
        n = prop_draws.shape[1]
        if self.info["assignment"] == "randomised":
            p = np.array([self.info["arm_probabilities"][a] for a in self.info["arms"]])
            return np.tile(p, (n, 1))
        e = np.clip(prop_draws.mean(axis=0), self.info["propensity_clip"], 1.0)
        return e / e.sum(axis=1, keepdims=True)


class _ContrastModule(nn.Module):
    """x (B, F) → (B, 1): the ensemble's mean effect of arm ``a`` over the reference (for attributions)."""

    def __init__(self, model: TreatmentModel, arm: int) -> None:
        super().__init__()
        self.model, self.arm, self.inner = model, arm, model.ensemble

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pred = self.model.member_outcomes(x)["pred"].mean(dim=0)
        return (pred[:, self.arm] - pred[:, self.model.ref]).unsqueeze(1)


def contrast_module(model: TreatmentModel, arm: int) -> nn.Module:
    return _ContrastModule(model, arm)


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
        loss = discrete_time_nll(own, target[:, 1:3])
    if propensity_weight > 0:
        loss = loss + propensity_weight * F.cross_entropy(parts.propensity, arm)
    return loss


__all__ = [
    "EffectCorrection", "MultiArmNet", "MultiArmOutputs", "TreatmentEnsemble", "TreatmentModel", "contrast_module", "multiarm_loss",
    "risk_at_horizon", "rmst", "split_outputs", "survival_at_edges", "treatment_ensemble_spec",
]
