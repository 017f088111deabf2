"""The parts of the image training recipe that sit around the Trainer.

- :class:`BatchAugment`: mild, anatomy-preserving augmentation (small affine, contrast, noise;
  no flips, since left and right matter in medical images), vectorised over a batch so that it
  costs next to nothing beside the network (MONAI's per-image ``RandAffine`` took ~2.7 ms an
  image on one CPU core, as long as the forward and backward pass of the ``base`` network).
- mixup (Zhang et al., 2018) of a batch's images and one-hot targets, in :class:`ImageTensorDataset`.
- :class:`EMAModel`: an exponential moving average of the weights, which the Trainer validates
  (so early stopping picks the best *averaged* weights) and the bundle keeps.
- :func:`load_initial_weights`: ``--init-from PATH``, a local checkpoint, with a report of what
  was loaded and what was skipped.

Example:
    >>> ds = ImageTensorDataset(images=x, targets=y, augment=BatchAugment(seed=0), mixup=0.2, n_classes=2)
    >>> wrapped = EMAModel(model, decay=0.99)   # Trainer.fit(wrapped, ...); then wrapped.averaged()
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medassist.exceptions import ConfigError, DataError
from medassist.types import Batch


class BatchAugment:
    """Random affine (p=0.5: rotation ±0.15 rad, scale ±10%, shift ±2 px, border padding),
    gamma contrast (p=0.3, γ in [0.8, 1.25]) and Gaussian noise (p=0.2, σ 0.05) per image,
    applied to a whole batch (B, C, H, W) at once, or to one image (C, H, W). Volumes
    (``spatial_dims=3``, (B, C, D, H, W)) get contrast and noise only."""

    def __init__(self, *, seed: int = 0, spatial_dims: int = 2) -> None:
        self.seed, self.spatial_dims = seed, spatial_dims
        self.generator = torch.Generator().manual_seed(seed)

    def _u(self, n: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=self.generator)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        single = x.ndim == self.spatial_dims + 1
        x = x[None] if single else x
        if self.spatial_dims == 2:
            x = self._affine(x)
        b = x.shape[0]
        shape = (b,) + (1,) * (x.ndim - 1)
        lo = x.flatten(1).amin(1).view(shape)
        span = (x.flatten(1).amax(1).view(shape) - lo).clamp_min(1e-6)
        gamma = torch.where(torch.rand(b, generator=self.generator) < 0.3, torch.exp(self._u(b, math.log(0.8), math.log(1.25))),
                            torch.ones(b)).view(shape).to(x.dtype)
        x = ((x - lo) / span).clamp(0, 1) ** gamma * span + lo
        noisy = (torch.rand(b, generator=self.generator) < 0.2).view(shape).to(x.dtype)
        x = x + noisy * 0.05 * torch.randn(x.shape, generator=self.generator, dtype=x.dtype)
        return x[0] if single else x

    def _affine(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        on = (torch.rand(b, generator=self.generator) < 0.5).float()
        angle = self._u(b, -0.15, 0.15) * on
        scale = 1 + self._u(b, -0.1, 0.1) * on
        tx, ty = self._u(b, -2, 2) * on * 2 / w, self._u(b, -2, 2) * on * 2 / h
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x.contiguous(), grid, mode="bilinear", padding_mode="border", align_corners=False)


class ImageTensorDataset(torch.utils.data.Dataset):
    """Featurized images (N, C, H, W) with targets (N,) int64 or (N, L) float32.

    Args:
        augment: applied to every training batch (and to single rows, DP-SGD's Poisson path).
        mixup: Beta(α, α) mixing of a batch with a shuffled copy of itself (0 turns it off);
            targets then come as probabilities (B, K) (or mixed 0/1 labels, multi-label).
        n_classes: the number of classes (for the one-hot targets mixup needs).
        channels_last: hand batches out in channels-last memory order (faster convolutions on CPU).
        seed: seeds the mixup draws.
    """

    def __init__(self, *, images: torch.Tensor, targets: torch.Tensor, augment: Any = None, mixup: float = 0.0,
                 n_classes: int = 0, channels_last: bool = False, seed: int = 0) -> None:
        if len(images) != len(targets):
            raise DataError(f"{len(images)} images but {len(targets)} targets.")
        if mixup > 0 and targets.ndim == 1 and n_classes < 2:
            raise ConfigError("mixup needs n_classes (at least 2) to build one-hot targets.")
        self.images, self.targets, self.augment = images, targets, augment
        self.mixup, self.n_classes, self.channels_last = mixup, n_classes, channels_last
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Only a DataLoader reads rows one by one (DP-SGD's Poisson sampling): augment them too.
        x = self.images[i]
        if self.augment is not None:
            x = self.augment(x)
        return x, self.targets[i]

    def get_batch(self, indices: torch.Tensor) -> Batch:
        x, y = self.images[indices], self.targets[indices]
        if self.augment is not None:
            x = self.augment(x)
        if self.mixup > 0 and len(x) > 1:
            lam = float(self.rng.beta(self.mixup, self.mixup))
            perm = torch.as_tensor(self.rng.permutation(len(x)))
            soft = F.one_hot(y, self.n_classes).float() if y.ndim == 1 else y.float()
            x = lam * x + (1 - lam) * x[perm]
            y = lam * soft + (1 - lam) * soft[perm]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return Batch(inputs=x, target=y)


class EMAModel(nn.Module):
    """A network and an exponential moving average of its weights (decay ``d``, warmed up as
    min(d, (1 + n) / (10 + n)) after n steps). Training mode runs the network and updates the
    average; eval mode runs the average, so the Trainer's validation, early stopping and best
    state all use the averaged weights. BatchNorm statistics are copied, not averaged.
    """

    steps: torch.Tensor  # a registered buffer (saved with the state), the number of updates so far

    def __init__(self, net: nn.Module, *, decay: float) -> None:
        super().__init__()
        if not 0 < decay < 1:
            raise ConfigError(f"The 'decay' parameter of EMAModel must be a float in (0, 1). Got {decay!r} instead.")
        self.net, self.decay = net, decay
        self.ema = copy.deepcopy(net)
        for p in self.ema.parameters():
            p.requires_grad_(False)  # the optimiser skips parameters that never get a gradient
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _update(self) -> None:
        n = int(self.steps)
        d = min(self.decay, (1 + n) / (10 + n))
        for e, p in zip(self.ema.parameters(), self.net.parameters()):
            e.mul_(d).add_(p.detach(), alpha=1 - d)
        for eb, b in zip(self.ema.buffers(), self.net.buffers()):
            eb.copy_(b)
        self.steps += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._update()
            return self.net(x)
        return self.ema(x)

    def averaged(self) -> nn.Module:
        """The network holding the averaged weights (eval mode)."""
        self.net.load_state_dict(self.ema.state_dict())
        return self.net.eval()


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise DataError(f"--init-from {path}: a folder, but not a medassist bundle (no model.safetensors in it).")
        path = path / "model.safetensors"
    if not path.is_file():
        raise DataError(f"--init-from {path}: no such file.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise DataError(f"--init-from {path}: not a readable safetensors file ({e}).") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
    except Exception as e:
        raise DataError(f"--init-from {path}: not a plain PyTorch state dict (.pt/.pth saved with torch.save(model.state_dict())) "
                        f"or a .safetensors file: {str(e).splitlines()[0] if str(e) else type(e).__name__}.") from e
    for key in ("state_dict", "model", "model_state_dict", "weights"):  # common checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, dict) else {}
    if not tensors:
        raise DataError(f"--init-from {path}: holds no tensors by name (expected a state dict).")
    return tensors


_PREFIXES = ("", "net.", "module.", "model.", "net.net.", "module.net.")


def load_initial_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Copy the tensors of a local checkpoint into ``model`` where names and shapes match.

    Names match as they are, or after removing/adding a common prefix (``module.`` of
    DistributedDataParallel, ``net.``/``model.`` of wrappers), so a MONAI or torchvision-style
    state dict of the same architecture loads. A tensor whose shape differs (another number of
    classes or input channels) is skipped and listed. Nothing is downloaded.

    Returns:
        ``{"path", "loaded": [names], "skipped": [{"name", "reason"}], "not_in_checkpoint": [names],
        "unused": [checkpoint names], "summary": str}``.
    """
    path = Path(path)
    source = _read_state(path)
    stripped: dict[str, tuple[str, torch.Tensor]] = {}
    for key, value in source.items():
        for pre in sorted(_PREFIXES, key=len, reverse=True):
            if pre and key.startswith(pre):
                stripped.setdefault(key[len(pre):], (key, value))
                break
        stripped.setdefault(key, (key, value))
    target = model.state_dict()
    loaded, skipped, missing, used = [], [], [], set()
    new_state = {}
    for name, tensor in target.items():
        found = None
        for pre in _PREFIXES:
            if name.startswith(pre) and name[len(pre):] in stripped:
                found = stripped[name[len(pre):]]
                break
        if found is None:
            missing.append(name)
            continue
        key, value = found
        used.add(key)
        if tuple(value.shape) != tuple(tensor.shape):
            skipped.append({"name": name, "reason": f"shape {tuple(value.shape)} in the checkpoint, {tuple(tensor.shape)} in the model"})
            continue
        new_state[name] = value.to(tensor.dtype)
        loaded.append(name)
    if not loaded:
        raise DataError(f"--init-from {path}: none of its {len(source)} tensors fits this model "
                        f"({len(skipped)} with another shape, {len(missing)} model tensors not in the file); "
                        "is it the same architecture and size (--model, --size)?")
    model.load_state_dict(new_state, strict=False)
    unused = sorted(set(source) - used)
    summary = (f"initialised from {path}: {len(loaded)} of {len(target)} tensors loaded, {len(skipped)} skipped "
               f"(shape mismatch), {len(missing)} not in the checkpoint (kept at random initialisation)"
               + (f", {len(unused)} checkpoint tensors unused" if unused else ""))
    return {"path": str(path), "loaded": loaded, "skipped": skipped, "not_in_checkpoint": missing, "unused": unused, "summary": summary}
