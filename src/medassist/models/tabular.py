"""Tabular networks: a residual MLP and an FT-Transformer-like model.

Both take a float matrix ``x`` of shape (B, F) from the tabular featurizer and return logits of
shape (B, C). Each has a ``small`` preset for tests and a ``large`` preset over one million
parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from medassist.models.registry import MODELS


class _ResidualBlock(nn.Module):
    def __init__(self, *, d: int, expansion: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.ff = nn.Sequential(
            nn.Linear(d, d * expansion), nn.GELU(), nn.Dropout(dropout), nn.Linear(d * expansion, d), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ff(self.norm(x))


@MODELS.register("mlp")
class ResidualMLP(nn.Module):
    """Pre-norm residual MLP (Gorishniy et al., 2021 "ResNet" baseline for tables).

    Args:
        n_features: F, width of the featurized input.
        n_outputs: C, number of classes.

    Shapes: x (B, F) → logits (B, C).
    """

    PRESETS = {
        "small": {"d_hidden": 64, "n_blocks": 2, "expansion": 2, "dropout": 0.3},
        "large": {"d_hidden": 384, "n_blocks": 4, "expansion": 2, "dropout": 0.3},
    }

    def __init__(
        self, *, n_features: int, n_outputs: int, d_hidden: int, n_blocks: int, expansion: int, dropout: float
    ) -> None:
        super().__init__()
        self.stem = nn.Linear(n_features, d_hidden)
        self.blocks = nn.Sequential(*[_ResidualBlock(d=d_hidden, expansion=expansion, dropout=dropout) for _ in range(n_blocks)])
        self.head = nn.Sequential(nn.LayerNorm(d_hidden), nn.GELU(), nn.Linear(d_hidden, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


@MODELS.register("ft")
class FTTransformer(nn.Module):
    """FT-Transformer-like model (Gorishniy et al., 2021): one token per input feature.

    Each feature value is embedded as ``x_j * W_j + b_j``; a [CLS] token is appended and the
    transformer's [CLS] output feeds the head.

    Shapes: x (B, F) → tokens (B, F + 1, d) → logits (B, C).
    """

    PRESETS = {
        "small": {"d_token": 32, "n_layers": 2, "n_heads": 4, "ffn_factor": 2.0, "dropout": 0.1},
        "large": {"d_token": 256, "n_layers": 3, "n_heads": 8, "ffn_factor": 4.0 / 3.0, "dropout": 0.15},
    }

    def __init__(
        self, *, n_features: int, n_outputs: int, d_token: int, n_layers: int, n_heads: int, ffn_factor: float, dropout: float
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_features, d_token))
        self.bias = nn.Parameter(torch.empty(n_features, d_token))
        bound = 1.0 / math.sqrt(d_token)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_token))
        nn.init.uniform_(self.cls, -bound, bound)
        layer = nn.TransformerEncoderLayer(
            d_model=d_token, nhead=n_heads, dim_feedforward=int(d_token * ffn_factor), dropout=dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=n_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d_token), nn.ReLU(), nn.Linear(d_token, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.unsqueeze(-1) * self.weight + self.bias
        tokens = torch.cat([tokens, self.cls.expand(x.shape[0], -1, -1)], dim=1)
        return self.head(self.encoder(tokens)[:, -1])
