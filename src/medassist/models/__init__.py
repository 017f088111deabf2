"""Model families, registered by name on import."""

from medassist.models import ensemble as _ensemble  # noqa: F401  (registers ensemble)
from medassist.models import tabular as _tabular  # noqa: F401  (registers mlp, ft)
from medassist.models.ensemble import Ensemble, ensemble_spec
from medassist.models.registry import MODELS, build_model, count_parameters, model_from_spec

__all__ = ["MODELS", "Ensemble", "build_model", "count_parameters", "ensemble_spec", "model_from_spec"]
