"""Parameter validation in one place, with messages that say what was expected and what came.

Example:
    >>> check_number(-1, name="lr", owner="TrainConfig", low=0, high=1, low_open=True)
    ConfigError: The 'lr' parameter of TrainConfig must be a number in (0, 1]. Got -1 instead.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from medassist.exceptions import ConfigError


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{left}{lo}, {hi}{right}"


def check_number(
    value: object,
    *,
    name: str,
    owner: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float | int:
    """Check that ``value`` is a (finite) number inside an interval and return it."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, Integral if integer else Real) or (
        not integer and not math.isfinite(float(value))
    ):
        raise ConfigError(
            f"The '{name}' parameter of {owner} must be {kind} in "
            f"{_interval(low, high, low_open, high_open)}. Got {value!r} instead."
        )
    v = float(value)
    too_low = low is not None and (v <= low if low_open else v < low)
    too_high = high is not None and (v >= high if high_open else v > high)
    if too_low or too_high:
        raise ConfigError(
            f"The '{name}' parameter of {owner} must be {kind} in "
            f"{_interval(low, high, low_open, high_open)}. Got {value!r} instead."
        )
    return value  # type: ignore[return-value]  # a Real here: the int or float (numpy too) the caller passed
