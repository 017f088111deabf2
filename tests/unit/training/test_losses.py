"""Losses: masked multi-task losses count only measured labels."""

import pytest
import torch

from medassist.training.losses import masked_bce, masked_mse


def test_masked_losses_ignore_missing_labels():
    out = torch.tensor([[0.0, 5.0], [1.0, 2.0]])
    y = torch.tensor([[0.0, float("nan")], [3.0, 2.0]])
    assert masked_mse(out, y).item() == pytest.approx((0 + 4 + 0) / 3)
    assert torch.isfinite(masked_bce(out, torch.tensor([[1.0, float("nan")], [0.0, 1.0]])))
    out.requires_grad_(True)
    masked_mse(out, y).backward()
    assert out.grad[0, 1] == 0
