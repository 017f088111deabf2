"""Architecture changes a model spec can record, so a bundle rebuilds the model it trained.

``spec["conversions"]`` lists names from ``CONVERSIONS``; ``model_from_spec`` applies them in
order after building the registered model. Today: ``batchnorm_to_groupnorm``, applied when a
model with BatchNorm is trained with DP-SGD (BatchNorm mixes samples of a batch, so per-sample
gradients, and with them Opacus' guarantee, are undefined), and ``clone_residual_branch``,
applied with it to MONAI ResNets (their blocks add the shortcut in place onto the last norm
layer's output, which Opacus' backward hooks forbid).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from medassist.options import unknown_name_error

BATCHNORM_TO_GROUPNORM = "batchnorm_to_groupnorm"
CLONE_RESIDUAL_BRANCH = "clone_residual_branch"


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def batchnorm_to_groupnorm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm in ``model`` by GroupNorm (Opacus ``ModuleValidator.fix``: as
    many groups as divide the channels, up to 32), in place; returns ``model``."""
    from opacus.validators import ModuleValidator

    fixed = ModuleValidator.fix(model)  # a converted copy; move its children into ``model``
    for name, child in list(fixed.named_children()):
        setattr(model, name, child)
    return model


class CloneOutput(nn.Module):
    """Returns a copy of its input: an in-place op after it no longer touches the hooked output
    of the layer before (same values, same gradients)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.clone()


def _residual_branch_ends(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(block, name of its last norm layer) for every MONAI ResNet block not yet converted."""
    from monai.networks.nets.resnet import ResNetBlock, ResNetBottleneck

    ends = []
    for m in model.modules():
        last = "bn3" if isinstance(m, ResNetBottleneck) else "bn2" if isinstance(m, ResNetBlock) else None
        if last is not None and not isinstance(getattr(m, last), nn.Sequential):
            ends.append((m, last))
    return ends


def has_inplace_residual(model: nn.Module) -> bool:
    return bool(_residual_branch_ends(model))


def clone_residual_branch(model: nn.Module) -> nn.Module:
    """Follow the last norm layer of every MONAI ResNet block by ``CloneOutput``, in place, so
    the block's ``out += residual`` adds onto a copy; returns ``model``."""
    for block, name in _residual_branch_ends(model):
        setattr(block, name, nn.Sequential(getattr(block, name), CloneOutput()))
    return model


CONVERSIONS: dict[str, Callable[[nn.Module], nn.Module]] = {
    BATCHNORM_TO_GROUPNORM: batchnorm_to_groupnorm, CLONE_RESIDUAL_BRANCH: clone_residual_branch,
}


def apply_conversions(model: nn.Module, names: list[str]) -> nn.Module:
    for name in names:
        if name not in CONVERSIONS:
            raise unknown_name_error(name, sorted(CONVERSIONS), kind="model conversion")
        model = CONVERSIONS[name](model)
    return model
