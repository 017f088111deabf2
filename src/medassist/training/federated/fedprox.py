"""FedProx (Li et al., 2020): the local loss plus μ/2 ‖w − w_global‖².

The term keeps each site's local epochs close to the round's global model, which limits client
drift when sites differ (different hospitals, different case mix). It goes in through the
Trainer's ``loss_fn``: the Trainer itself stays the one training loop.
"""

from __future__ import annotations

import torch
from torch import nn

from medassist.validation import check_number


class ProximalLoss(nn.Module):
    """``base(logits, target) + mu / 2 * sum_i ||w_i - anchor_i||^2`` while the model trains.

    The anchor is a copy of the model's parameters when the loss is built (the global model
    the server sent). In eval mode (the Trainer's validation pass) only ``base`` is returned, so
    validation losses stay comparable between rounds and strategies.

    Args:
        base: the data loss, e.g. ``nn.CrossEntropyLoss()``; logits (B, C), targets (B,).
        model: the module being trained (its parameters are read at every call).
        mu: the proximal weight μ ≥ 0; 0 is FedAvg's plain local loss.

    Example:
        >>> loss_fn = ProximalLoss(base=nn.CrossEntropyLoss(), model=model, mu=0.01)
        >>> Trainer(config=cfg).fit(model, train_data=tr, val_data=va, loss_fn=loss_fn)
    """

    def __init__(self, *, base: nn.Module, model: nn.Module, mu: float) -> None:
        super().__init__()
        check_number(mu, name="mu", owner="ProximalLoss", low=0)
        self.base = base
        self.mu = float(mu)
        self._model = [model]  # a list: not a submodule, so the loss has no parameters of its own
        for i, (_, p) in enumerate((n, p) for n, p in model.named_parameters() if p.requires_grad):
            self.register_buffer(f"anchor_{i}", p.detach().clone())

    def proximal_term(self) -> torch.Tensor:
        """``sum_i ||w_i - anchor_i||^2`` (a scalar tensor with gradient)."""
        params = [p for p in self._model[0].parameters() if p.requires_grad]
        total = torch.zeros((), device=params[0].device)
        for i, p in enumerate(params):
            total = total + ((p - getattr(self, f"anchor_{i}")) ** 2).sum()
        return total

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss: torch.Tensor = self.base(logits, target)
        if self.mu > 0 and self._model[0].training:
            loss = loss + 0.5 * self.mu * self.proximal_term()
        return loss
