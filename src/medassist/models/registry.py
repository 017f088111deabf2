"""Models by name and size: ``build_model("mlp", size="large", n_features=40, n_outputs=2)``.

A model's spec (name, size, keyword values) is plain JSON; ``model_from_spec`` rebuilds the
module from it, so a bundle never stores a class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, cast

from torch import nn

from medassist.options import ModelSize, look_up_option, unknown_name_error
from medassist.parts import PartRegistry

MODELS: PartRegistry[type[nn.Module]] = PartRegistry("model")


class _Presets(Protocol):
    """What ``build_model`` reads of a registered model class: keyword values per size."""

    PRESETS: Mapping[str, Mapping[str, Any]]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(
    name: str, *, size: str = "small", overrides: dict[str, Any] | None = None, **dims: int
) -> tuple[nn.Module, dict[str, Any]]:
    """Build a registered model from its preset and the data's dimensions.

    Returns:
        The module and its spec ``{"name", "size", "params"}`` (plain JSON values).
    """
    cls = MODELS.get(name)
    size = look_up_option(size, ModelSize, name="model size")
    presets = cast(_Presets, cls).PRESETS  # every registered model class declares PRESETS
    if size.value not in presets:
        raise unknown_name_error(size.value, list(presets), kind=f"size for model '{name}'")
    params = {**presets[size.value], **(overrides or {}), **dims}
    spec = {"name": name.lower(), "size": size.value, "params": params}
    return cls(**params), spec


def model_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its spec, with any recorded ``conversions`` (see conversions.py)."""
    model = MODELS.get(spec["name"])(**spec["params"])
    if spec.get("conversions"):
        from medassist.models.conversions import apply_conversions

        model = apply_conversions(model, list(spec["conversions"]))
    return model
