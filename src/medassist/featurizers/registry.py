"""Featurizers by registered name; a bundle stores the name and the fitted state as JSON.

A featurizer class registered here provides ``to_dict() -> {"name", "params", "state"}`` and
``classmethod from_dict(d)``.
"""

from __future__ import annotations

from medassist.parts import PartRegistry

FEATURIZERS: PartRegistry[type] = PartRegistry("featurizer")
