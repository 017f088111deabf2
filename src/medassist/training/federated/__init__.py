"""Federated learning on Flower: sites train our model with the one Trainer; rows never leave a
site. See ``medassist.pipeline.federated`` for the tabular task wired end to end."""

from medassist.training.federated.fedprox import ProximalLoss
from medassist.training.federated.server import (
    FederatedServer,
    FederationConfig,
    FederationResult,
    FedStrategy,
    build_strategy,
    site_level_epsilon,
)
from medassist.training.federated.site import TEMPERATURES, LocalSite, auc_from_histograms
from medassist.training.federated.summaries import merge_summaries, summarise_columns
from medassist.training.federated.weights import get_weights, set_weights

__all__ = [
    "FedStrategy", "FederatedServer", "FederationConfig", "FederationResult", "LocalSite", "ProximalLoss",
    "TEMPERATURES", "auc_from_histograms", "build_strategy", "get_weights", "merge_summaries", "set_weights",
    "site_level_epsilon", "summarise_columns",
]
