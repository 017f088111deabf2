"""Federated tabular diagnosis on Flower: sites → plan → rounds → pooled evaluation → bundle.

Three ways in, one protocol (``medassist.training.federated``):

- ``simulate``: a table split into sites (by a site column, or a seeded stratified split), every
  site a virtual Flower client in Flower's simulation engine (Ray);
- ``serve``: the server process of a real federation (gRPC on an address); it holds no rows;
- ``join``: one site's client process, holding only that site's rows.

The server ends by writing an ordinary medassist bundle (``medassist evaluate/predict`` work on
it) whose model card records the sites, rounds, strategy and any differential privacy.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medassist.data.sources import DataSource
from medassist.evaluation.calibration import TemperatureScaler
from medassist.evaluation.model_card import ModelCard, default_card_texts
from medassist.exceptions import ConfigError, DataError, TrainingError
from medassist.featurizers.tabular import TabularFeaturizer
from medassist.models import build_model, count_parameters, model_from_spec
from medassist.options import ModelSize, look_up_option
from medassist.pipeline.tabular import POSITIVE_NAMES
from medassist.registry.bundle import ModelBundle, check_out_dir, save_bundle
from medassist.training.config import Schedule, TrainConfig
from medassist.training.federated import (
    TEMPERATURES,
    FederatedServer,
    FederationConfig,
    FederationResult,
    LocalSite,
    auc_from_histograms,
    merge_summaries,
    set_weights,
    site_level_epsilon,
)
from medassist.types import TaskSchema
from medassist.validation import check_number

log = logging.getLogger(__name__)

WHAT_MOVES = (
    "Rows never leave a site. Sites send: per-column summary statistics of their training rows "
    "(counts, missing counts, sums, sums of squares and medians of numeric columns; level counts of "
    "categorical columns) and class counts, once; model weights every round; validation loss and AUC "
    "every round; after the last round, sums over their held-out rows (NLL and Brier per candidate "
    "temperature, a 2x2 confusion matrix, logit-margin histograms by class). The server sends the "
    "plan (featurizer state, classes, model spec, local training settings) and the global weights."
)


@dataclass(frozen=True, kw_only=True)
class FederatedSpec:
    """The model and local training of a federation (the sites' side of the plan).

    Args:
        target: outcome column (None on the server: the sites report theirs, and must agree).
        positive_class: the positive class (None: the usual names, else the pooled minority).
        model / size: model family and preset.
        local_epochs: Trainer epochs per site and round.
        batch_size / lr / weight_decay: the local Trainer's AdamW settings (a fresh optimiser
            every round, constant learning rate).
        seed: seeds the initial model, the sites' splits and data order.
    """

    target: str | None = None
    positive_class: str | None = None
    id_column: str | None = None
    model: str = "mlp"
    size: ModelSize = ModelSize.SMALL
    local_epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", look_up_option(self.size, ModelSize, name="model size"))
        owner = "FederatedSpec"
        check_number(self.local_epochs, name="local_epochs", owner=owner, low=1, integer=True)
        check_number(self.batch_size, name="batch_size", owner=owner, low=1, integer=True)
        check_number(self.lr, name="lr", owner=owner, low=0, high=1, low_open=True)
        check_number(self.weight_decay, name="weight_decay", owner=owner, low=0)
        check_number(self.seed, name="seed", owner=owner, low=0, integer=True)

    def local_train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.local_epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                           schedule=Schedule.CONSTANT, warmup_fraction=0.0, patience=self.local_epochs, seed=self.seed)


# --------------------------------------------------------------------------------------------
# Sites


def input_columns(frame: pd.DataFrame, *, target: str, id_column: str | None, site_column: str | None,
                  exclude: tuple[str, ...] = ()) -> list[str]:
    """Every column but the target, the patient ID, the site label and excluded ones."""
    skip = {target, id_column, site_column, *exclude}
    return [c for c in frame.columns if c not in skip]


def split_sites(
    frame: pd.DataFrame, *, target: str, site_column: str | None = None, n_sites: int | None = None, seed: int = 0,
    source: str = "table",
) -> dict[str, pd.DataFrame]:
    """The table's rows by site.

    With ``site_column``: one site per value (``n_sites``: keep the N largest sites). Without:
    a seeded stratified split of the rows into ``n_sites`` sites of equal size and class mix
    (scikit-learn ``StratifiedKFold``, shuffled with ``seed``), named ``site-1`` ... ``site-N``.
    """
    if n_sites is not None:
        check_number(n_sites, name="sites", owner="split_sites", low=2, integer=True)
    if site_column is not None:
        if site_column not in frame.columns:
            raise DataError(f"{source}: site column '{site_column}' not found. The table has: {', '.join(map(str, frame.columns))}.")
        if frame[site_column].isna().any():
            raise DataError(f"{source}: site column '{site_column}' is empty in {int(frame[site_column].isna().sum())} row(s); every row needs a site.")
        sizes = frame[site_column].astype(str).value_counts()
        if len(sizes) < 2:
            raise DataError(f"{source}: site column '{site_column}' has one value; a federation needs at least two sites.")
        if n_sites is not None and n_sites > len(sizes):
            raise ConfigError(f"--sites {n_sites} asks for more sites than '{site_column}' holds ({len(sizes)}: {', '.join(sizes.index)}).")
        keep = sorted(sizes.index[: n_sites or len(sizes)])
        labels = frame[site_column].astype(str)
        return {name: frame[labels == name].reset_index(drop=True) for name in keep}
    if n_sites is None:
        raise ConfigError(f"{source} has no site column: pass --sites N for a seeded stratified split into N sites, or --site-column COLUMN.")
    from sklearn.model_selection import StratifiedKFold

    y = frame[target].astype(str).fillna("__missing__").to_numpy()
    folds = StratifiedKFold(n_splits=n_sites, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    return {f"site-{k + 1}": frame.iloc[np.sort(idx)].reset_index(drop=True) for k, (_, idx) in enumerate(folds)}


# --------------------------------------------------------------------------------------------
# The plan the server makes from the sites' summaries


def plan_federation(summaries: list[dict[str, Any]], *, spec: FederatedSpec) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Merge the sites' summaries into the shared featurizer, classes and initial model."""
    targets = sorted({s["target"] for s in summaries})
    if len(targets) != 1 or (spec.target is not None and targets != [spec.target]):
        raise DataError(f"The sites disagree about the outcome: they report target(s) {targets}" +
                        (f" and the server expects '{spec.target}'." if spec.target else "."))
    columns = summaries[0]["columns"]
    for s in summaries[1:]:
        if set(s["columns"]) != set(columns):
            diff = sorted(set(s["columns"]) ^ set(columns))
            raise DataError(f"Site {s['site']} has different input columns from site {summaries[0]['site']} (differing: {', '.join(diff)}).")
    featurizer, notes = merge_summaries({s["site"]: s["stats"] for s in summaries}, columns=columns)
    counts: dict[str, int] = {}
    for s in summaries:
        for c, k in s["class_counts"].items():
            counts[c] = counts.get(c, 0) + k
    classes = sorted(counts)
    if len(classes) != 2:
        raise ConfigError(f"Federated training supports binary outcomes; '{targets[0]}' has {len(classes)} classes across the sites ({classes}).")
    positive = spec.positive_class
    if positive is not None and positive not in classes:
        raise ConfigError(f"--positive-class '{positive}' is not a class of '{targets[0]}'; its classes are {classes}.")
    if positive is None:
        lowered = {c.lower(): c for c in classes}
        named = [lowered[n] for n in POSITIVE_NAMES if n in lowered]
        positive = named[0] if named else min(classes, key=lambda c: counts[c])
    torch.manual_seed(spec.seed)
    model, model_spec = build_model(spec.model, size=spec.size, n_features=len(featurizer.feature_names_), n_outputs=2)
    plan = {
        "target": targets[0], "classes": classes, "positive_class": positive, "positive_index": classes.index(positive),
        "featurizer": featurizer.to_dict(), "model": model_spec, "train": spec.local_train_config().to_dict(),
        "notes": notes, "sites": {s["site"]: {k: s[k] for k in ("n_rows", "n_train", "n_val", "n_test", "class_counts")} for s in summaries},
    }
    return plan, [v.detach().cpu().numpy().copy() for v in model.state_dict().values()]


def _server(config: FederationConfig, spec: FederatedSpec) -> FederatedServer:
    return FederatedServer(config=config, planner=lambda summaries: plan_federation(summaries, spec=spec))


def quiet_flower(verbose: bool = False) -> None:
    """Flower logs every round at INFO to its own handler; keep it to warnings unless asked,
    and never send telemetry (everything here runs offline)."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    logging.getLogger("flwr").setLevel(logging.INFO if verbose else logging.ERROR)


# --------------------------------------------------------------------------------------------
# Entry points


@dataclass
class FederatedOutcome:
    bundle_dir: Path
    metrics: dict[str, Any]
    result: FederationResult
    notes: list[str] = field(default_factory=list)
    n_parameters: int = 0


def simulate(
    frame: pd.DataFrame, *, source: DataSource, spec: FederatedSpec, config: FederationConfig, out_dir: Path,
    site_column: str | None = None, n_sites: int | None = None, exclude: tuple[str, ...] = (),
    overwrite: bool = False, verbose: bool = False, num_cpus: int | None = None,
) -> FederatedOutcome:
    """Run the federation in Flower's simulation engine (Ray) and write the bundle.

    In a simulation the sites' rows live in one process's memory; the protocol between the
    server and the virtual clients is the same as in a real federation.
    """
    quiet_flower(verbose)
    check_out_dir(out_dir, overwrite=overwrite)
    target = spec.target
    if target is None:
        raise ConfigError(f"{source.name}: which column is the outcome? Pass --target COLUMN.")
    sites = split_sites(frame, target=target, site_column=site_column, n_sites=n_sites, seed=spec.seed, source=source.name)
    columns = input_columns(frame, target=target, id_column=spec.id_column, site_column=site_column, exclude=exclude)
    local = [LocalSite.from_frame(f, name=name, target=target, columns=columns, id_column=spec.id_column, seed=spec.seed,
                                  source=source.name) for name, f in sites.items()]
    config = dataclasses.replace(config, min_clients=len(local))
    result = run_simulation(local, config=config, spec=spec, num_cpus=num_cpus, verbose=verbose)
    return write_bundle(result, spec=spec, config=config, out_dir=out_dir, overwrite=overwrite, source=source,
                        mode="simulation (Flower simulation engine, Ray)")


def run_simulation(
    sites: list[LocalSite], *, config: FederationConfig, spec: FederatedSpec, num_cpus: int | None = None, verbose: bool = False,
) -> FederationResult:
    """Flower's ``run_simulation`` over ``sites`` (one virtual SuperNode each); the result."""
    quiet_flower(verbose)
    from flwr.client import ClientApp
    from flwr.common import Context
    from flwr.compat.server import ServerAppComponents
    from flwr.server import ServerApp, ServerConfig
    from flwr.simulation import run_simulation as flower_run_simulation

    from medassist.training.federated.client import SiteClient

    server = _server(config, spec)
    t0 = time.perf_counter()

    def client_fn(context: Context):  # runs in a Ray worker
        return SiteClient(site=sites[int(context.node_config["partition-id"])]).to_client()

    def server_fn(context: Context) -> ServerAppComponents:
        return ServerAppComponents(server=server, config=ServerConfig(num_rounds=config.rounds, round_timeout=config.timeout))

    cpus = num_cpus or max(1, min(len(sites), os.cpu_count() or 1))
    flower_run_simulation(
        server_app=ServerApp(server_fn=server_fn), client_app=ClientApp(client_fn=client_fn), num_supernodes=len(sites),
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                        "init_args": {"num_cpus": cpus, "include_dashboard": False, "log_to_driver": verbose,
                                      "logging_level": logging.INFO if verbose else logging.ERROR}},
        verbose_logging=verbose,
    )
    server.result.seconds = time.perf_counter() - t0
    if len(server.result.round_weights) != config.rounds or not server.result.reports:
        raise TrainingError(f"The simulated federation stopped after {len(server.result.round_weights)} of {config.rounds} round(s); "
                            "rerun with --verbose to see Flower's log.")
    return server.result


def serve(
    *, address: str, spec: FederatedSpec, config: FederationConfig, out_dir: Path, overwrite: bool = False, verbose: bool = False,
) -> FederatedOutcome:
    """The server of a real federation: wait for ``config.min_clients`` sites on ``address``
    (gRPC, no TLS: for a trusted network or a TLS-terminating tunnel), run the rounds, write
    the bundle. It never holds a row of data."""
    quiet_flower(verbose)
    check_out_dir(out_dir, overwrite=overwrite)
    from flwr.server import ServerConfig, start_server

    server = _server(config, spec)
    t0 = time.perf_counter()
    start_server(server_address=address, server=server, config=ServerConfig(num_rounds=config.rounds, round_timeout=config.timeout))
    server.result.seconds = time.perf_counter() - t0
    if len(server.result.round_weights) != config.rounds or not server.result.reports:
        raise TrainingError(f"The federation stopped after {len(server.result.round_weights)} of {config.rounds} round(s).")
    return write_bundle(server.result, spec=spec, config=config, out_dir=out_dir, overwrite=overwrite, source=None,
                        mode=f"separate processes (Flower gRPC server on {address})")


def join(
    frame: pd.DataFrame, *, source: DataSource, server_address: str, site: str, target: str, site_column: str | None = None,
    id_column: str | None = None, exclude: tuple[str, ...] = (), seed: int = 0, verbose: bool = False,
    max_wait: float = 120.0,
) -> None:
    """Run one site's client until the server finishes. With ``site_column`` the site keeps only
    its own rows (``site_column == site``) before anything else happens."""
    quiet_flower(verbose)
    if site_column is not None:
        if site_column not in frame.columns:
            raise DataError(f"{source.name}: site column '{site_column}' not found. The table has: {', '.join(map(str, frame.columns))}.")
        labels = frame[site_column].astype(str)
        if not (labels == site).any():
            raise DataError(f"{source.name}: no rows with {site_column} = '{site}'; the sites in this table are {', '.join(sorted(labels.dropna().unique()))}.")
        frame = frame[labels == site].reset_index(drop=True)
    columns = input_columns(frame, target=target, id_column=id_column, site_column=site_column, exclude=exclude)
    local = LocalSite.from_frame(frame, name=site, target=target, columns=columns, id_column=id_column, seed=seed, source=source.name)
    from flwr.client import start_client

    from medassist.training.federated.client import SiteClient

    start_client(server_address=server_address, client=SiteClient(site=local).to_client(), insecure=True,
                 max_wait_time=max_wait)


# --------------------------------------------------------------------------------------------
# The bundle, from what the server learned


def pooled_metrics(reports: dict[str, dict[str, Any]], *, classes: list[str], positive_index: int) -> tuple[dict[str, Any], float, dict[str, Any]]:
    """Pooled held-out metrics from the sites' aggregates; returns (metrics, temperature, calibration)."""
    val_nll = np.sum([r["val_nll"] for r in reports.values()], axis=0)
    n_val = sum(r["n_val"] for r in reports.values())
    k = int(np.argmin(val_nll))
    t_star = TEMPERATURES[k]
    one = int(np.argmin(np.abs(np.log(TEMPERATURES))))
    n = sum(r["n_test"] for r in reports.values())
    cm = np.sum([r["test_confusion"] for r in reports.values()], axis=0)
    hist_pos = np.sum([r["test_hist_pos"] for r in reports.values()], axis=0)
    hist_neg = np.sum([r["test_hist_neg"] for r in reports.values()], axis=0)
    pos, neg = positive_index, 1 - positive_index
    tp, fn, fp, tn = cm[pos, pos], cm[pos, neg], cm[neg, pos], cm[neg, neg]

    def ratio(a: float, b: float) -> float | None:
        return float(a / b) if b else None

    sens, prec = ratio(tp, tp + fn), ratio(tp, tp + fp)
    auc = auc_from_histograms(hist_pos, hist_neg)
    values = {
        "auc": None if np.isnan(auc) else auc, "accuracy": ratio(tp + tn, n), "sensitivity": sens,
        "specificity": ratio(tn, tn + fp), "f1": None if not sens or not prec else 2 * sens * prec / (sens + prec),
        "brier": float(np.sum([r["test_brier"][k] for r in reports.values()]) / n), "log_loss": float(np.sum([r["test_nll"][k] for r in reports.values()]) / n),
    }
    metrics = {
        "n": int(n), "task": "binary", "classes": classes, "positive_class": classes[pos], "threshold": 0.5,
        "class_counts": {classes[i]: int(cm[i].sum()) for i in range(2)},
        "metrics": {name: {"value": v, "ci_low": None, "ci_high": None, "n_boot_valid": 0} for name, v in values.items()},
        "confusion_matrix": cm.tolist(), "bootstrap": {"n_boot": 0, "alpha": 0.05, "seed": 0, "method": "none"},
        "pooled_from": "per-site aggregates: AUC from logit-margin histograms (bins 0.05 wide), the rest from sums; no rows left a site",
        "per_site": {s: {"n_test": r["n_test"], "auc": r["test_auc"]} for s, r in sorted(reports.items())},
    }
    calibration = {"method": "temperature", "temperature": t_star, "n_classes": 2, "max_iter": 1,
                   "nll_before": float(val_nll[one] / n_val), "nll_after": float(val_nll[k] / n_val)}
    return metrics, t_star, calibration


def _history(result: FederationResult) -> list[dict[str, Any]]:
    rows = []
    for row in result.history:
        sites = row["sites"].values()
        n_tr = sum(s.get("n_train", 0) for s in sites) or 1
        n_va = sum(s.get("n_val", 0) for s in sites) or 1
        aucs = [s["val_auc"] for s in sites if s.get("val_auc") is not None]
        rows.append({
            "epoch": row["round"], "train_loss": sum(s.get("n_train", 0) * (s.get("train_loss") or 0.0) for s in sites) / n_tr,
            "val_loss": sum(s.get("n_val", 0) * s.get("val_loss", 0.0) for s in sites) / n_va,
            "val_metric": float(np.mean(aucs)) if aucs else None,
        })
    return rows


def write_bundle(
    result: FederationResult, *, spec: FederatedSpec, config: FederationConfig, out_dir: Path, overwrite: bool,
    source: DataSource | None, mode: str,
) -> FederatedOutcome:
    """The final global model as an ordinary medassist bundle, with a federated model card."""
    plan = result.plan
    classes, pos = plan["classes"], plan["positive_index"]
    featurizer = TabularFeaturizer.from_dict(plan["featurizer"])
    model = model_from_spec(plan["model"])
    set_weights(model, result.final_weights)
    model.eval()
    metrics, _, calibration = pooled_metrics(result.reports, classes=classes, positive_index=pos)
    scaler = TemperatureScaler.from_dict(calibration)
    calibration = {"scaler": scaler.to_dict(), "temperature": scaler.temperature_,
                   "fitted_on": f"pooled validation NLL over {len(TEMPERATURES)} candidate temperatures (sites send NLL sums)",
                   "nll_before": calibration["nll_before"], "nll_after": calibration["nll_after"]}
    sites = plan["sites"]
    privacy: dict[str, Any] = {"federated": WHAT_MOVES}
    if config.dp_noise is not None:
        eps = site_level_epsilon(noise_multiplier=config.dp_noise, rounds=config.rounds, delta=config.dp_delta)
        privacy["differential_privacy"] = {
            "mechanism": "Flower DifferentialPrivacyServerSideFixedClipping: each site's update clipped to L2 norm "
                         f"{config.dp_clip}, uniform mean, Gaussian noise with std {config.dp_noise} x {config.dp_clip} / {len(sites)} per round",
            "noise_multiplier": config.dp_noise, "clipping_norm": config.dp_clip, "rounds": config.rounds,
            "epsilon": eps, "delta": config.dp_delta, "unit": "site (add/remove one site); central DP: the server sees unclipped updates",
            "accountant": "Renyi DP (Opacus rdp analysis), sampling rate 1",
        }
    result.privacy = privacy.get("differential_privacy", {})
    n_params = count_parameters(model)
    target = plan["target"]
    schema = TaskSchema(input_schema=featurizer.input_schema(), output_schema={target: "binary"}, classes=classes,
                        positive_class=plan["positive_class"], id_column=spec.id_column)
    texts = default_card_texts(schema.kind, target)
    source_name = source.name if source is not None else "federated sites: " + ", ".join(sorted(sites))
    created = datetime.now(UTC).isoformat(timespec="seconds")
    history = _history(result)
    card = ModelCard(
        name=f"{spec.model}-{spec.size} for {target} (federated, {len(sites)} sites)", version="1", created=created,
        task="binary", target=target, classes=classes, positive_class=plan["positive_class"],
        intended_use=texts["intended_use"], out_of_scope=texts["out_of_scope"],
        data={
            "source": source_name, "provenance": source.provenance if source else "each site's own data",
            "licence": source.licence if source else "per site", "sites": sites,
            "n_train": sum(s["n_train"] for s in sites.values()), "n_val": sum(s["n_val"] for s in sites.values()),
            "n_test": sum(s["n_test"] for s in sites.values()), "features": featurizer.columns_,
            "missing_rate": featurizer.missing_rate_, "id_column": spec.id_column,
            "split": f"each site split its own rows (stratified, seed {spec.seed}) into train/validation/test",
            "featurizer": "fitted from per-site summary statistics of the training rows (exact means and SDs; "
                          "medians approximated by the count-weighted mean of site medians)",
        },
        model={"family": spec.model, "size": spec.size, "n_parameters": n_params, "hyperparameters": plan["model"]["params"]},
        training={
            "federated": True, "framework": f"Flower {_flwr_version()}", "mode": mode, "strategy": config.strategy.value,
            "mu": config.mu if config.strategy.value == "fedprox" else None, "rounds": config.rounds,
            "local_epochs": spec.local_epochs, "local_trainer": plan["train"], "seconds": round(result.seconds, 2),
        },
        metrics=metrics, calibration=calibration,
        limitations=[
            "Pooled test metrics are computed from per-site aggregates, without bootstrap intervals; 'per_site' lists each site's own AUC.",
            "Each site's held-out part comes from the same site and time as its training rows; a new site may differ.",
            *plan["notes"],
            *(["Trained with site-level differential privacy: the guarantee covers a whole site's contribution, "
               "with the ε stated under privacy; it is not a per-patient DP-SGD guarantee."] if config.dp_noise is not None else []),
        ],
        ethical_considerations=texts["ethical_considerations"], privacy=privacy,
    )
    bundle = ModelBundle(
        model=model, model_spec=plan["model"], featurizer=featurizer, schema=schema, calibration=calibration,
        metrics={"test": metrics, "subgroups": []}, model_card=card.to_dict(), model_card_markdown=card.to_markdown(),
        history=history, train_config={"federation": config.to_dict(), "local": plan["train"]},
        meta={"created": created, "data_source": source_name, "task": "diagnosis-tabular", "federated": True},
    )
    out = save_bundle(bundle, out_dir, overwrite=overwrite)
    return FederatedOutcome(bundle_dir=out, metrics=metrics, result=result, notes=plan["notes"], n_parameters=n_params)


def _flwr_version() -> str:
    import flwr

    return getattr(flwr, "__version__", "unknown")
