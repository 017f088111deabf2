"""Grad-CAM through Captum: maps follow the evidence; overlays are valid PNGs."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from medassist.explain.gradcam import grad_cam, save_overlay


class _Quarters(nn.Module):
    """Two feature maps: the image's top-left quarter, and its bottom-right quarter."""

    def forward(self, x):
        h, w = x.shape[2] // 2, x.shape[3] // 2
        top_left, bottom_right = torch.zeros_like(x), torch.zeros_like(x)
        top_left[:, :, :h, :w] = x[:, :, :h, :w]
        bottom_right[:, :, h:, w:] = x[:, :, h:, w:]
        return torch.cat([top_left, bottom_right], dim=1)


class _Spot(nn.Module):
    """Logit 1 rises with the top-left feature map only: the evidence is known."""

    def __init__(self):
        super().__init__()
        self.features = _Quarters()

    def forward(self, x):
        f = self.features(x)
        score = f[:, 0].mean(dim=(1, 2))
        return torch.stack([-score, score], dim=1)


def test_map_peaks_where_the_evidence_is(tmp_path):
    model = _Spot()
    x = torch.rand(1, 1, 16, 16) + 0.1
    cam = grad_cam(model, x, target=1, layer=model.features)
    assert cam.shape == (16, 16) and cam.max() == 1.0
    assert cam[:8, :8].mean() > 5 * max(cam[8:, 8:].mean(), 1e-6)
    path = save_overlay(np.random.rand(16, 16, 1), cam, tmp_path / "sub" / "cam.png", title="lesion 0.9")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
    assert not list((tmp_path / "sub").glob("*.tmp"))
