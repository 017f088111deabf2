"""Architecture changes a model spec can record, so a bundle rebuilds the model it trained.

``spec["conversions"]`` lists names from ``CONVERSIONS``; ``model_from_spec`` applies them in
order after building the registered model. Today: ``batchnorm_to_groupnorm``, applied when a
model with BatchNorm is trained with DP-SGD (BatchNorm mixes samples of a batch, so per-sample
gradients, and with them Opacus' guarantee, are undefined).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from medassist.options import unknown_name_error

BATCHNORM_TO_GROUPNORM = "batchnorm_to_groupnorm"


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


CONVERSIONS: dict[str, Callable[[nn.Module], nn.Module]] = {BATCHNORM_TO_GROUPNORM: batchnorm_to_groupnorm}


def apply_conversions(model: nn.Module, names: list[str]) -> nn.Module:
    for name in names:
        if name not in CONVERSIONS:
            raise unknown_name_error(name, sorted(CONVERSIONS), kind="model conversion")
        model = CONVERSIONS[name](model)
    return model
