"""Model families, registered by name on import."""

from medassist.models import baselines as _baselines  # noqa: F401  (registers logistic)
from medassist.models import ensemble as _ensemble  # noqa: F401  (registers ensemble)
from medassist.models import imaging as _imaging  # noqa: F401  (registers resnet18, resnet50, densenet121)
from medassist.models import molecules as _molecules  # noqa: F401  (registers dmpnn, fpmlp, mol_ensemble)
from medassist.models import tabular as _tabular  # noqa: F401  (registers mlp, ft)
from medassist.models import treatment as _treatment  # noqa: F401  (registers multiarm, effect_mlp, treatment_ensemble)
from medassist.models.ensemble import Ensemble, ensemble_spec
from medassist.models.registry import MODELS, build_model, count_parameters, model_from_spec

__all__ = ["MODELS", "Ensemble", "build_model", "count_parameters", "ensemble_spec", "model_from_spec"]
from medassist.models import survival as _survival  # noqa: E402,F401  (registers survnet, case_autoencoder, case_models)
