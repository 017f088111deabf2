"""Cases survival: preprocess → build → train → evaluate → bundle, over a case frame.

A case frame has one row per case (index ``case_id``), the primary outcome as ``time`` (days) and
``event`` (1 event, 0 censored), demographics, one numeric column per lab or observation,
categorical covariates as strings, and ``conditions`` / ``medications`` as ';'-joined codes.

Features: the code columns become multi-hot columns (``conditions:I21.4``) over the codes seen in
at least ``min_code_count`` training cases (the ``max_codes`` most frequent per column); then the
tabular featurizer (median imputation with missingness indicators, one-hot, scaling) is fitted on
the training split only. The bundle holds a discrete-time hazard network and a patient
autoencoder over the same features (see ``models/survival.py``), both trained by the shared
Trainer; held-out C-index (Harrell, Uno) and integrated Brier score go in its metrics.

Example:
    >>> out = train_survival_bundle(frame, spec=SurvivalSpec(size="small"), source_name="whas500",
    ...                             out_dir=Path("models/whas"))
    >>> out.metrics["test"]["c_index"]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from torch import nn

from medassist.data.splits import kfold_indices, split_indices
from medassist.evaluation.model_card import ModelCard, default_card_texts
from medassist.evaluation.survival import brier_times, harrell_c, integrated_brier, uno_c
from medassist.exceptions import ConfigError, DataError, SchemaError
from medassist.featurizers.tabular import TabularFeaturizer, infer_column_kind, parse_numeric
from medassist.models import build_model, count_parameters
from medassist.models.sizes import check_size
from medassist.models.survival import (
    CaseModels,
    DiscreteHazardNet,
    baseline_hazard_logits,
    case_models_spec,
    discrete_time_nll,
    discretise,
    interpolate_survival,
    mean_restricted_mean,
    mixture_nll,
    reconstruction_loss,
    survival_at_edges,
    time_grid,
)
from medassist.options import ModelSize
from medassist.pipeline.treatment import FloatTargetDataset
from medassist.registry.bundle import ModelBundle, check_out_dir, load_bundle, save_bundle
from medassist.training import Monitor, TrainConfig, Trainer, TrainResult, seed_everything
from medassist.types import TaskSchema
from medassist.validation import check_number

TASK = "cases-survival"
#: The networks a survival bundle is built from; a size is accepted when each has a preset for it.
NETWORKS = ("survnet", "case_autoencoder")
CODE_COLUMNS = ("conditions", "medications")
CODE_SEP = ";"


def default_survival_config(*, seed: int = 0, epochs: int | None = None) -> TrainConfig:
    return TrainConfig(epochs=epochs or 150, patience=20, lr=1e-3, weight_decay=1e-3, batch_size=64, seed=seed,
                       monitor=Monitor.VAL_LOSS)


def default_encoder_config(*, seed: int = 0, epochs: int | None = None) -> TrainConfig:
    return TrainConfig(epochs=min(epochs or 60, 60), patience=8, lr=2e-3, weight_decay=1e-4, batch_size=256, seed=seed,
                       monitor=Monitor.VAL_LOSS)


@dataclass(frozen=True, kw_only=True)
class SurvivalSpec:
    """How a cases survival model is built and trained.

    Args:
        time, event: outcome columns (follow-up time; 1 event / 0 censored).
        covariates: explicit covariates (default: every other usable column).
        exclude: columns that are never covariates (identifiers, post-outcome fields).
        size: ``small`` or ``large`` (over a million parameters); any size the networks in
            ``NETWORKS`` have no preset for is refused here, naming the accepted ones.
        n_bins: J, time intervals of the hazard network.
        n_members: K cross-fitted hazard networks whose survival curves are averaged (1: one
            network, early stopping on the validation rows).
        linear: give each hazard network a linear path beside its trunk (see ``DiscreteHazardNet``).
        cox_mix: stack a ridge Cox model with the networks, its weight chosen out of fold (see :func:`fit_cox_mix`).
        max_codes, min_code_count: multi-hot vocabulary per code column.
        missing_outcome: ``error`` or ``drop`` (and report) rows without a time or event.
    """

    time: str = "time"
    event: str = "event"
    covariates: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    size: ModelSize = ModelSize.SMALL
    seed: int = 0
    n_bins: int = 24
    n_members: int = 5
    linear: bool = False
    cox_mix: bool = False
    max_codes: int = 64
    min_code_count: int = 2
    test_fraction: float = 0.2
    val_fraction: float = 0.15
    missing_outcome: str = "error"
    train: TrainConfig = field(default_factory=default_survival_config)
    encoder_train: TrainConfig = field(default_factory=default_encoder_config)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", check_size(self.size, task="survival", models=NETWORKS))
        owner = "SurvivalSpec"
        check_number(self.n_bins, name="n_bins", owner=owner, low=2, high=200, integer=True)
        check_number(self.n_members, name="n_members", owner=owner, low=1, high=20, integer=True)
        check_number(self.max_codes, name="max_codes", owner=owner, low=0, high=5000, integer=True)
        check_number(self.min_code_count, name="min_code_count", owner=owner, low=1, integer=True)
        check_number(self.test_fraction, name="test_fraction", owner=owner, low=0, high=0.5, low_open=True)
        check_number(self.val_fraction, name="val_fraction", owner=owner, low=0, high=0.5, low_open=True)
        if self.missing_outcome not in ("error", "drop"):
            raise ConfigError(f"The 'missing_outcome' parameter of SurvivalSpec must be 'error' or 'drop'. Got {self.missing_outcome!r} instead.")


def case_survival_spec(*, n_members: int, size: ModelSize | str = ModelSize.SMALL, seed: int = 0, epochs: int | None = None,
                       train: TrainConfig | None = None, time: str = "time", event: str = "event") -> SurvivalSpec:
    """The one recipe for the survival model fitted on stored cases: ``cases train-survival``, the demo
    and in-process case analysis (rows without an outcome are dropped, as records often lack one)."""
    return SurvivalSpec(time=time, event=event, size=check_size(size, task="survival", models=NETWORKS), seed=seed, missing_outcome="drop",
                        n_members=n_members,
                        train=train or default_survival_config(seed=seed, epochs=epochs),
                        encoder_train=default_encoder_config(seed=seed, epochs=epochs))


# ============================================================================ preprocessing


@dataclass
class Outcome:
    """The usable rows of a case frame and their outcome."""

    frame: pd.DataFrame
    time: np.ndarray
    event: np.ndarray
    notes: list[str]


def outcome_rows(frame: pd.DataFrame, *, time: str, event: str, missing: str = "error", source: str = "case frame") -> Outcome:
    """Check the outcome columns; rows without an outcome raise, or are dropped and reported."""
    absent = [c for c in (time, event) if c not in frame.columns]
    if absent:
        raise SchemaError(f"{source}: outcome column(s) {absent} not found. Columns: {', '.join(map(str, frame.columns))}.")
    t = parse_numeric(frame[time], column=time, source=source).to_numpy()
    ev_raw = frame[event]
    mapped = ev_raw.astype("object").map(_event_value)
    d = pd.to_numeric(mapped, errors="coerce").to_numpy(dtype=float)
    bad = (np.isnan(d) & mapped.notna().to_numpy()) | (~np.isnan(d) & ~np.isin(d, (0.0, 1.0)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: event column '{event}' must be 1 (event) or 0 (censored) (also accepted: true/false, yes/no, "
                        f"dead/alive); case {frame.index[i]!s} has {ev_raw.iloc[i]!r}.")
    neg = ~np.isnan(t) & (t < 0)
    if neg.any():
        raise DataError(f"{source}: time column '{time}' is negative for case {frame.index[int(np.flatnonzero(neg)[0])]!s}; expected days >= 0.")
    present = ~np.isnan(t) & ~np.isnan(d)
    notes = []
    if not present.all():
        n = int((~present).sum())
        if missing == "error":
            raise DataError(f"{source}: {n} case(s) have no '{time}'/'{event}' outcome (first: {frame.index[int(np.flatnonzero(~present)[0])]!s}); "
                            "an outcome is never guessed. Drop them or allow dropping.")
        notes.append(f"{n} case(s) without a recorded outcome were left out.")
    if present.sum() == 0:
        raise DataError(f"{source}: no case has an outcome ('{time}', '{event}').")
    return Outcome(frame=frame.loc[present], time=t[present], event=d[present], notes=notes)


def _event_value(v: Any) -> Any:
    if pd.isna(v):
        return np.nan
    text = str(v).strip().lower()
    return {"true": 1, "false": 0, "yes": 1, "no": 0, "dead": 1, "alive": 0}.get(text, text)


def split_codes(s: pd.Series) -> list[set[str]]:
    """';'-joined code strings → one set of codes per row (empty for missing)."""
    out: list[set[str]] = []
    for v in s.to_numpy():
        if pd.isna(v):
            out.append(set())
        else:
            out.append({c.strip() for c in str(v).split(CODE_SEP) if c.strip()})
    return out


def code_vocabulary(frame: pd.DataFrame, *, max_codes: int, min_count: int) -> dict[str, list[str]]:
    """Per code column present: its most frequent codes (seen in at least ``min_count`` rows)."""
    vocab = {}
    for col in CODE_COLUMNS:
        if col not in frame.columns or max_codes == 0:
            continue
        counts: dict[str, int] = {}
        for codes in split_codes(frame[col]):
            for c in codes:
                counts[c] = counts.get(c, 0) + 1
        kept = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))[:max_codes]
        if kept:
            vocab[col] = sorted(kept)
    return vocab


def expand_codes(frame: pd.DataFrame, vocab: dict[str, list[str]]) -> pd.DataFrame:
    """Multi-hot 0/1 columns ``COLUMN:CODE`` for the vocabulary's codes (absent column → all 0)."""
    blocks = {}
    for col, codes in vocab.items():
        index = {c: j for j, c in enumerate(codes)}
        m = np.zeros((len(frame), len(codes)), dtype=np.float32)
        if col in frame.columns:
            for i, row in enumerate(split_codes(frame[col])):
                for c in row:
                    j = index.get(c)
                    if j is not None:
                        m[i, j] = 1.0
        for j, c in enumerate(codes):
            blocks[f"{col}:{c}"] = m[:, j]
    return pd.DataFrame(blocks, index=frame.index)


def select_covariates(frame: pd.DataFrame, *, spec: SurvivalSpec, source: str = "case frame") -> tuple[list[str], list[str]]:
    """Scalar covariates (not outcome, not code lists) and notes on the columns left out."""
    skip = {spec.time, spec.event, *spec.exclude, *CODE_COLUMNS}
    if spec.covariates is not None:
        missing = [c for c in spec.covariates if c not in frame.columns]
        if missing:
            raise SchemaError(f"{source}: covariate(s) {missing} not found. Columns: {', '.join(map(str, frame.columns))}.")
        return [c for c in spec.covariates if c not in skip], []
    chosen, notes = [], []
    for c in frame.columns:
        if c in skip:
            continue
        s = frame[c]
        if s.isna().all() or s.nunique() <= 1:
            notes.append(f"Column '{c}' is empty or constant and was not used.")
            continue
        if infer_column_kind(s) == "categorical" and s.nunique() > max(50, 0.5 * len(s)):
            notes.append(f"Column '{c}' looks like free text or an identifier ({s.nunique()} distinct values) and was not used.")
            continue
        chosen.append(str(c))
    return chosen, notes


#: A non-negative numeric column more skewed than this (training rows) enters the model as log1p.
SKEW_LOG = 2.0


def skewed_columns(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """Non-negative numeric columns with a long right tail (lab values such as counts or titres)."""
    out = []
    for c in columns:
        if infer_column_kind(frame[c]) != "numeric":
            continue
        x = pd.to_numeric(frame[c], errors="coerce").dropna()
        if len(x) > 10 and x.nunique() > 10 and x.min() >= 0 and float(x.skew()) > SKEW_LOG:
            out.append(c)
    return out


class CaseEncoder:
    """Case frame → feature matrix: multi-hot code columns, log1p of long-tailed labs, then the
    fitted tabular featurizer (which imputes, adds missingness indicators and scales)."""

    def __init__(self, *, featurizer: TabularFeaturizer, covariates: list[str], vocab: dict[str, list[str]],
                 log_columns: list[str] | None = None) -> None:
        self.featurizer, self.covariates, self.vocab = featurizer, covariates, vocab
        self.log_columns = list(log_columns or [])

    @classmethod
    def fit(cls, frame: pd.DataFrame, *, covariates: list[str], max_codes: int, min_count: int) -> CaseEncoder:
        vocab = code_vocabulary(frame, max_codes=max_codes, min_count=min_count)
        enc = cls(featurizer=TabularFeaturizer(), covariates=covariates, vocab=vocab, log_columns=skewed_columns(frame, covariates))
        table = enc._table(frame, source="training split")
        if table.shape[1] == 0:
            raise DataError("The case frame has no usable covariates (no demographics, labs, categories or codes).")
        enc.featurizer.fit(table, source="training split")
        return enc

    def _table(self, frame: pd.DataFrame, *, source: str) -> pd.DataFrame:
        table = frame[self.covariates].copy()
        for c in self.log_columns:
            x = parse_numeric(table[c], column=c, source=source)
            table[c] = np.log1p(x.clip(lower=0))  # a value below 0 (never seen in training) counts as 0
        return pd.concat([table, expand_codes(frame, self.vocab)], axis=1)

    def transform(self, frame: pd.DataFrame, *, source: str = "case frame") -> np.ndarray:
        missing = [c for c in self.covariates if c not in frame.columns]
        if missing:
            raise SchemaError(f"{source}: the model needs column(s) {missing}, which the case frame does not have.")
        return self.featurizer.transform(self._table(frame, source=source), source=source).values

    @property
    def input_columns(self) -> list[str]:
        """The column each feature belongs to (code columns by their own name, e.g. ``conditions:I21``)."""
        return self.featurizer.feature_groups_


# ============================================================================ the model


class SurvivalModel:
    """Encoder + hazard network + autoencoder, and what turns outputs into curves."""

    def __init__(self, *, encoder: CaseEncoder, nets: CaseModels, edges: np.ndarray, info: dict[str, Any]) -> None:
        self.encoder, self.nets, self.info = encoder, nets, info
        self.edges = np.asarray(edges, dtype=float)
        self.nets.eval()

    def features(self, frame: pd.DataFrame, *, source: str = "case frame") -> np.ndarray:
        return self.encoder.transform(frame, source=source)

    @torch.no_grad()
    def _run(self, x: np.ndarray, fn, batch_size: int = 4096) -> np.ndarray:
        self.nets.eval()
        return np.concatenate([fn(torch.as_tensor(x[s : s + batch_size], dtype=torch.float32)).numpy()
                               for s in range(0, len(x), batch_size)]) if len(x) else np.zeros((0,))

    def survival_at_edges(self, x: np.ndarray) -> np.ndarray:
        """S(e_0..e_J | x), the members' mean: (N, J + 1)."""
        return self._run(x, self.nets.survival_at_edges)

    def survival(self, x: np.ndarray, times: np.ndarray) -> np.ndarray:
        """S(t | x) at ``times`` (linear between the grid's edges): (N, T)."""
        return interpolate_survival(self.survival_at_edges(x), self.edges, times)

    def restricted_mean(self, x: np.ndarray) -> np.ndarray:
        """Expected days alive up to the last edge: (N,)."""
        edges = torch.as_tensor(self.edges, dtype=torch.float32)
        return self._run(x, lambda b: mean_restricted_mean(self.nets.survival_at_edges(b), edges))

    def risk(self, x: np.ndarray) -> np.ndarray:
        """Risk score for concordance: minus the restricted mean survival time (N,)."""
        return -self.restricted_mean(x)

    def member_survival(self, x: np.ndarray, times: np.ndarray) -> np.ndarray:
        """S(t | x) of each ensemble member at ``times``: (K, N, T) (their spread is the ensemble's interval)."""
        k = len(self.nets.members)
        edges_s = (self._run(x, lambda b: self.nets.member_survival_at_edges(b).permute(1, 0, 2)) if len(x)
                   else np.zeros((0, k, len(self.edges))))
        return np.stack([interpolate_survival(edges_s[:, j, :], self.edges, times) for j in range(k)])

    def embed(self, x: np.ndarray, *, outcome_aware: bool = False) -> np.ndarray:
        """Patient embeddings (N, d): the autoencoder's bottleneck, or the hazard network's penultimate layer."""
        return self._run(x, lambda b: self.nets.embed(b, outcome_aware=outcome_aware))


@dataclass
class FittedSurvival:
    model: SurvivalModel
    spec_dict: dict[str, Any]
    results: list[TrainResult]
    encoder_result: TrainResult
    notes: list[str]


def fit_survival(
    frame: pd.DataFrame, time: np.ndarray, event: np.ndarray, *, train: np.ndarray, val: np.ndarray, spec: SurvivalSpec,
    covariates: list[str], progress: bool = False, console: Console | None = None,
) -> FittedSurvival:
    """Fit the encoder on the ``train`` and ``val`` rows, then the hazard networks and the autoencoder.

    With ``spec.n_members == 1`` one network trains on ``train`` and stops early on ``val``. With
    K > 1 members, ``train`` and ``val`` are pooled and cut into K folds stratified by event;
    member k trains on the other folds and stops early on fold k (every row trains K - 1
    members), and the curves are the members' mean.
    """
    pool = np.sort(np.concatenate([train, val]))
    enc = CaseEncoder.fit(frame.iloc[pool], covariates=covariates, max_codes=spec.max_codes, min_count=spec.min_code_count)
    x = enc.transform(frame, source="case frame")
    edges = time_grid(time[pool], event[pool], n_bins=spec.n_bins)
    y = discretise(time, event, edges)
    if spec.n_members == 1:
        folds = [(train, val)]
    else:
        folds = [(pool[tr], pool[va]) for tr, va in kfold_indices(event[pool].astype(int), n_splits=spec.n_members, seed=spec.seed)]
    members: list[nn.Module] = []
    results: list[TrainResult] = []
    surv_spec: dict[str, Any] = {}
    for k, (tr, va) in enumerate(folds):
        seed_everything(spec.seed * 100 + k)
        net, surv_spec = build_model("survnet", size=spec.size, n_features=x.shape[1], n_bins=len(edges) - 1,
                                     overrides={"linear": True} if spec.linear else None)
        if not isinstance(net, DiscreteHazardNet):
            raise TypeError(f"Model 'survnet' built a {type(net).__name__}, not a DiscreteHazardNet.")
        with torch.no_grad():  # start from the population's hazards (see baseline_hazard_logits)
            net.head.bias.copy_(torch.as_tensor(baseline_hazard_logits(y[tr], len(edges) - 1), dtype=torch.float32))
        trainer = Trainer(config=TrainConfig.from_dict({**spec.train.to_dict(), "seed": spec.seed * 100 + k}), progress=progress, console=console)
        results.append(trainer.fit(net, train_data=FloatTargetDataset(features=x[tr], targets=y[tr]),
                                   val_data=FloatTargetDataset(features=x[va], targets=y[va]), loss_fn=discrete_time_nll))
        members.append(net)
    cox = fit_cox_mix(x, time, event, y, edges, pool=pool, folds=folds, members=members) if spec.cox_mix else None
    seed_everything(spec.seed + 1)
    ae, ae_spec = build_model("case_autoencoder", size=spec.size, n_features=x.shape[1])
    etrainer = Trainer(config=TrainConfig.from_dict({**spec.encoder_train.to_dict(), "seed": spec.seed}), progress=progress, console=console)
    enc_result = etrainer.fit(ae, train_data=FloatTargetDataset(features=x[train], targets=x[train]),
                              val_data=FloatTargetDataset(features=x[val], targets=x[val]), loss_fn=reconstruction_loss)
    cox_params = None if cox is None else {"n_features": int(x.shape[1]), "n_edges": int(len(edges))}
    spec_dict = case_models_spec(surv_spec, ae_spec, len(members), cox=cox_params)
    nets = CaseModels(survival=surv_spec, encoder=ae_spec, n_members=len(members), cox=cox_params)
    for dst, src in zip(nets.members, members):
        dst.load_state_dict(src.state_dict())
    nets.encoder.load_state_dict(ae.state_dict())
    if cox is not None:
        nets.load_cox(coef=torch.as_tensor(cox["coef"], dtype=torch.float32),
                      base_cumhaz=torch.as_tensor(cox["base_cumhaz"], dtype=torch.float32), mix=float(cox["mix"]))
    info = {"time": spec.time, "event": spec.event, "edges": edges.tolist(), "covariates": covariates, "vocab": enc.vocab,
            "log_columns": enc.log_columns, "size": spec.size, "n_members": len(members)}
    if cox is not None:
        info["cox_mix"] = {"weight": float(cox["mix"]), "ridge_alpha": cox["alpha"], "oof_nll": cox["oof_nll"], "oof_c": cox["oof_c"],
                           "chosen_by": "out-of-fold Harrell C of the mixture (the discrete-time log-likelihood among weights within 0.001 of the best)"}
    model = SurvivalModel(encoder=enc, nets=nets, edges=edges, info=info)
    return FittedSurvival(model=model, spec_dict=spec_dict, results=results, encoder_result=enc_result, notes=[])


#: Mixing weights of the Cox curve tried out of fold.
COX_MIX_GRID = tuple(i / 10 for i in range(11))


def _cox_curves(x_tr: np.ndarray, t_tr: np.ndarray, d_tr: np.ndarray, edges: np.ndarray, *, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge Cox (scikit-survival, Breslow baseline) on the rows given: coefficients (F,) and the
    baseline cumulative hazard at the edges (J + 1,) (0 before the first event)."""
    import warnings

    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; the ridge keeps it finite
        m = CoxPHSurvivalAnalysis(alpha=alpha, ties="breslow").fit(x_tr, Surv.from_arrays(d_tr.astype(bool), t_tr))
    fn = m.cum_baseline_hazard_
    k = np.searchsorted(fn.x, edges, side="right") - 1
    return np.asarray(m.coef_, dtype=float), np.where(k >= 0, fn.y[np.maximum(k, 0)], 0.0)


def _cox_at_edges(x: np.ndarray, coef: np.ndarray, base: np.ndarray) -> np.ndarray:
    return np.exp(-base[None, :] * np.exp(np.clip(x @ coef, -30, 30))[:, None])


def fit_cox_mix(
    x: np.ndarray, time: np.ndarray, event: np.ndarray, y: np.ndarray, edges: np.ndarray, *, pool: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]], members: list[torch.nn.Module],
) -> dict[str, Any]:
    """Stack a ridge Cox model with the networks: on each fold's held-out rows, mix member k's
    curve with a Cox model fitted on member k's training rows, choose the weight w whose mixture
    ranks the held-out rows best (Harrell's C of minus the RMST; the discrete-time likelihood
    breaks near-ties), then refit the Cox model on every pool row. w = 0 keeps the networks alone.

    Not the default: the folds score single members, while the bundle's curve is the members'
    mean, which ranks better than any one of them; so the Cox curve is over-weighted (see
    ``benchmarks/README.md``)."""
    alpha = 0.01 * len(pool)  # ridge strength 0.01 per training row (the partial likelihood is a sum over rows)
    oof_net, oof_cox, oof_rows = [], [], []
    for (tr, va), net in zip(folds, members):
        coef, base = _cox_curves(x[tr], time[tr], event[tr], edges, alpha=0.01 * len(tr))
        net.eval()
        with torch.no_grad():
            oof_net.append(survival_at_edges(net(torch.as_tensor(x[va], dtype=torch.float32))).numpy().astype(float))
        oof_cox.append(_cox_at_edges(x[va], coef, base))
        oof_rows.append(va)
    s_net, s_cox, rows = np.concatenate(oof_net), np.concatenate(oof_cox), np.concatenate(oof_rows)
    e = torch.as_tensor(edges, dtype=torch.float64)
    nll, conc = {}, {}
    for w in COX_MIX_GRID:
        s = (1 - w) * s_net + w * s_cox
        nll[w] = mixture_nll(s, y[rows])
        conc[w] = harrell_c(-mean_restricted_mean(torch.as_tensor(s), e).numpy(), time[rows], event[rows])
    # C first (what the model is judged by), the likelihood breaks near-ties (within 0.001)
    best_c = max(conc.values())
    mix = min((w for w in COX_MIX_GRID if conc[w] >= best_c - 1e-3), key=lambda w: (nll[w], w))
    coef, base = _cox_curves(x[pool], time[pool], event[pool], edges, alpha=alpha)
    return {"coef": coef, "base_cumhaz": base, "mix": mix, "alpha": alpha, "oof_nll": {f"{w:.1f}": v for w, v in nll.items()},
            "oof_c": {f"{w:.1f}": v for w, v in conc.items()}}


def evaluate_survival(
    model: SurvivalModel, x: np.ndarray, time: np.ndarray, event: np.ndarray, *, train_time: np.ndarray, train_event: np.ndarray
) -> dict[str, Any]:
    """Held-out Harrell's and Uno's C-index and the integrated Brier score."""
    risk = model.risk(x)
    times = brier_times(time, event, train_time=train_time)
    out: dict[str, Any] = {"n": int(len(time)), "events": int(event.sum()),
                           "c_index": harrell_c(risk, time, event),
                           "uno_c_index": uno_c(risk, time, event, train_time=train_time, train_event=train_event)}
    out["integrated_brier"] = (integrated_brier(model.survival(x, times), times, time, event, train_time=train_time, train_event=train_event)
                               if len(times) >= 2 else None)
    return out


# ============================================================================ train → bundle


@dataclass
class SurvivalOutcome:
    bundle_dir: Path
    metrics: dict[str, Any]
    notes: list[str]
    n_parameters: int


def split_rows(event: np.ndarray, *, spec: SurvivalSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sp = split_indices(event.astype(int), val_fraction=spec.val_fraction, test_fraction=spec.test_fraction, seed=spec.seed)
    return sp.train, sp.val, sp.test


def train_survival_bundle(
    frame: pd.DataFrame, *, spec: SurvivalSpec, source_name: str, out_dir: Path, overwrite: bool = False,
    progress: bool = True, console: Console | None = None, task: str = TASK, id_column: str | None = None,
    extras: dict[str, Any] | None = None,
) -> SurvivalOutcome:
    """Split (stratified by event, seeded), fit, evaluate on the held-out split, write the bundle.

    ``task`` is recorded in the bundle (``cases-survival`` from the case store, ``survival`` from
    ``medassist train --task survival``); ``extras`` join the survival info in the schema (e.g.
    the horizons predictions report). Hashes (never values) of the training and validation rows
    go in ``training_rows.json``, so evaluation can tell which rows the model saw.
    """
    from medassist.pipeline.tabular import TRAINING_ROWS_FILE, id_hashes, row_hashes

    check_out_dir(out_dir, overwrite=overwrite)
    oc = outcome_rows(frame, time=spec.time, event=spec.event, missing=spec.missing_outcome, source=source_name)
    if oc.event.sum() < 10:
        raise DataError(f"{source_name}: only {int(oc.event.sum())} events; a survival model needs at least 10.")
    covariates, notes = select_covariates(oc.frame, spec=spec, source=source_name)
    notes = oc.notes + notes
    train, val, test = split_rows(oc.event, spec=spec)
    fitted = fit_survival(oc.frame, oc.time, oc.event, train=train, val=val, spec=spec, covariates=covariates,
                          progress=progress, console=console)
    model = fitted.model
    x = model.features(oc.frame)
    metrics = evaluate_survival(model, x[test], oc.time[test], oc.event[test], train_time=oc.time[train], train_event=oc.event[train])
    n_params = count_parameters(model.nets.members[0])
    created = datetime.now(UTC).isoformat(timespec="seconds")
    texts = default_card_texts("survival", spec.time)
    card = ModelCard(
        name=f"survnet-{spec.size} for {spec.time}/{spec.event} ({source_name})", version="1", created=created, task="survival",
        target=spec.time, classes=[], positive_class=None, intended_use=texts["intended_use"], out_of_scope=texts["out_of_scope"],
        data={"source": source_name, "n_rows": int(len(oc.frame)), "n_train": int(len(train)), "n_val": int(len(val)),
              "n_test": int(len(test)), "events": int(oc.event.sum()), "covariates": covariates,
              "codes": {k: len(v) for k, v in model.encoder.vocab.items()}, "split": f"stratified by event, seed {spec.seed}"},
        model={"family": "discrete-time hazard network (logistic hazards over event-time quantiles"
                         + (", with a linear path beside the residual trunk" if spec.linear else "") + ") + patient autoencoder",
               "size": spec.size, "n_parameters_per_member": n_params, "ensemble_members": spec.n_members,
               "n_bins": len(model.edges) - 1},
        training={**spec.train.to_dict(), "best_epochs": [r.best_epoch for r in fitted.results]},
        metrics={"n": metrics["n"], "metrics": {k: {"value": v} for k, v in metrics.items() if k not in ("n", "events") and v is not None}},
        calibration={}, limitations=["Trained on one data set; curves are for cohorts like it.", *notes],
        ethical_considerations=texts["ethical_considerations"],
    )
    model.info.update(extras or {})
    schema = TaskSchema(input_schema=model.encoder.featurizer.input_schema(), output_schema={spec.time: "survival"}, classes=[],
                        extras={"survival": model.info})
    seen = oc.frame.iloc[np.sort(np.concatenate([train, val]))]
    row_columns = [*covariates, spec.time, spec.event]
    training_rows = {
        "what": "SHA-256 (16 hex digits) of the training and validation rows; no values are stored",
        "columns": row_columns, "rows": sorted(set(row_hashes(seen, row_columns))), "id_column": id_column,
        "ids": sorted(set(id_hashes(seen[id_column]))) if id_column and id_column in seen.columns else None,
    }
    bundle = ModelBundle(
        model=model.nets, model_spec=fitted.spec_dict, featurizer=model.encoder.featurizer, schema=schema,
        metrics={"test": metrics}, model_card=card.to_dict(), model_card_markdown=card.to_markdown(), history=fitted.results[0].history,
        train_config={"survival": spec.train.to_dict(), "encoder": spec.encoder_train.to_dict()},
        meta={"created": created, "data_source": source_name, "task": task},
    )
    out = save_bundle(bundle, out_dir, overwrite=overwrite,
                      attachments={"splits.json": json.dumps({"train": train.tolist(), "val": val.tolist(), "test": test.tolist()}).encode(),
                                   TRAINING_ROWS_FILE: json.dumps(training_rows).encode()})
    return SurvivalOutcome(bundle_dir=out, metrics=metrics, notes=notes, n_parameters=n_params)


#: Bundle tasks that hold a :class:`SurvivalModel` (the case store's, and ``train --task survival``'s).
SURVIVAL_TASKS = (TASK, "survival")


def load_survival_model(path: str | Path) -> SurvivalModel:
    """Rebuild a :class:`SurvivalModel` from a ``cases-survival`` or ``survival`` bundle (no pickle)."""
    return survival_model_from_bundle(load_bundle(path), path=path)


def survival_model_from_bundle(bundle: ModelBundle, *, path: str | Path = "bundle") -> SurvivalModel:
    from medassist.exceptions import BundleError

    if bundle.task not in SURVIVAL_TASKS:
        raise BundleError(f"{path}: a '{bundle.task}' bundle; case analysis needs a '{TASK}' bundle (medassist cases train-survival).")
    extras = bundle.schema.extras.get("survival")
    if not isinstance(extras, dict) or not isinstance(bundle.model, CaseModels):
        raise BundleError(f"{path}: not a survival bundle (it lacks the survival description or the case models).")
    info = dict(extras)
    enc = CaseEncoder(featurizer=bundle.featurizer, covariates=list(info["covariates"]), vocab={k: list(v) for k, v in info["vocab"].items()},
                      log_columns=list(info.get("log_columns", [])))
    return SurvivalModel(encoder=enc, nets=bundle.model, edges=np.asarray(info["edges"]), info=info)


# ============================================================================ reference data in the case-frame layout

#: scikit-survival data sets: loader, outcome fields, columns that are not baseline covariates.
SKSURV_SETS = {
    "whas500": ("load_whas500", "fstat", "lenfol", ()),
    "gbsg2": ("load_gbsg2", "cens", "time", ()),
    "veteran": ("load_veterans_lung_cancer", "Status", "Survival_in_days", ()),
    # flchain's 'chapter' is the cause of death: known only for those who died (outcome leakage)
    "flchain": ("load_flchain", "death", "futime", ("chapter",)),
    # ACTG 320 (time to AIDS or death); 'txgrp' restates 'tx' and stays, as it ships
    "aids": ("load_aids", "censor", "time", ()),
    # 198 node-negative patients, 76 genes + clinical covariates; time to distant metastasis
    "breast_cancer": ("load_breast_cancer", "e.tdm", "t.tdm", ()),
}


def sksurv_case_frame(name: str) -> pd.DataFrame:
    """A scikit-survival data set in the case-frame layout (index ``case_id``, ``time``, ``event``,
    categorical covariates as strings); for tests and benchmarks, read from the installed package."""
    from sksurv import datasets

    if name not in SKSURV_SETS:
        raise ConfigError(f"Unknown scikit-survival data set '{name}'. Valid: {', '.join(SKSURV_SETS)}.")
    loader, event_field, time_field, drop = SKSURV_SETS[name]
    x, y = getattr(datasets, loader)()
    df = x.drop(columns=list(drop)).copy()
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(object).where(df[c].notna(), None).map(lambda v: v if v is None else str(v))
    df.insert(0, "event", y[event_field].astype(int))
    df.insert(0, "time", y[time_field].astype(float))
    if name == "whas500":
        df = df.rename(columns={"gender": "sex"})
        df["sex"] = df["sex"].map({"0": "M", "1": "F"})
    df.index = pd.Index([f"{name}-{i + 1}" for i in range(len(df))], name="case_id")
    return df
