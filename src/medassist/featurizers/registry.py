"""Featurizers by registered name; a bundle stores the name and the fitted state as JSON.

A featurizer class registered here provides ``to_dict() -> {"name", "params", "state"}`` and
``classmethod from_dict(d)``.
"""

from __future__ import annotations

from typing import Any, Protocol

from medassist.parts import PartRegistry


class FeaturizerClass(Protocol):
    """What the registry holds: a featurizer class, rebuilt by ``from_dict`` from its ``to_dict()``."""

    def from_dict(self, d: dict[str, Any], /) -> Any: ...


FEATURIZERS: PartRegistry[FeaturizerClass] = PartRegistry("featurizer")
