"""Which model sizes a task can build: those every network it builds has a preset for.

``ModelSize`` names every size of every family (``base`` exists for the image models only), so a
task checks the size it is given against its own networks when its options are read, not after
the data are loaded and the first network is built.

Example:
    >>> sizes_of("survnet", "case_autoencoder")
    [<ModelSize.SMALL: 'small'>, <ModelSize.LARGE: 'large'>]
    >>> check_size("base", task="survival", models=("survnet", "case_autoencoder"))
    ConfigError: Model size 'base' is not available for task 'survival'; it accepts: small, large.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, cast

from medassist.exceptions import ConfigError
from medassist.models.registry import MODELS
from medassist.options import ModelSize, look_up_option


class _Presets(Protocol):
    PRESETS: Mapping[str, Mapping[str, Any]]


def sizes_of(*models: str) -> list[ModelSize]:
    """The sizes every one of the registered ``models`` has a preset for, in ``ModelSize`` order."""
    presets = [cast(_Presets, MODELS.get(name)).PRESETS for name in models]  # every registered model declares PRESETS
    return [size for size in ModelSize if all(size.value in p for p in presets)]


def check_size(value: ModelSize | str, *, task: str, models: tuple[str, ...]) -> ModelSize:
    """The ``ModelSize`` named ``value``, refused in one line (naming the accepted sizes) when a
    network of ``task`` has no preset for it."""
    size = look_up_option(value, ModelSize, name="model size")
    accepted = sizes_of(*models)
    if size not in accepted:
        raise ConfigError(f"Model size '{size.value}' is not available for task '{task}'; it accepts: {', '.join(s.value for s in accepted)}.")
    return size


__all__ = ["check_size", "sizes_of"]
