"""2D image classifiers from MONAI: ResNet-18/50 and DenseNet-121 (no downloaded weights).

Each takes images (B, C, H, W) with C = 1 or 3 and returns logits (B, K): one per class
(binary and multi-class, softmax) or one per label (multi-label, sigmoid). ``large`` is the
published architecture (over a million parameters, for a GPU); ``base``, the default, is a
compact wide version of the family (one block per stage, narrow early stages where the images
are large and wide late ones where they are small: over a million parameters at a fraction of
the compute, so it trains in minutes on a CPU); ``small`` is a narrow, shallow version for tests. The stem follows the MedMNIST v2 recipe for small images: a 3×3,
stride-1 first convolution without max-pooling when the input is at most 64 pixels wide.

``spatial_dims=3`` builds the same family for volumes (B, C, D, H, W) (MONAI's 3D ResNet and
DenseNet), e.g. for MedMNIST-3D, NIfTI volumes and DICOM series.

Example:
    >>> model, spec = build_model("resnet18", size="large", in_channels=1, n_outputs=2, image_size=28)
    >>> model(torch.zeros(4, 1, 28, 28)).shape
    torch.Size([4, 2])
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from medassist.models.registry import MODELS

SMALL_IMAGE = 64


@runtime_checkable
class HasHead(Protocol):
    """A classifier whose output layer can be reached (its bias is shifted after weighted training)."""

    def head(self) -> nn.Linear: ...


@runtime_checkable
class HasGradCamLayer(Protocol):
    """A classifier that names the layer whose feature maps Grad-CAM weighs."""

    def gradcam_layer(self) -> nn.Module: ...


def _linear(net: nn.Module, name: str) -> nn.Linear:
    layer = net.get_submodule(name)
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"{type(net).__name__}.{name} is a {type(layer).__name__}, not the linear output layer expected.")
    return layer


class _ImageClassifier(nn.Module):
    """Shared interface: ``forward`` gives logits; ``gradcam_layer`` names the last feature maps."""

    net: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def head(self) -> nn.Linear:
        raise NotImplementedError

    def gradcam_layer(self) -> nn.Module:
        raise NotImplementedError


class _MonaiResNet(_ImageClassifier):
    BLOCK = "basic"
    LAYERS: tuple[int, ...] = (2, 2, 2, 2)

    def __init__(self, *, in_channels: int, n_outputs: int, image_size: int, widths: list[int], layers: list[int],
                 spatial_dims: int = 2) -> None:
        super().__init__()
        from monai.networks.nets import ResNet

        small = image_size <= SMALL_IMAGE
        self.net = ResNet(
            block=self.BLOCK, layers=list(layers), block_inplanes=list(widths), spatial_dims=spatial_dims, n_input_channels=in_channels,
            conv1_t_size=3 if small else 7, conv1_t_stride=1 if small else 2, no_max_pool=small, num_classes=n_outputs,
        )

    def head(self) -> nn.Linear:
        return _linear(self.net, "fc")

    def gradcam_layer(self) -> nn.Module:
        return self.net.get_submodule("layer4")


@MODELS.register("resnet18")
class ResNet18(_MonaiResNet):
    """MONAI ResNet-18 (He et al., 2016), 2D. Shapes: (B, C, H, W) → (B, K)."""

    BLOCK = "basic"
    PRESETS = {
        "small": {"widths": [8, 16, 32, 64], "layers": [1, 1, 1, 1]},
        "base": {"widths": [16, 32, 128, 256], "layers": [1, 1, 1, 1]},
        "large": {"widths": [64, 128, 256, 512], "layers": [2, 2, 2, 2]},
    }


@MODELS.register("resnet50")
class ResNet50(_MonaiResNet):
    """MONAI ResNet-50 (bottleneck blocks), 2D. Shapes: (B, C, H, W) → (B, K)."""

    BLOCK = "bottleneck"
    PRESETS = {
        "small": {"widths": [8, 16, 32, 64], "layers": [1, 1, 1, 1]},
        "base": {"widths": [16, 32, 96, 192], "layers": [1, 1, 1, 1]},
        "large": {"widths": [64, 128, 256, 512], "layers": [3, 4, 6, 3]},
    }


@MODELS.register("densenet121")
class DenseNet121(_ImageClassifier):
    """MONAI DenseNet-121 (Huang et al., 2017), 2D. Shapes: (B, C, H, W) → (B, K)."""

    PRESETS = {
        "small": {"init_features": 16, "growth_rate": 8, "block_config": [2, 2]},
        "base": {"init_features": 32, "growth_rate": 24, "block_config": [4, 8, 13]},
        "large": {"init_features": 64, "growth_rate": 32, "block_config": [6, 12, 24, 16]},
    }

    def __init__(self, *, in_channels: int, n_outputs: int, image_size: int, init_features: int, growth_rate: int,
                 block_config: list[int], spatial_dims: int = 2) -> None:
        super().__init__()
        from monai.networks.nets import DenseNet

        self.net = DenseNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=n_outputs, init_features=init_features,
                            growth_rate=growth_rate, block_config=tuple(block_config))
        if image_size <= SMALL_IMAGE:  # keep resolution for small inputs (stride-1 3×3 stem, no pooling)
            conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
            self.net.features.conv0 = conv(in_channels, init_features, kernel_size=3, stride=1, padding=1, bias=False)
            self.net.features.pool0 = nn.Identity()

    def head(self) -> nn.Linear:
        return _linear(self.net, "class_layers.out")

    def gradcam_layer(self) -> nn.Module:
        return self.net.get_submodule("features")
