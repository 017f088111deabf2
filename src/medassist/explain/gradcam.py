"""Grad-CAM (Selvaraju et al., 2017) through Captum's LayerGradCam, saved as PNG overlays.

The heat map is the ReLU of the class-score gradient-weighted sum of the last convolutional
feature maps, upsampled to the input size and scaled to [0, 1]. It shows *where* the model
looked for the explained class, not *why*; a map on the image border or on text burnt into the
image is a warning sign.

Example:
    >>> cam = grad_cam(model, x, target=1, layer=model.gradcam_layer())   # (H, W) in [0, 1]
    >>> save_overlay(display_image, cam, "explain.png", title="pneumonia 0.91")   # original | overlay | colour bar
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medassist.fileio import write_atomic


def grad_cam(model: nn.Module, x: torch.Tensor, *, target: int, layer: nn.Module) -> np.ndarray:
    """Grad-CAM of one input ``x`` (1, C, H, W) for output ``target``: (H, W) float32 in [0, 1];
    of a volume (1, C, D, H, W): (D, H, W), upsampled trilinearly (show it slice by slice)."""
    from captum.attr import LayerAttribution, LayerGradCam

    model.eval()
    x = x.detach().clone().requires_grad_(True)
    attr = LayerGradCam(model, layer).attribute(x, target=int(target), relu_attributions=True)
    mode = "trilinear" if x.ndim == 5 else "bilinear"
    cam = LayerAttribution.interpolate(attr, tuple(x.shape[2:]), interpolate_mode=mode)[0, 0].detach()
    cam = cam.clamp(min=0)
    peak = float(cam.max())
    return (cam / peak).numpy().astype(np.float32) if peak > 0 else np.zeros(tuple(x.shape[2:]), dtype=np.float32)


#: Label of the colour bar beside every Grad-CAM overlay.
COLORBAR_LABEL = "relative importance (Grad-CAM)"
#: Shortest side of each panel (original, overlay) in the PNG, in pixels.
PANEL_PX = 340


def overlay_png(image: np.ndarray, cam: np.ndarray, *, title: str | None = None, alpha: float = 0.5,
                panel_px: int = PANEL_PX) -> bytes:
    """PNG bytes: the image (H, W, C in [0, 1]) beside the same image with the heat map (jet) over
    it, each panel at least ``panel_px`` pixels, and a colour bar labelled
    "relative importance (Grad-CAM)". A small image (MedMNIST's 28 px) is enlarged with
    nearest-neighbour so its pixels stay honest; the map, smooth by construction, bilinearly.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from PIL import Image

    img = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    heat = np.clip(np.asarray(cam, dtype=np.float32), 0, 1)
    h, w = img.shape[:2]
    dpi = 100
    side = panel_px / dpi
    aspect = h / max(w, 1)
    width_in, height_in = (side, side * aspect) if aspect <= 1 else (side / aspect, side)
    fig = Figure(figsize=(2 * width_in + 1.3, height_in + (0.75 if title else 0.45)), dpi=dpi, layout="constrained")
    ax_img, ax_cam = fig.subplots(1, 2)
    shown = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0} if img.ndim == 2 else {}
    smooth = "nearest" if max(h, w) < panel_px else "antialiased"
    ax_img.imshow(img, interpolation=smooth, **shown)
    ax_cam.imshow(img, interpolation=smooth, **shown)
    # cold regions keep the image visible: the map's opacity grows with its value
    ax_cam.imshow(heat, cmap="jet", vmin=0.0, vmax=1.0, alpha=alpha * heat, interpolation="bilinear")
    ax_img.set_title("original", fontsize=9)
    ax_cam.set_title("Grad-CAM overlay", fontsize=9)
    for ax in (ax_img, ax_cam):
        ax.set_axis_off()
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap="jet"), ax=ax_cam, fraction=0.06, pad=0.03)
    bar.set_label(COLORBAR_LABEL, fontsize=8)
    bar.set_ticks([0.0, 0.5, 1.0], labels=["0 (none)", "0.5", "1 (most)"], fontsize=7)
    if title:
        fig.suptitle(title[:80], fontsize=10)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", facecolor="white")
    finally:
        fig.clear()
    out = io.BytesIO()
    with Image.open(io.BytesIO(buf.getvalue())) as pic:
        pic.convert("RGB").save(out, format="PNG", optimize=True)
    return out.getvalue()


def save_overlay(image: np.ndarray, cam: np.ndarray, path: str | Path, *, title: str | None = None) -> Path:
    """Write the overlay PNG atomically (temp file, then rename)."""
    return write_atomic(Path(path), overlay_png(image, cam, title=title), mode=0o644)


def volume_slices(cam: np.ndarray, k: int = 3, *, image: np.ndarray | None = None) -> list[int]:
    """The ``k`` axial slices (first axis of a (D, H, W) map) holding the most Grad-CAM weight, in order.

    With ``image`` (the volume as shown, first axis the same slices), slices that hold no anatomy (a
    constant slice: the zero padding around a resampled volume) are passed over while others remain.
    """
    mass = np.asarray(cam).reshape(len(cam), -1).sum(axis=1)
    if image is not None:
        flat = np.asarray(image).reshape(len(mass), -1)
        content = np.ptp(flat, axis=1) > 0
        if content.sum() >= min(k, len(mass)):
            mass = np.where(content, mass, -np.inf)
    return sorted(np.argsort(-mass)[:k].tolist())
