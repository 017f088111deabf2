"""Model families, registered by name on import."""

from medassist.models import tabular as _tabular  # noqa: F401  (registers mlp, ft)
from medassist.models.registry import MODELS, build_model, count_parameters, model_from_spec

__all__ = ["MODELS", "build_model", "count_parameters", "model_from_spec"]
