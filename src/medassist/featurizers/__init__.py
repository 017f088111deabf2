"""Featurizers, registered by name on import (a bundle rebuilds them from JSON by that name)."""

from medassist.featurizers import images as _images  # noqa: F401  (registers "image")
from medassist.featurizers import molecules as _molecules  # noqa: F401  (registers "molecule", "molgraph", "morgan_counts", "rdkit2d")
from medassist.featurizers import tabular as _tabular  # noqa: F401  (registers "tabular")
from medassist.featurizers.registry import FEATURIZERS

__all__ = ["FEATURIZERS"]
