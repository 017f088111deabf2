"""Featurizers, registered by name on import (a bundle rebuilds them from JSON by that name)."""

from medassist.featurizers import tabular as _tabular  # noqa: F401  (registers "tabular")
from medassist.featurizers.registry import FEATURIZERS

__all__ = ["FEATURIZERS"]
