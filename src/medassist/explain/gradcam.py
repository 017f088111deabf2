"""Grad-CAM (Selvaraju et al., 2017) through Captum's LayerGradCam, saved as PNG overlays.

The heat map is the ReLU of the class-score gradient-weighted sum of the last convolutional
feature maps, upsampled to the input size and scaled to [0, 1]. It shows *where* the model
looked for the explained class, not *why*; a map on the image border or on text burnt into the
image is a warning sign.

Example:
    >>> cam = grad_cam(model, x, target=1, layer=model.gradcam_layer())   # (H, W) in [0, 1]
    >>> save_overlay(display_image, cam, "explain.png", title="pneumonia 0.91")
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn


def grad_cam(model: nn.Module, x: torch.Tensor, *, target: int, layer: nn.Module) -> np.ndarray:
    """Grad-CAM of one input ``x`` (1, C, H, W) for output ``target``: (H, W) float32 in [0, 1]."""
    from captum.attr import LayerAttribution, LayerGradCam

    model.eval()
    x = x.detach().clone().requires_grad_(True)
    attr = LayerGradCam(model, layer).attribute(x, target=int(target), relu_attributions=True)
    cam = LayerAttribution.interpolate(attr, tuple(x.shape[2:]), interpolate_mode="bilinear")[0, 0].detach()
    cam = cam.clamp(min=0)
    peak = float(cam.max())
    return (cam / peak).numpy().astype(np.float32) if peak > 0 else np.zeros(tuple(x.shape[2:]), dtype=np.float32)


def overlay_png(image: np.ndarray, cam: np.ndarray, *, title: str | None = None, alpha: float = 0.45, scale: int = 4) -> bytes:
    """PNG bytes: the image (H, W, C in [0, 1]) in grey/colour with the heat map over it (jet)."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
    heat = colormaps["jet"](np.clip(cam, 0, 1))[..., :3]
    weight = alpha * np.clip(cam, 0, 1)[..., None]  # cold regions keep the image visible
    out = (1 - weight) * rgb + weight * heat
    pic = Image.fromarray(np.round(255 * np.clip(out, 0, 1)).astype(np.uint8))
    side = max(1, scale if max(pic.size) < 256 else 1)
    pic = pic.resize((pic.width * side, pic.height * side), Image.NEAREST)
    if title:
        canvas = Image.new("RGB", (pic.width, pic.height + 14), "white")
        canvas.paste(pic, (0, 14))
        ImageDraw.Draw(canvas).text((2, 1), title[:60], fill="black")
        pic = canvas
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    return buf.getvalue()


def save_overlay(image: np.ndarray, cam: np.ndarray, path: str | Path, *, title: str | None = None) -> Path:
    """Write the overlay PNG atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(overlay_png(image, cam, title=title))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
