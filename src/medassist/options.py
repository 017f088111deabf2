"""String options as ``StrEnum`` members, looked up by one helper that suggests the closest name."""

from __future__ import annotations

import difflib
from enum import StrEnum
from typing import TypeVar

from medassist.exceptions import ConfigError

E = TypeVar("E", bound=StrEnum)


def look_up_option(value: str | E, options: type[E], *, name: str = "option") -> E:
    """Return the member of ``options`` named ``value``, or raise with a suggestion.

    Example:
        >>> look_up_option("mpl", ModelName, name="model")
        ConfigError: Unknown model 'mpl'. By 'mpl', did you mean 'mlp'? Valid: mlp, ft.
    """
    if isinstance(value, options):
        return value
    text = str(value).strip().lower()
    for member in options:
        if member.value == text:
            return member
    raise unknown_name_error(value, [m.value for m in options], kind=name)


def unknown_name_error(value: object, valid: list[str], *, kind: str) -> ConfigError:
    """The error for an unknown name, suggesting the closest valid one."""
    close = difflib.get_close_matches(str(value).strip().lower(), valid, n=1)
    hint = f" By '{value}', did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"Unknown {kind} '{value}'.{hint} Valid: {', '.join(valid)}.")


class TaskKind(StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"
    REGRESSION = "regression"
    SURVIVAL = "survival"
    TREATMENT_EFFECT = "treatment_effect"


class ModelSize(StrEnum):
    SMALL = "small"
    BASE = "base"  # image models only: the default there (over a million parameters, fast on a CPU)
    LARGE = "large"


class Split(StrEnum):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"
