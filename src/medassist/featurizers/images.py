"""Image featurizer: channel conversion, resizing and normalisation, with its state as JSON.

Fitted on the training split only: the target size (the training images' median, unless
given), the channel count, per-channel mean and standard deviation, the training images' aspect
ratio and the DICOM modalities seen. ``transform`` converts what is safe to convert and refuses
what is not:

- grey → RGB (replicated) is safe; RGB → grey only when the three channels are equal;
- resizing is safe while the aspect ratio stays within ``MAX_ASPECT_CHANGE`` of the training
  images' (beyond that, anatomy would be visibly distorted);
- a DICOM of another modality than the training images (e.g. MR into a CT model) is refused.

Example:
    >>> fz = ImageFeaturizer().fit(train_images, modalities=["CT"] * len(train_images))
    >>> x = fz.transform(images)           # torch.float32 (N, C, H, W)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medassist.exceptions import DataError, NotFittedError
from medassist.featurizers.registry import FEATURIZERS
from medassist.validation import check_number

MAX_ASPECT_CHANGE = 1.5
MAX_SIZE = 224


def _as_float(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    return img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32, copy=False)


@FEATURIZERS.register("image")
class ImageFeaturizer:
    """Args:
    size: side of the square model input; None: the training images' median side (≤ 224).
    channels: 1 or 3; None: as the training images (RGB if any training image is RGB).
    window: the DICOM/NIfTI window preset the images were read with (kept for prediction).
    standardize: learn per-channel mean/std from the training images; False keeps 0 and 1 (the
        inputs stay in their read range), as differentially private training needs: the
        training pixels' mean and spread would otherwise leave with the bundle without noise.
    """

    def __init__(self, *, size: int | None = None, channels: int | None = None, window: str | None = None,
                 standardize: bool = True) -> None:
        if size is not None:
            check_number(size, name="size", owner="ImageFeaturizer", low=8, high=1024, integer=True)
        if channels is not None and channels not in (1, 3):
            raise DataError(f"The 'channels' parameter of ImageFeaturizer must be 1 or 3. Got {channels!r} instead.")
        self.size = size
        self.channels = channels
        self.window = window
        self.standardize = standardize

    # ------------------------------------------------------------------ fitting
    def fit(self, images: Any, *, modalities: list[str] | None = None, batch_size: int = 512) -> ImageFeaturizer:
        """Learn size, channels, mean/std from training images ((N, C, H, W) array or list of (C, H, W))."""
        n = len(images)
        if n == 0:
            raise DataError("ImageFeaturizer.fit: no training images.")
        shapes = np.array([np.shape(images[i]) for i in range(n)]) if isinstance(images, list) else np.tile(np.shape(images)[1:], (n, 1))
        self.channels_ = int(self.channels or (3 if (shapes[:, 0] == 3).any() else 1))
        side = int(np.median(np.sqrt(shapes[:, 1] * shapes[:, 2])))
        self.size_ = int(self.size or min(MAX_SIZE, max(8, side)))
        self.aspect_ = float(np.median(shapes[:, 2] / shapes[:, 1]))
        self.modalities_ = sorted({m for m in (modalities or []) if m})
        self.mean_ = [0.0] * self.channels_
        self.std_ = [1.0] * self.channels_
        if not self.standardize:
            return self
        s1 = np.zeros(self.channels_)
        s2 = np.zeros(self.channels_)
        count = 0
        for start in range(0, n, batch_size):
            x = self._prepare(images[start : start + batch_size]).double()
            s1 += x.sum(dim=(0, 2, 3)).numpy()
            s2 += (x**2).sum(dim=(0, 2, 3)).numpy()
            count += x.shape[0] * x.shape[2] * x.shape[3]
        mean = s1 / count
        std = np.sqrt(np.maximum(s2 / count - mean**2, 0))
        self.mean_ = [float(m) for m in mean]
        self.std_ = [float(s) if s > 1e-6 else 1.0 for s in std]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise NotFittedError("This ImageFeaturizer is not fitted yet; call fit() on the training images first.")

    # ------------------------------------------------------------------ checks
    def check(self, image: np.ndarray, *, modality: str = "", source: str = "image") -> list[str]:
        """Refuse an image that cannot be made to fit the model safely; return notes on what will change."""
        self._check_fitted()
        notes: list[str] = []
        c, h, w = np.shape(image)
        if c not in (1, 3):
            raise DataError(f"{source}: {c} channels; expected 1 (grey) or 3 (RGB).")
        if c == 3 and self.channels_ == 1:
            x = _as_float(image)
            if not (np.allclose(x[0], x[1], atol=1 / 255) and np.allclose(x[0], x[2], atol=1 / 255)):
                raise DataError(f"{source}: a colour (RGB) image, but the model was trained on greyscale images; "
                                "converting colour to grey would change what the model sees. Use a greyscale image.")
            notes.append("RGB image with equal channels read as greyscale.")
        if c == 1 and self.channels_ == 3:
            notes.append("greyscale image replicated to 3 channels.")
        aspect = w / h
        change = max(aspect / self.aspect_, self.aspect_ / aspect)
        if change > MAX_ASPECT_CHANGE:
            raise DataError(f"{source}: aspect ratio {w}×{h} (width×height) is far from the training images' ({self.aspect_:.2f}); "
                            "resizing would distort it. Crop the region of interest first.")
        if (h, w) != (self.size_, self.size_):
            notes.append(f"resized from {h}×{w} to {self.size_}×{self.size_}.")
        if modality and self.modalities_ and modality not in self.modalities_:
            raise DataError(f"{source}: modality {modality}, but the model was trained on {', '.join(self.modalities_)} images.")
        return notes

    # ------------------------------------------------------------------ transforming
    def _prepare(self, images: Any) -> torch.Tensor:
        """Resize and convert channels (no normalisation): float32 (N, C, S, S) in [0, 1]."""
        s = self.size_
        if not isinstance(images, list) and np.ndim(images) == 4 and np.shape(images)[2:] == (s, s):
            x = torch.from_numpy(_as_float(np.asarray(images)))
            return self._channels(x)
        out = torch.empty((len(images), self.channels_, s, s), dtype=torch.float32)
        for i in range(len(images)):
            x = torch.from_numpy(_as_float(images[i]))[None]
            if x.shape[2:] != (s, s):
                x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
            out[i] = self._channels(x)[0]
        return out

    def _channels(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == self.channels_:
            return x
        if x.shape[1] == 1:
            return x.expand(-1, 3, -1, -1).contiguous()
        return x.mean(dim=1, keepdim=True)

    def transform(self, images: Any, *, batch_size: int = 1024) -> torch.Tensor:
        """Model input: float32 (N, C, S, S), normalised with the training mean and std."""
        self._check_fitted()
        mean = torch.tensor(self.mean_).view(1, -1, 1, 1)
        std = torch.tensor(self.std_).view(1, -1, 1, 1)
        parts = [(self._prepare(images[i : i + batch_size]) - mean) / std for i in range(0, len(images), batch_size)]
        return torch.cat(parts) if parts else torch.empty((0, self.channels_, self.size_, self.size_))

    def to_display(self, x: torch.Tensor) -> np.ndarray:
        """Undo normalisation of one model input (C, S, S) → (S, S, C) in [0, 1], for overlays."""
        mean = torch.tensor(self.mean_).view(-1, 1, 1)
        std = torch.tensor(self.std_).view(-1, 1, 1)
        return (x * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()

    # ------------------------------------------------------------------ state
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "name": "image", "params": {"size": self.size, "channels": self.channels, "window": self.window,
                                      "standardize": self.standardize},
            "state": {"size_": self.size_, "channels_": self.channels_, "mean_": self.mean_, "std_": self.std_,
                      "aspect_": self.aspect_, "modalities_": self.modalities_},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageFeaturizer:
        fz = cls(**d["params"])
        for k, v in d["state"].items():
            setattr(fz, k, v)
        return fz

    def input_schema(self) -> dict[str, str]:
        return {"image": f"image {self.channels_}×{self.size_}×{self.size_}"}


@FEATURIZERS.register("volume")
class VolumeFeaturizer:
    """3D volumes (CT, MRI, MedMNIST-3D): one channel, brought to one physical spacing and a cube,
    normalised; state as JSON.

    Fitted on the training split only: the cube side (the training volumes' median, unless given,
    at most 128), the target spacing, and the mean and standard deviation of the training voxels.
    Volumes that carry their spacing (``VoxelArray`` from NIfTI files and DICOM series) are
    resampled to the target spacing (mm along D, H, W: ``spacing`` if given, else the training
    volumes' median, coarsened on an axis where the training volumes' median field of view would
    not fit in the cube), then centre-cropped or zero-padded to the cube, so one voxel means the
    same millimetres in every volume and at prediction. Volumes without a spacing (MedMNIST-3D
    ``.npz``) are resized to the cube instead.

    Example:
        >>> fz = VolumeFeaturizer().fit(train_volumes)        # (N, 1, D, H, W) uint8 or float
        >>> fz.transform(volumes).shape                         # torch.float32 (N, 1, S, S, S)
    """

    spatial_dims = 3

    def __init__(self, *, size: int | None = None, window: str | None = None, standardize: bool = True,
                 spacing: float | None = None) -> None:
        if size is not None:
            check_number(size, name="size", owner="VolumeFeaturizer", low=8, high=256, integer=True)
        if spacing is not None:
            check_number(spacing, name="spacing", owner="VolumeFeaturizer", low=0.01, high=100.0)
        self.size = size
        self.window = window
        self.standardize = standardize
        self.spacing = spacing

    def fit(self, volumes: Any, *, modalities: list[str] | None = None, batch_size: int = 64) -> VolumeFeaturizer:
        from medassist.data.io.volumes import spacing_of

        n = len(volumes)
        if n == 0:
            raise DataError("VolumeFeaturizer.fit: no training volumes.")
        shapes = np.array([np.shape(volumes[i])[1:] for i in range(n)])
        self.channels_ = 1
        self.size_ = int(self.size or min(128, max(8, int(np.median(np.cbrt(shapes.prod(axis=1)))))))
        self.modalities_ = sorted({m for m in (modalities or []) if m})
        spacings = [spacing_of(volumes[i]) for i in range(n)]
        self.spacing_: list[float] | None = None
        if all(s is not None for s in spacings):
            sp = np.array(spacings, dtype=np.float64)
            if self.spacing is not None:
                self.spacing_ = [float(self.spacing)] * 3
            else:
                fov = np.median(shapes * sp, axis=0)  # mm along (D, H, W)
                self.spacing_ = [round(float(v), 4) for v in np.maximum(np.median(sp, axis=0), fov / self.size_)]
        self.mean_, self.std_ = [0.0], [1.0]
        if self.standardize:
            s1 = s2 = count = 0.0
            for start in range(0, n, batch_size):
                x = self._prepare(volumes[start : start + batch_size]).double()
                s1, s2, count = s1 + float(x.sum()), s2 + float((x**2).sum()), count + x.numel()
            mean = s1 / count
            std = max(s2 / count - mean**2, 0.0) ** 0.5
            self.mean_, self.std_ = [mean], [std if std > 1e-6 else 1.0]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise NotFittedError("This VolumeFeaturizer is not fitted yet; call fit() on the training volumes first.")

    def _target(self) -> list[float] | None:
        return getattr(self, "spacing_", None)  # bundles written before spacing was learnt have none

    def check(self, volume: np.ndarray, *, modality: str = "", source: str = "volume") -> list[str]:
        """Refuse a volume that cannot be made to fit; return notes on what will change."""
        from medassist.data.io.volumes import spacing_of

        self._check_fitted()
        shape = np.shape(volume)
        if len(shape) != 4 or shape[0] != 1:
            raise DataError(f"{source}: shape {shape}; expected one grey volume (1, D, H, W).")
        if modality and self.modalities_ and modality not in self.modalities_:
            raise DataError(f"{source}: modality {modality}, but the model was trained on {', '.join(self.modalities_)} volumes.")
        s, target, spacing = self.size_, self._target(), spacing_of(volume)
        grid = "×".join(map(str, shape[1:]))
        if target is not None:
            if spacing is None:
                raise DataError(f"{source}: the volume carries no voxel spacing, but the model was trained on volumes resampled to "
                                f"{_mm(target)} mm; give a NIfTI file or a DICOM series with PixelSpacing.")
            return [f"resampled from {grid} voxels of {_mm(spacing)} mm to {_mm(target)} mm, then cropped/padded to {s}×{s}×{s}."]
        return [] if tuple(shape[1:]) == (s, s, s) else [f"resized from {grid} to {s}×{s}×{s}."]

    def _resample(self, x: torch.Tensor, spacing: tuple[float, float, float], target: list[float]) -> torch.Tensor:
        """(1, 1, D, H, W) at ``spacing`` → the target spacing, centre-cropped/zero-padded to the cube."""
        shape = [max(1, round(n * sp / t)) for n, sp, t in zip(x.shape[2:], spacing, target)]
        if shape != list(x.shape[2:]):
            down = all(m <= n for m, n in zip(shape, x.shape[2:]))
            x = F.interpolate(x, size=tuple(shape), mode="area") if down else F.interpolate(
                x, size=tuple(shape), mode="trilinear", align_corners=False)
        s = self.size_
        out = x.new_zeros((1, 1, s, s, s))
        src, dst = [], []
        for n in x.shape[2:]:
            lo = max(0, (n - s) // 2)  # crop: the centre of the volume
            pad = max(0, (s - n) // 2)  # pad: centred in the cube
            m = min(n, s)
            src.append(slice(lo, lo + m))
            dst.append(slice(pad, pad + m))
        out[:, :, dst[0], dst[1], dst[2]] = x[:, :, src[0], src[1], src[2]]
        return out

    def _prepare(self, volumes: Any) -> torch.Tensor:
        from medassist.data.io.volumes import spacing_of

        s, target = self.size_, self._target()
        out = torch.empty((len(volumes), 1, s, s, s), dtype=torch.float32)
        for i in range(len(volumes)):
            spacing = spacing_of(volumes[i])
            x = torch.from_numpy(np.ascontiguousarray(_as_float(np.asarray(volumes[i]))))[None]
            if target is not None and spacing is not None:
                x = self._resample(x, spacing, target)
            elif tuple(x.shape[2:]) != (s, s, s):
                x = F.interpolate(x, size=(s, s, s), mode="trilinear", align_corners=False)
            out[i] = x[0]
        return out

    def transform(self, volumes: Any, *, batch_size: int = 256) -> torch.Tensor:
        """Model input: float32 (N, 1, S, S, S), normalised with the training mean and std."""
        self._check_fitted()
        parts = [(self._prepare(volumes[i : i + batch_size]) - self.mean_[0]) / self.std_[0] for i in range(0, len(volumes), batch_size)]
        return torch.cat(parts) if parts else torch.empty((0, 1, self.size_, self.size_, self.size_))

    def to_display(self, x: torch.Tensor) -> np.ndarray:
        """Undo normalisation of one model input (1, S, S, S) → (S, S, S) in [0, 1] (slice it for overlays)."""
        return (x[0] * self.std_[0] + self.mean_[0]).clamp(0, 1).numpy()

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {"name": "volume", "params": {"size": self.size, "window": self.window, "standardize": self.standardize,
                                             "spacing": self.spacing},
                "state": {"size_": self.size_, "channels_": self.channels_, "mean_": self.mean_, "std_": self.std_,
                          "modalities_": self.modalities_, "spacing_": self._target()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VolumeFeaturizer:
        fz = cls(**d["params"])
        for k, v in d["state"].items():
            setattr(fz, k, v)
        return fz

    def input_schema(self) -> dict[str, str]:
        s, target = self.size_, self._target()
        where = f" at {_mm(target)} mm (D×H×W), RAS+" if target is not None else ""
        return {"image": f"volume 1×{s}×{s}×{s}{where}"}


def _mm(spacing: Any) -> str:
    return "×".join(f"{float(v):.3g}" for v in spacing)
