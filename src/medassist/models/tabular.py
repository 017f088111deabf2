"""Tabular networks: a residual MLP, an FT-Transformer-like model and TabM.

All take a float matrix ``x`` of shape (B, F) from the tabular featurizer and return logits of
shape (B, C) (TabM in training mode: every member's logits, (B, k, C)). Each has a ``small`` preset for tests and a ``large`` preset over one million
parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from medassist.exceptions import ConfigError
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


# --------------------------------------------------------------------------------------------
# TabM (Gorishniy et al., ICLR 2025): k implicit MLPs sharing their weights, trained at once.


def quantile_bin_edges(x: torch.Tensor, *, n_bins: int) -> list[torch.Tensor]:
    """Per column of ``x`` (N, F), the distinct training quantiles at 0, 1/n_bins, ..., 1: at most
    ``n_bins`` bins, fewer where a column has few distinct values (a 0/1 column gets one bin).
    A constant column gets the one bin [v, v + 1] (its encoding is then constant)."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise ConfigError(f"Bin edges need a float matrix (N, F) with N >= 2 training rows; got shape {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        raise ConfigError("Bin edges need finite training values; the featurized matrix holds NaN or infinity.")
    q = torch.quantile(x.double(), torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64), dim=0)  # (n_bins + 1, F)
    edges = []
    for j in range(x.shape[1]):
        e = torch.unique(q[:, j])
        edges.append(e if len(e) >= 2 else torch.cat([e, e + 1.0]))
    return edges


class PiecewiseLinearEncoding(nn.Module):
    """The piecewise-linear encoding (Gorishniy et al., NeurIPS 2022) over per-column bins.

    A value in bin t of its column is encoded ``[1, ..., 1, (x - left_t) / width_t, 0, ..., 0]``,
    the first component unbounded below and the last unbounded above. The bins are data: they
    live in buffers (``weight``, ``bias``: (F, n_bins), ``single_bin``: (F,)) so a state_dict
    carries them; until :meth:`fit_bins` is called they are the quantiles of a standard normal
    (the featurizer's standardised numbers). Columns with fewer bins are padded in the middle
    (zeros), keeping each column's last bin in the last slot. No trainable parameters (Opacus
    requires a module that holds buffers to have none).

    Shapes: x (B, F) → (B, F, n_bins).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    single_bin: torch.Tensor

    def __init__(self, *, n_features: int, n_bins: int) -> None:
        super().__init__()
        self.n_bins = n_bins
        self.register_buffer("weight", torch.zeros(n_features, n_bins))
        self.register_buffer("bias", torch.zeros(n_features, n_bins))
        self.register_buffer("single_bin", torch.zeros(n_features))
        normal = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.0, 1.0, n_bins + 1)[1:-1])
        default = torch.cat([torch.tensor([-4.0]), normal, torch.tensor([4.0])])
        self.set_bins([default] * n_features)

    def set_bins(self, edges: list[torch.Tensor]) -> None:
        """Load per-column bin edges (each a sorted 1-D tensor of 2 to n_bins + 1 values)."""
        if len(edges) != self.weight.shape[0]:
            raise ConfigError(f"Expected bin edges for {self.weight.shape[0]} columns; got {len(edges)}.")
        weight, bias, single = torch.zeros_like(self.weight), torch.zeros_like(self.bias), torch.zeros_like(self.single_bin)
        for j, e in enumerate(edges):
            e = torch.as_tensor(e, dtype=torch.float64)
            n = len(e) - 1
            if not 1 <= n <= self.n_bins or not bool((e.diff() > 0).all()):
                raise ConfigError(f"Column {j}: expected 2 to {self.n_bins + 1} increasing bin edges; got {e.tolist()}.")
            w, b = 1.0 / e.diff(), -e[:-1] / e.diff()
            weight[j, : n - 1], bias[j, : n - 1] = w[:-1].float(), b[:-1].float()
            weight[j, -1], bias[j, -1] = float(w[-1]), float(b[-1])
            single[j] = float(n == 1)
        with torch.no_grad():
            self.weight.copy_(weight)
            self.bias.copy_(bias)
            self.single_bin.copy_(single)

    def fit_bins(self, x: torch.Tensor) -> None:
        """Quantile bins from the TRAINING rows ``x`` (N, F) only."""
        self.set_bins(quantile_bin_edges(x, n_bins=self.n_bins))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.addcmul(self.bias, self.weight, x.unsqueeze(-1))
        if z.shape[-1] == 1:
            return z
        last = torch.where(self.single_bin.unsqueeze(-1) > 0.5, z[..., -1:], z[..., -1:].clamp_min(0.0))
        return torch.cat([z[..., :1].clamp_max(1.0), z[..., 1:-1].clamp(0.0, 1.0), last], dim=-1)


class _ColumnLinear(nn.Module):
    """Per column j, ``x_j w_j + b_j``. Shapes: (B, F) → (B, F, d)."""

    def __init__(self, *, n_features: int, d: int) -> None:
        super().__init__()
        bound = d**-0.5
        self.weight = nn.Parameter(torch.empty(n_features, d).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_features, d).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(-1) * self.weight + self.bias


class _ColumnMix(nn.Module):
    """Per column j, a linear map of its encoding, zero at the start. Shapes: (B, F, T) → (B, F, d)."""

    def __init__(self, *, n_features: int, n_bins: int, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_features, n_bins, d))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bft,ftd->bfd", z, self.weight)


class PiecewiseLinearEmbeddings(nn.Module):
    """Numeric embeddings ("version B" of TabM): ``e_j = x_j w_j + b_j + PLE(x_j) V_j``, V zero
    at the start so training begins from plain linear embeddings. The bins live in
    ``encoding`` (:class:`PiecewiseLinearEncoding`).

    Shapes: x (B, F) → (B, F, d_embedding).
    """

    def __init__(self, *, n_features: int, n_bins: int, d_embedding: int) -> None:
        super().__init__()
        self.linear = _ColumnLinear(n_features=n_features, d=d_embedding)
        self.encoding = PiecewiseLinearEncoding(n_features=n_features, n_bins=n_bins)
        self.mix = _ColumnMix(n_features=n_features, n_bins=n_bins, d=d_embedding)

    def fit_bins(self, x: torch.Tensor) -> None:
        self.encoding.fit_bins(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.mix(self.encoding(x))


class _MemberScale(nn.Module):
    """TabM-mini's per-member multiplicative adapter. Shapes: (B, k, d) → (B, k, d)."""

    def __init__(self, start: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(start)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


class _EnsembleLinear(nn.Module):
    """A linear layer shared by k members, with optional per-member BatchEnsemble adapters and
    biases: ``y_i = ((x_i * r_i) W^T) * s_i + b_i``; without adapters ``y_i = x_i W^T + b``.
    Shapes: (B, k, d_in) → (B, k, d_out)."""

    def __init__(self, *, d_in: int, d_out: int, k: int, adapters: bool) -> None:
        super().__init__()
        bound = d_in**-0.5
        self.weight = nn.Parameter(torch.empty(d_out, d_in).uniform_(-bound, bound))
        bias = torch.empty(d_out).uniform_(-bound, bound)
        self.bias = nn.Parameter(bias.repeat(k, 1) if adapters else bias)  # (k, d_out) with the same start, or shared (d_out,)
        self.r = nn.Parameter(torch.ones(k, d_in)) if adapters else None
        self.s = nn.Parameter(torch.ones(k, d_out)) if adapters else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.r is not None:
            x = x * self.r
        x = x @ self.weight.T
        if self.s is not None:
            x = x * self.s
        return x + self.bias


class _MemberHeads(nn.Module):
    """k independent linear heads. Shapes: (B, k, d) → (B, k, C)."""

    def __init__(self, *, d_in: int, n_outputs: int, k: int) -> None:
        super().__init__()
        bound = d_in**-0.5
        self.weight = nn.Parameter(torch.empty(k, d_in, n_outputs).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, n_outputs).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bkd,kdc->bkc", x, self.weight) + self.bias


@MODELS.register("tabm")
class TabM(nn.Module):
    """TabM (Gorishniy et al., ICLR 2025): one MLP that holds k members sharing its weights.

    Every input row goes to all k members at once; members differ only by their adapters (and
    biases) and their heads. ``adapters="mini"`` (TabM-mini) gives each member one multiplicative adapter
    on the (embedded) input; ``"full"`` gives every linear layer BatchEnsemble adapters r, s
    and per-member biases. ``d_embedding > 0`` embeds every input column with piecewise-linear
    encodings over quantile bins of the training rows (call :meth:`fit_bins` before training);
    ``d_embedding == 0`` feeds the featurized matrix as it is.

    In training mode the forward pass returns every member's logits (B, k, C): the loss is the
    mean of the k members' losses (:func:`medassist.training.losses.classification_loss`
    accepts it). In eval mode it returns ``log(mean_i softmax(logits_i))`` (B, C), which acts
    as logits: ``softmax`` of it is the ensemble's mean probability, so temperature scaling,
    calibration and attributions apply unchanged.

    Args:
        n_features: F, width of the featurized input.
        n_outputs: C, number of classes.
        k: members.
        d_block, n_blocks, dropout: the shared MLP (Linear → ReLU → Dropout, ``n_blocks`` times).
        adapters: "mini" or "full".
        d_embedding, n_bins: the numeric embeddings (0: none).

    Shapes: x (B, F) → embedded (B, F * d_embedding) → (B, k, d_block) → training (B, k, C),
    eval (B, C).

    Example:
        >>> model, spec = build_model("tabm", size="small", n_features=30, n_outputs=2)
        >>> model.fit_bins(x_train)
    """

    PRESETS = {
        # small: k=16 without dropout gave the AUC of k=32 with dropout 0.1 on the four bundled
        # tables (5-fold CV) at 0.4x its CPU time: the members' diversity is regularisation enough.
        "small": {"k": 16, "d_block": 64, "n_blocks": 2, "dropout": 0.0, "adapters": "mini", "d_embedding": 8, "n_bins": 16},
        "large": {"k": 32, "d_block": 768, "n_blocks": 3, "dropout": 0.1, "adapters": "mini", "d_embedding": 16, "n_bins": 48},
    }

    def __init__(
        self, *, n_features: int, n_outputs: int, k: int, d_block: int, n_blocks: int, dropout: float, adapters: str,
        d_embedding: int, n_bins: int,
    ) -> None:
        super().__init__()
        for name, value, low in (("n_features", n_features, 1), ("n_outputs", n_outputs, 1), ("k", k, 1),
                                 ("d_block", d_block, 1), ("n_blocks", n_blocks, 1), ("d_embedding", d_embedding, 0),
                                 ("n_bins", n_bins, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"The '{name}' parameter of TabM must be an integer >= {low}. Got {value!r} instead.")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"The 'dropout' parameter of TabM must be a float in [0, 1). Got {dropout!r} instead.")
        if adapters not in ("mini", "full"):
            raise ConfigError(f"The 'adapters' parameter of TabM must be 'mini' or 'full'. Got {adapters!r} instead.")
        self.k = k
        self.embeddings = (
            PiecewiseLinearEmbeddings(n_features=n_features, n_bins=n_bins, d_embedding=d_embedding) if d_embedding else None
        )
        d_in = n_features * (d_embedding or 1)
        # TabM-mini's one adapter; in full TabM the first layer's r plays that role. Either starts
        # random so the members differ from the first step (the paper's initialization: random
        # signs on raw inputs, one N(0, 1) value per embedded column otherwise).
        if d_embedding:
            start = torch.randn(k, n_features).repeat_interleave(d_embedding, dim=1)
        else:
            start = torch.randint(0, 2, (k, d_in)).float() * 2 - 1
        self.adapter = _MemberScale(start) if adapters == "mini" else None
        layers: list[nn.Module] = []
        for i in range(n_blocks):
            linear = _EnsembleLinear(d_in=d_in if i == 0 else d_block, d_out=d_block, k=k, adapters=adapters == "full")
            if i == 0 and linear.r is not None:
                with torch.no_grad():
                    linear.r.copy_(start)
            layers += [linear, nn.ReLU(), nn.Dropout(dropout)]
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Sequential(_MemberHeads(d_in=d_block, n_outputs=n_outputs, k=k))

    def fit_bins(self, x: torch.Tensor) -> None:
        """Quantile bins of the embeddings from the training rows ``x`` (N, F); no-op without them."""
        if self.embeddings is not None:
            self.embeddings.fit_bins(x)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's logits: x (B, F) → (B, k, C)."""
        h = self.embeddings(x).flatten(1) if self.embeddings is not None else x
        h = h.unsqueeze(1).expand(-1, self.k, -1)
        if self.adapter is not None:
            h = self.adapter(h)
        return self.head(self.blocks(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.member_logits(x)
        if self.training:
            return logits
        return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=1) - math.log(self.k)
