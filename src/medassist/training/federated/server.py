"""The Flower server side: Flower's own FedAvg / FedProx (optionally wrapped in Flower's central
DP wrapper), driven by a ``flwr.server.Server`` that first agrees a plan with the sites.

Round 0 (before any training) asks every site for its summary statistics and hands them to a
``planner`` (the caller's: it merges the featurizer, picks the classes and builds the initial
model); the plan then goes back to every site. The rounds that follow are Flower's. The server
keeps the global weights after each round, each site's validation metrics per round and, after
the last round, each site's held-out aggregates.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from flwr.common import FitRes, GetPropertiesIns, Parameters, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import Server, SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.history import History
from flwr.server.server import EvaluateResultsAndFailures, FitResultsAndFailures
from flwr.server.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg, FedProx, Strategy

from medassist.exceptions import ConfigError, TrainingError
from medassist.options import look_up_option
from medassist.validation import check_number

log = logging.getLogger(__name__)

#: ``planner(summaries) -> (plan, initial weights)``; the plan is plain JSON.
Planner = Callable[[list[dict[str, Any]]], tuple[dict[str, Any], list[np.ndarray]]]


class FedStrategy(StrEnum):
    FEDAVG = "fedavg"
    FEDPROX = "fedprox"


@dataclass(frozen=True, kw_only=True)
class FederationConfig:
    """How the federation trains.

    Args:
        strategy: ``fedavg`` or ``fedprox``.
        mu: FedProx's proximal weight μ (ignored by FedAvg).
        rounds: federated rounds.
        min_clients: sites that must join before round 0; every round uses all of them.
        dp_noise: noise multiplier σ of Flower's central DP wrapper (None: no DP). Each site's
            update is clipped to ``dp_clip`` (L2) and N(0, (σ·clip/n)²) noise is added to the
            uniformly weighted mean of the n updates.
        dp_clip: L2 norm bound of one site's update.
        dp_delta: the δ at which the site-level ε is reported.
        timeout: seconds to wait for sites to join and for any one request (None: forever).
    """

    strategy: FedStrategy = FedStrategy.FEDAVG
    mu: float = 0.01
    rounds: int = 20
    min_clients: int = 2
    dp_noise: float | None = None
    dp_clip: float = 1.0
    dp_delta: float = 1e-5
    timeout: float | None = 600.0

    def __post_init__(self) -> None:
        owner = "FederationConfig"
        object.__setattr__(self, "strategy", look_up_option(self.strategy, FedStrategy, name="federated strategy"))
        check_number(self.mu, name="mu", owner=owner, low=0)
        check_number(self.rounds, name="rounds", owner=owner, low=1, integer=True)
        check_number(self.min_clients, name="min_clients", owner=owner, low=1, integer=True)
        if self.dp_noise is not None:
            check_number(self.dp_noise, name="dp_noise", owner=owner, low=0, low_open=True)
        check_number(self.dp_clip, name="dp_clip", owner=owner, low=0, low_open=True)
        check_number(self.dp_delta, name="dp_delta", owner=owner, low=0, high=1, low_open=True, high_open=True)
        if self.timeout is not None:
            check_number(self.timeout, name="timeout", owner=owner, low=0, low_open=True)

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy.value, "mu": self.mu if self.strategy == FedStrategy.FEDPROX else 0.0,
                "rounds": self.rounds, "min_clients": self.min_clients, "dp_noise": self.dp_noise,
                "dp_clip": self.dp_clip if self.dp_noise is not None else None,
                "dp_delta": self.dp_delta if self.dp_noise is not None else None}


class _UniformWeights(FedAvg):
    """Mixin: average site updates with equal weights. Under DP the noise is calibrated to one
    site's clipped update divided by the number of sites, which holds for the plain mean only.
    (It derives from FedAvg so that ``super()`` is typed; the MRO of the two classes below is unchanged.)"""

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures: list[tuple[ClientProxy, FitRes] | BaseException]) -> tuple[Parameters | None, dict[str, Scalar]]:
        for _, res in results:
            res.num_examples = 1
        return super().aggregate_fit(server_round, results, failures)


class _UniformFedAvg(_UniformWeights, FedAvg):
    pass


class _UniformFedProx(_UniformWeights, FedProx):
    pass


def build_strategy(config: FederationConfig, *, plan: Callable[[], str] = lambda: "") -> Strategy:
    """Flower's FedAvg or FedProx over all ``min_clients`` sites, wrapped for DP when asked.

    Every fit and evaluate request carries the plan (JSON, a few kB for a tabular model): a
    Flower client may be rebuilt for each message (the simulation engine does), so a site must
    not rely on state kept between calls.
    """
    n = config.min_clients
    final = config.rounds

    def fit_config(rnd: int) -> dict[str, Any]:
        return {"server_round": rnd, "plan": plan()}

    def evaluate_config(rnd: int) -> dict[str, Any]:
        return {"server_round": rnd, "final": rnd == final, "plan": plan()}

    common: dict[str, Any] = dict(fraction_fit=1.0, fraction_evaluate=1.0, min_fit_clients=n, min_evaluate_clients=n,
                  min_available_clients=n, on_fit_config_fn=fit_config, on_evaluate_config_fn=evaluate_config,
                  accept_failures=False, fit_metrics_aggregation_fn=_no_metrics, evaluate_metrics_aggregation_fn=_no_metrics)
    dp = config.dp_noise is not None
    if config.strategy == FedStrategy.FEDPROX:
        strategy: Strategy = (_UniformFedProx if dp else FedProx)(proximal_mu=config.mu, **common)
    else:
        strategy = (_UniformFedAvg if dp else FedAvg)(**common)
    if config.dp_noise is not None:
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy, noise_multiplier=config.dp_noise, clipping_norm=config.dp_clip, num_sampled_clients=n)
    return strategy


def _no_metrics(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    return {}  # the server keeps each site's metrics itself (FederatedServer.history)


def site_level_epsilon(*, noise_multiplier: float, rounds: int, delta: float) -> float:
    """ε of R rounds of the Gaussian mechanism with every site taking part (sampling rate 1),
    by Rényi-DP accounting (Opacus' RDP analysis): site-level DP under add/remove-one-site.

    It bounds what the released global models reveal about whether one *site* took part; it
    is not a per-patient guarantee beyond that (a patient is part of one site's update).
    """
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 256))
    rdp = compute_rdp(q=1.0, noise_multiplier=noise_multiplier, steps=rounds, orders=orders)
    eps, _ = get_privacy_spent(orders=orders, rdp=rdp, delta=delta)
    return float(eps)


@dataclass
class FederationResult:
    """What the server learned: the plan, the global weights after every round, per-round
    validation metrics of every site and each site's held-out aggregates after the last round."""

    plan: dict[str, Any] = field(default_factory=dict)
    round_weights: list[list[np.ndarray]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    privacy: dict[str, Any] = field(default_factory=dict)
    seconds: float = math.nan

    @property
    def final_weights(self) -> list[np.ndarray]:
        if not self.round_weights:
            raise TrainingError("The federation finished without a single aggregated round.")
        return self.round_weights[-1]


class FederatedServer(Server):
    """``flwr.server.Server`` with a planning round 0 and a record of every round.

    Args:
        config: the FederationConfig.
        planner: turns the sites' summaries into the plan and the initial weights.
    """

    def __init__(self, *, config: FederationConfig, planner: Planner) -> None:
        self.result = FederationResult()
        self._plan_text = ""
        super().__init__(client_manager=SimpleClientManager(), strategy=build_strategy(config, plan=lambda: self._plan_text))
        self.config = config
        self.planner = planner
        self._initial: list[np.ndarray] | None = None

    def _ask(self, client: Any, config: dict[str, Any]) -> dict[str, Any]:
        res = client.get_properties(GetPropertiesIns(config=config), timeout=self.config.timeout, group_id=None)
        if res.status.code.value != 0:
            raise TrainingError(f"A site could not answer the server's {config['action']!r} request: {res.status.message}")
        return dict(res.properties)

    def fit(self, num_rounds: int, timeout: float | None) -> tuple[History, float]:
        n = self.config.min_clients
        if not self._client_manager.wait_for(n, timeout=int(self.config.timeout or 86400)):
            raise TrainingError(f"Only {self._client_manager.num_available()} of {n} sites joined within {self.config.timeout} s.")
        clients = list(self._client_manager.all().values())
        summaries = [json.loads(self._ask(c, {"action": "summary"})["summary"]) for c in clients]
        names = [s["site"] for s in summaries]
        if len(set(names)) != len(names):
            raise ConfigError(f"Two sites joined under the same name ({', '.join(sorted(names))}); give each site its own --site name.")
        plan, initial = self.planner(summaries)
        self.result.plan, self._initial = plan, initial
        text = self._plan_text = json.dumps(plan)
        for c in clients:
            self._ask(c, {"action": "setup", "plan": text})
        log.info("federation planned with sites %s", ", ".join(names))
        return super().fit(num_rounds, timeout)

    def _get_initial_parameters(self, server_round: int, timeout: float | None) -> Parameters:
        if self._initial is None:
            raise TrainingError("The federation has no initial model (the planning round did not run).")
        return ndarrays_to_parameters(self._initial)

    def fit_round(self, server_round: int,
                  timeout: float | None) -> tuple[Parameters | None, dict[str, Scalar], FitResultsAndFailures] | None:
        res = super().fit_round(server_round, timeout)
        if res is None:
            raise TrainingError(f"Round {server_round}: no site returned an update.")
        params, _, (results, failures) = res
        if failures or params is None:
            raise TrainingError(f"Round {server_round}: {len(failures)} site(s) failed to train ({_failure_text(failures)}).")
        self.result.round_weights.append(parameters_to_ndarrays(params))
        sites: dict[str, dict[str, Any]] = {}
        row = {"round": server_round, "sites": sites}
        for _, fit_res in results:
            m = dict(fit_res.metrics)
            sites[str(m.get("site", "?"))] = {"n_train": fit_res.num_examples, "train_loss": m.get("train_loss")}
        self.result.history.append(row)
        return res

    def evaluate_round(self, server_round: int,
                       timeout: float | None) -> tuple[float | None, dict[str, Scalar], EvaluateResultsAndFailures] | None:
        res = super().evaluate_round(server_round, timeout)
        if res is None:
            return res
        _, _, (results, failures) = res
        if failures:
            raise TrainingError(f"Round {server_round}: {len(failures)} site(s) failed to evaluate ({_failure_text(failures)}).")
        row = self.result.history[-1] if self.result.history and self.result.history[-1]["round"] == server_round else None
        for _, ev in results:
            m = dict(ev.metrics)
            site = str(m.get("site", "?"))
            if row is not None:
                row["sites"].setdefault(site, {}).update({"val_loss": float(ev.loss), "n_val": ev.num_examples,
                                                          "val_auc": _finite(m.get("val_auc"))})
            if "report" in m:
                self.result.reports[site] = json.loads(str(m["report"]))
        return res


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _failure_text(failures: list[Any]) -> str:
    return "; ".join(str(f)[:200] if isinstance(f, BaseException) else "the site sent an error" for f in failures) or "unknown"
