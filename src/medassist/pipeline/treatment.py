"""Treatment-effect tasks: preprocess → build → train → evaluate → bundle.

The model is a cross-fitted deep ensemble of K multi-arm outcome networks (shared representation,
one head per arm, a propensity head) followed by a doubly robust second stage:

1. the K members are fitted on K folds of the training rows (member k trains on the other
   folds and stops early on fold k), which gives out-of-fold outcome predictions mu_a(x) and
   propensities e_a(x) (known by design in a randomised trial) for every training row;
2. AIPW (DR-learner) pseudo-outcomes of every arm against the reference are formed from them
   (with inverse probability of censoring weights for a survival outcome, whose effects are on
   the restricted mean survival time up to a horizon);
3. K small correction networks regress the pseudo-outcomes' departure from the plug-in effect
   on the covariates (their output starts at 0, so without signal they leave the plug-in alone).

Member k predicts arm a as mu_a^k(x) (+ correction_a^k(x) for a non-reference arm); the spread of
the K members gives 95% intervals (Student t with K-1 degrees of freedom). 20% of rows are held
out to measure outcome fit, effect calibration, overlap and the policy value of the
recommendations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from scipy import stats
from torch import nn
from torch.utils.data import Dataset

from medassist.data.sources import DataSource
from medassist.data.splits import kfold_indices, split_indices
from medassist.evaluation.causal import (
    blp_calibration, bootstrap, calibration_groups, dr_pseudo_outcomes, interval, ipcw_weights, policy_value,
)
from medassist.evaluation.metrics import compute_roc_auc
from medassist.evaluation.model_card import ModelCard, default_card_texts, input_descriptions
from medassist.exceptions import ConfigError, DataError, SchemaError
from medassist.featurizers.tabular import TabularFeaturizer, infer_column_kind, parse_numeric
from medassist.models import build_model, count_parameters
from medassist.models.treatment import (
    TreatmentEnsemble, multiarm_loss, risk_at_horizon, rmst, split_outputs, treatment_ensemble_spec,
)
from medassist.options import ModelSize, look_up_option
from medassist.data.dictionary import model_title, subject_of
from medassist.pipeline.tabular import frame_fingerprint, prepare_target
from medassist.registry.bundle import ModelBundle, check_out_dir, save_bundle
from medassist.training import Monitor, TrainConfig, Trainer, TrainResult
from medassist.types import Batch, TaskSchema
from medassist.validation import check_number

TASK = "treatment"


class OutcomeKind(StrEnum):
    AUTO = "auto"
    CONTINUOUS = "continuous"
    BINARY = "binary"
    SURVIVAL = "survival"


class Assignment(StrEnum):
    RANDOMISED = "randomised"
    OBSERVATIONAL = "observational"


class Better(StrEnum):
    HIGHER = "higher"
    LOWER = "lower"


def default_train_config(*, seed: int = 0, epochs: int | None = None) -> TrainConfig:
    return TrainConfig(epochs=epochs or 200, patience=30, lr=5e-4, weight_decay=1e-3, batch_size=64, seed=seed,
                       monitor=Monitor.VAL_LOSS)


def default_effect_config(*, seed: int = 0, epochs: int | None = None) -> TrainConfig:
    return TrainConfig(epochs=min(epochs or 100, 100), patience=10, lr=3e-4, weight_decay=1e-2, batch_size=64, seed=seed,
                       monitor=Monitor.VAL_LOSS)


@dataclass(frozen=True, kw_only=True)
class TreatmentSpec:
    """Everything that decides how a treatment-effect model is built and trained.

    Args:
        treatment: column naming each patient's arm.
        outcome: outcome column (continuous or binary outcomes).
        time, event: follow-up time and event indicator (1 event, 0 censored) of a survival outcome.
        outcome_kind: ``auto`` (survival when ``time`` is given; else continuous or binary from the values).
        horizon: survival: RMST and risk are reported up to this time (default: 75th percentile of follow-up).
        reference: the comparator arm (default: the first arm in sorted order).
        better: ``higher`` or ``lower`` outcome is better (default: higher for continuous and RMST,
            lower for a binary outcome, read as the probability of an adverse event).
        assignment: ``randomised`` (``arm_probabilities`` known; default equal) or ``observational``.
        exclude: columns that must not be covariates (identifiers, post-treatment measurements).
        covariates: explicit covariate list (default: every other usable column).
        n_members: K, cross-fitted ensemble members (>= 2: cross-fitting needs two folds).
        dr_correction: fit the doubly robust second stage (otherwise plug-in effects).
        min_per_arm: fewest patients an arm may have.
        missing_outcome: ``error`` or ``drop`` rows whose outcome is missing.
    """

    treatment: str
    outcome: str | None = None
    time: str | None = None
    event: str | None = None
    outcome_kind: str = "auto"
    horizon: float | None = None
    reference: str | None = None
    better: str | None = None
    assignment: str = "observational"
    arm_probabilities: dict[str, float] | None = None
    positive_class: str | None = None
    covariates: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    id_column: str | None = None
    size: ModelSize = ModelSize.SMALL
    seed: int = 0
    n_members: int = 5
    train: TrainConfig = field(default_factory=default_train_config)
    effect_train: TrainConfig = field(default_factory=default_effect_config)
    dr_correction: bool = True
    n_bins: int = 20
    min_per_arm: int = 20
    propensity_clip: float = 0.02
    propensity_weight: float | None = None
    test_fraction: float = 0.2
    missing_outcome: str = "error"
    n_boot: int = 500

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", look_up_option(self.size, ModelSize, name="model size"))
        owner = "TreatmentSpec"
        check_number(self.n_members, name="n_members", owner=owner, low=2, high=20, integer=True)
        check_number(self.n_bins, name="n_bins", owner=owner, low=2, high=200, integer=True)
        check_number(self.min_per_arm, name="min_per_arm", owner=owner, low=5, integer=True)
        check_number(self.propensity_clip, name="propensity_clip", owner=owner, low=0, high=0.2, low_open=True)
        check_number(self.test_fraction, name="test_fraction", owner=owner, low=0, high=0.5, low_open=True)
        check_number(self.n_boot, name="n_boot", owner=owner, low=10, integer=True)
        if self.horizon is not None:
            check_number(self.horizon, name="horizon", owner=owner, low=0, low_open=True)
        object.__setattr__(self, "outcome_kind", look_up_option(self.outcome_kind, OutcomeKind, name="outcome kind").value)
        spelled = "randomised" if str(self.assignment).strip().lower() == "randomized" else self.assignment
        object.__setattr__(self, "assignment", look_up_option(spelled, Assignment, name="assignment").value)
        if self.better is not None:
            object.__setattr__(self, "better", look_up_option(self.better, Better, name="'better' direction").value)
        if self.missing_outcome not in ("error", "drop"):
            raise ConfigError(f"The 'missing_outcome' parameter of TreatmentSpec must be 'error' or 'drop'. Got {self.missing_outcome!r} instead.")
        if (self.time is None) != (self.event is None):
            raise ConfigError("A survival outcome needs both --time and --event (the follow-up time and the 1/0 event indicator).")
        if self.time is None and self.outcome is None:
            raise ConfigError("Which column is the outcome? Pass --outcome COLUMN, or --time COLUMN --event COLUMN for a survival outcome.")


# ============================================================================ preprocessing


def arm_strings(s: pd.Series) -> pd.Series:
    """Arm values as strings; integral floats lose their '.0' (1.0 → '1'); missing stays NaN."""
    present = s.dropna()
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) and len(present):
        if np.all(np.mod(present.to_numpy(dtype=float), 1) == 0):
            return s.map(lambda v: v if pd.isna(v) else str(int(v)))
    return s.map(lambda v: v if pd.isna(v) else str(v).strip())


def _rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    return ", ".join(str(r + 1) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")


@dataclass
class Prepared:
    """The usable rows of a table, encoded: arms, outcome and covariates."""

    data: pd.DataFrame
    arm: np.ndarray
    arms: list[str]
    ref: int
    kind: str
    better: str
    y: np.ndarray
    event: np.ndarray | None
    horizon: float | None
    covariates: list[str]
    classes: list[str] | None
    positive_class: str | None
    arm_probabilities: dict[str, float] | None
    notes: list[str]


def _event_indicator(s: pd.Series, *, column: str, source: str) -> np.ndarray:
    text = s.map(lambda v: v if pd.isna(v) else str(v).strip().lower())
    mapping = {"1": 1.0, "1.0": 1.0, "true": 1.0, "yes": 1.0, "0": 0.0, "0.0": 0.0, "false": 0.0, "no": 0.0}
    bad = text.notna() & ~text.isin(list(mapping))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: event column '{column}' must be 1 (event) or 0 (censored); row {i + 1} has {s.iloc[i]!r}.")
    return text.map(mapping).to_numpy(dtype=float)


def prepare_treatment(frame: pd.DataFrame, *, spec: TreatmentSpec, source: str) -> Prepared:
    """Check and encode a table for treatment-effect estimation. Raises one clear error per problem."""
    notes: list[str] = []
    named = [c for c in (spec.treatment, spec.outcome, spec.time, spec.event, spec.id_column, *spec.exclude, *(spec.covariates or ())) if c]
    missing_cols = [c for c in dict.fromkeys(named) if c not in frame.columns]
    if missing_cols:
        raise SchemaError(f"{source}: column(s) {', '.join(repr(c) for c in missing_cols)} not found. The table has: {', '.join(map(str, frame.columns))}.")
    arms_s = arm_strings(frame[spec.treatment])
    if arms_s.isna().any():
        raise DataError(f"{source}: treatment '{spec.treatment}' is missing in {int(arms_s.isna().sum())} row(s) (rows {_rows(arms_s.isna().to_numpy())}); "
                        "a patient's arm is never guessed. Remove those rows.")
    # ---- outcome
    if spec.time is not None:
        kind = OutcomeKind.SURVIVAL.value if spec.outcome_kind in ("auto", "survival") else spec.outcome_kind
        if kind != "survival":
            raise ConfigError(f"--time/--event describe a survival outcome, but the outcome kind is '{spec.outcome_kind}'.")
        t = parse_numeric(frame[spec.time], column=spec.time, source=source).to_numpy()
        d = _event_indicator(frame[spec.event], column=spec.event, source=source)
        present = ~np.isnan(t) & ~np.isnan(d)
        if np.any(t[present] < 0):
            raise DataError(f"{source}: time column '{spec.time}' has negative values (rows {_rows(present & (np.nan_to_num(t) < 0))}); expected times >= 0.")
        y, event, classes, pos = t, d, None, None
        outcome_name = f"{spec.time}/{spec.event}"
    else:
        col = frame[spec.outcome]
        numeric = infer_column_kind(col) == "numeric"
        n_distinct = col.dropna().nunique()
        kind = spec.outcome_kind
        if kind == "auto":
            kind = "continuous" if numeric and n_distinct > 2 else "binary"
        if kind == "survival":
            raise ConfigError("A survival outcome needs --time and --event columns.")
        outcome_name = spec.outcome
        if kind == "continuous":
            if not numeric:
                raise DataError(f"{source}: outcome '{spec.outcome}' is not numeric; a continuous outcome needs numbers.")
            y = parse_numeric(col, column=spec.outcome, source=source).to_numpy()
            present, classes, pos, event = ~np.isnan(y), None, None, None
        else:
            present = col.notna().to_numpy()
            tgt = prepare_target(frame.loc[present], target=spec.outcome, positive_class=spec.positive_class, missing="error", source=source)
            if len(tgt.classes) != 2:
                raise DataError(f"{source}: outcome '{spec.outcome}' has {len(tgt.classes)} classes; a binary outcome needs exactly 2 "
                                "(pass --outcome-kind continuous for a measurement).")
            y = np.full(len(frame), np.nan)
            y[present] = (tgt.codes == tgt.classes.index(tgt.positive_class)).astype(float)
            classes, pos, event = tgt.classes, tgt.positive_class, None
            notes += tgt.notes
    # ---- arms with no or missing outcomes
    arm_values = arms_s.to_numpy()
    for a in sorted(set(arm_values)):
        in_arm = arm_values == a
        if not present[in_arm].any():
            raise DataError(f"{source}: every outcome ('{outcome_name}') is missing in arm '{a}' of '{spec.treatment}' "
                            f"({int(in_arm.sum())} patients); an arm without outcomes cannot be compared.")
    if not present.all():
        where = _rows(~present)
        if spec.missing_outcome == "error":
            raise DataError(f"{source}: outcome '{outcome_name}' is missing in {int((~present).sum())} row(s) (rows {where}); a missing outcome is "
                            "never filled in. Remove those rows, or pass --drop-missing-target to drop them and record it.")
        notes.append(f"{int((~present).sum())} row(s) with a missing '{outcome_name}' were dropped at the user's request (rows {where}).")
    data = frame.loc[present].reset_index(drop=True)
    arm_values = arm_values[present]
    y = y[present]
    event = event[present] if event is not None else None
    # ---- arms
    counts = pd.Series(arm_values).value_counts()
    arms = sorted(counts.index.tolist(), key=lambda v: (0, float(v)) if _is_number(v) else (1, v))
    if len(arms) < 2:
        raise DataError(f"{source}: treatment '{spec.treatment}' has one arm ('{arms[0]}'); comparing treatments needs at least two.")
    small = [f"'{a}' ({counts[a]})" for a in arms if counts[a] < spec.min_per_arm]
    if small:
        raise DataError(f"{source}: arm(s) {', '.join(small)} of '{spec.treatment}' have fewer than {spec.min_per_arm} patients with an outcome; "
                        "too few to estimate their effect. Merge or remove those arms.")
    if spec.reference is not None:
        ref_s = str(spec.reference).strip()
        if ref_s.endswith(".0") and ref_s[:-2] in arms:
            ref_s = ref_s[:-2]
        if ref_s not in arms:
            raise ConfigError(f"Reference arm '{spec.reference}' is not an arm of '{spec.treatment}'; its arms are {arms}.")
    else:
        ref_s = arms[0]
        notes.append(f"Reference arm '{ref_s}' (the first arm); pass --reference to change it.")
    arm_idx = np.array([arms.index(a) for a in arm_values], dtype=np.int64)
    # ---- randomisation
    probs = None
    if spec.assignment == "randomised":
        probs = {str(k): float(v) for k, v in (spec.arm_probabilities or {a: 1.0 / len(arms) for a in arms}).items()}
        if sorted(probs) != sorted(arms) or abs(sum(probs.values()) - 1) > 1e-6 or min(probs.values()) <= 0:
            raise ConfigError(f"Randomisation probabilities {probs} must name every arm {arms} once, be positive and sum to 1.")
        if spec.arm_probabilities is None:
            notes.append("Randomised with equal probabilities per arm (assumed; pass the design's probabilities if unequal).")
    # ---- horizon
    horizon = None
    if kind == "survival":
        horizon = float(spec.horizon) if spec.horizon is not None else float(np.quantile(y, 0.75))
        if spec.horizon is None:
            notes.append(f"Horizon {horizon:g} (75th percentile of follow-up); RMST and risk are reported up to it (pass --horizon to change).")
        if np.sum(event[y <= horizon]) < 10:
            raise DataError(f"{source}: fewer than 10 events by the horizon {horizon:g}; too few to model the hazard.")
    better = spec.better or ("lower" if kind == "binary" else "higher")
    if spec.better is None:
        what = f"the probability of {spec.outcome} = '{pos}'" if kind == "binary" else ("restricted mean event-free time" if kind == "survival" else f"'{spec.outcome}'")
        notes.append(f"Recommendations assume a {better} {what} is better (pass --better to change it).")
    # ---- covariates
    skip = {spec.treatment, spec.outcome, spec.time, spec.event, spec.id_column, *spec.exclude}
    candidates = list(spec.covariates) if spec.covariates else [c for c in data.columns if c not in skip]
    covariates = []
    for c in candidates:
        s = data[c]
        if s.isna().all():
            notes.append(f"Column '{c}' is empty and was not used.")
            continue
        if s.nunique() <= 1:
            notes.append(f"Column '{c}' is constant and was not used.")
            continue
        if infer_column_kind(s) == "categorical" and s.nunique() > max(50, 0.5 * len(s)):
            notes.append(f"Column '{c}' looks like free text or an identifier ({s.nunique()} distinct values) and was not used.")
            continue
        if infer_column_kind(s) == "numeric":
            parse_numeric(s, column=c, source=source)
        covariates.append(c)
    if not covariates:
        raise DataError(f"{source}: no usable covariates besides the treatment and the outcome.")
    return Prepared(data=data, arm=arm_idx, arms=arms, ref=arms.index(ref_s), kind=kind, better=better, y=y.astype(float),
                    event=event, horizon=horizon, covariates=covariates, classes=classes, positive_class=pos,
                    arm_probabilities=probs, notes=notes)


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


# ============================================================================ datasets


class FloatTargetDataset(Dataset):
    """Rows of a float feature matrix (N, F) with float targets (N, T)."""

    def __init__(self, *, features: np.ndarray, targets: np.ndarray) -> None:
        if len(features) != len(targets):
            raise ValueError(f"features has {len(features)} rows but targets has {len(targets)}.")
        self.features = torch.as_tensor(np.asarray(features, dtype=np.float32))
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.targets)

    def get_batch(self, indices: torch.Tensor) -> Batch:
        return Batch(inputs=self.features[indices], target=self.targets[indices])


def survival_bins(times: np.ndarray, events: np.ndarray, *, horizon: float, n_bins: int) -> np.ndarray:
    """Bin edges 0 = e_0 < ... < e_J = horizon at quantiles of the event times before the horizon."""
    ev = times[(events > 0) & (times < horizon)]
    inner = np.unique(np.quantile(ev, np.linspace(0, 1, n_bins + 1)[1:-1])) if len(ev) else np.array([])
    inner = inner[(inner > 0) & (inner < horizon)]
    return np.concatenate([[0.0], inner, [horizon]])


def bin_targets(times: np.ndarray, events: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bin index, event) per row; follow-up reaching the horizon survives every bin (index J)."""
    horizon, n_bins = edges[-1], len(edges) - 1
    j = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, n_bins - 1)
    beyond = times >= horizon
    return np.where(beyond, n_bins, j).astype(float), np.where(beyond, 0.0, events)


# ============================================================================ the model


class TreatmentModel:
    """Featurizer + ensemble + what is needed to turn outputs into outcomes (from training or a bundle).

    ``info`` holds plain JSON: arms, ref, kind, better, y_mean, y_sd, edges, corr_scale, and more.
    """

    def __init__(self, *, featurizer: TabularFeaturizer, ensemble: TreatmentEnsemble, info: dict[str, Any]) -> None:
        self.featurizer, self.ensemble, self.info = featurizer, ensemble, info
        self.n_arms, self.ref, self.kind = len(info["arms"]), int(info["ref"]), info["kind"]
        self.n_outputs = len(info["edges"]) - 1 if self.kind == "survival" else 1

    def features(self, frame: pd.DataFrame, *, source: str) -> np.ndarray:
        return self.featurizer.transform(frame, source=source).values

    def member_outcomes(self, x: torch.Tensor, *, corrected: bool = True) -> dict[str, torch.Tensor]:
        """Per-member predictions in outcome units: ``pred`` (K, B, A), ``risk`` (survival),
        ``propensity`` (K, B, A) probabilities."""
        raw = self.ensemble(x)
        parts = split_outputs(raw.reshape(-1, raw.shape[-1]), n_arms=self.n_arms, n_outputs=self.n_outputs)
        k, b = raw.shape[0], raw.shape[1]
        arm = parts.arm.reshape(k, b, self.n_arms, self.n_outputs)
        out: dict[str, torch.Tensor] = {"propensity": torch.softmax(parts.propensity.reshape(k, b, self.n_arms), dim=-1)}
        if self.kind == "continuous":
            mu = arm[..., 0] * self.info["y_sd"] + self.info["y_mean"]
        elif self.kind == "binary":
            mu = torch.sigmoid(arm[..., 0])
        else:
            edges = torch.tensor(self.info["edges"], dtype=arm.dtype)
            mu = rmst(arm, edges)
            out["risk"] = risk_at_horizon(arm)
        if corrected:
            corr = self.ensemble.corrections(x)
            if corr is not None:
                cols = list(torch.unbind(corr * self.info["corr_scale"], dim=-1))
                cols.insert(self.ref, torch.zeros_like(cols[0]))
                mu = mu + torch.stack(cols, dim=-1)
                if self.kind == "binary":
                    mu = mu.clamp(0.0, 1.0)
        out["pred"] = mu
        return out

    @torch.no_grad()
    def draws(self, x: np.ndarray, *, corrected: bool = True, batch_size: int = 1024) -> dict[str, np.ndarray]:
        self.ensemble.eval()
        chunks: dict[str, list[np.ndarray]] = {}
        for s in range(0, len(x), batch_size):
            for key, v in self.member_outcomes(torch.as_tensor(x[s : s + batch_size]), corrected=corrected).items():
                chunks.setdefault(key, []).append(v.numpy())
        return {k: np.concatenate(v, axis=1) for k, v in chunks.items()}

    def propensity(self, prop_draws: np.ndarray) -> np.ndarray:
        """(N, A) assignment probabilities: known by design, or the ensemble's estimate, clipped."""
        n = prop_draws.shape[1]
        if self.info["assignment"] == "randomised":
            p = np.array([self.info["arm_probabilities"][a] for a in self.info["arms"]])
            return np.tile(p, (n, 1))
        e = np.clip(prop_draws.mean(axis=0), self.info["propensity_clip"], 1.0)
        return e / e.sum(axis=1, keepdims=True)


def t_multiplier(n_members: int) -> float:
    return float(stats.t.ppf(0.975, df=n_members - 1))


#: The conservative rule's threshold reported beside the shipped rule (``--min-confidence``).
CONSERVATIVE = 0.9
#: Normal 97.5% quantile.
Z95 = float(stats.norm.ppf(0.975))
#: Nearest neighbours (in other folds) whose residuals are averaged by :func:`shared_error_variance`.
CALIBRATION_NEIGHBOURS = 10


def shared_error_variance(x: np.ndarray, resid: np.ndarray, fold: np.ndarray, *, k: int = CALIBRATION_NEIGHBOURS) -> float:
    """Estimate E[b(x)^2], the squared error of one member's fitted mean, from out-of-fold
    residuals r_i = b_k(x_i) + noise_i.

    The noise of two different patients is independent, so r_i times the mean residual of its k
    nearest neighbours in the *same* fold (featurized space; predicted by the same member, which
    trained on neither) has expectation ~E[b(x_i) b(x_j)] ≈ E[b^2] where b varies smoothly; the
    noise cancels. (Neighbours from other folds would not do: their member trained on row i, and
    its fit to i's noise makes the product negative.) It underestimates b^2 where b changes faster
    than the neighbourhood (sharp thresholds).
    """
    n = len(resid)
    if n < 2 * k + 2:
        return 0.0
    prods = np.empty(n)
    for s in range(0, n, 512):
        xi = x[s : s + 512]
        dist = ((xi[:, None, :] - x[None]) ** 2).sum(-1)
        dist[fold[s : s + 512, None] != fold[None]] = np.inf
        dist[np.arange(len(xi)), np.arange(s, s + len(xi))] = np.inf
        nn_idx = np.argpartition(dist, k, axis=1)[:, :k]
        prods[s : s + 512] = resid[s : s + 512] * resid[nn_idx].mean(axis=1)
    return float(np.mean(prods))


def interval_calibration(model: TreatmentModel, prep: Prepared, *, x: np.ndarray, pool: np.ndarray, folds: list,
                         pseudo: np.ndarray, weights: np.ndarray | None) -> dict[str, Any]:
    """Scale factors for the ensemble spread, fitted on cross-fitted (out-of-fold) training rows.

    Member spread alone misses the error the members share (all smooth over the same threshold),
    which is why t·sd intervals covered the true expected outcome for only 71-92% of patients.
    For per-arm outcomes the shared error variance b^2 is estimated from out-of-fold outcome
    residuals (IPCW-weighted for survival), for effects from the out-of-fold residuals of the DR
    pseudo-outcomes, by :func:`shared_error_variance`; the interval is then
    mean ± t(0.975, K-1) · c · sd (t because sd comes from K members) with c^2 = (b^2 - (1 - 1/K) mean(sd^2)) / mean(sd^2) (the squared error of
    the ensemble mean over the members' variance), never below 1.
    """
    fold = np.zeros(len(x), dtype=int)
    for k, (_, va) in enumerate(folds):
        fold[va] = k
    d = model.draws(x[pool])
    member = fold[pool]
    pred_oof = d["pred"][member, np.arange(len(pool))]  # (P, A): each row by the member that never saw it
    ref = prep.ref
    y = restricted_outcome(prep)[pool]
    arm = prep.arm[pool]
    own = pred_oof[np.arange(len(pool)), arm]
    w = np.ones(len(pool)) if weights is None else weights[pool]
    keep = w > 0
    xp = x[pool]
    sd_arm = d["pred"].std(axis=0, ddof=1)
    b2_arm = 0.0
    for a in range(len(prep.arms)):
        rows = np.flatnonzero((arm == a) & keep)
        b2_arm += shared_error_variance(xp[rows], (w * (y - own))[rows], member[rows]) * len(rows)
    b2_arm /= max(int(keep.sum()), 1)
    diff = np.delete(d["pred"] - d["pred"][:, :, [ref]], ref, axis=2)
    sd_eff = diff.std(axis=0, ddof=1)
    tau_oof = np.delete(pred_oof - pred_oof[:, [ref]], ref, axis=1)
    res_eff = pseudo[pool] - tau_oof
    b2_eff = float(np.mean([shared_error_variance(xp, res_eff[:, c], member) for c in range(res_eff.shape[1])]))
    v_arm, v_eff = float(np.mean(sd_arm ** 2)), float(np.mean(sd_eff ** 2))
    shrink = 1.0 - 1.0 / len(folds)  # a member's own scatter around the ensemble mean averages out over K members
    c_arm = float(np.sqrt(max(1.0, (b2_arm - shrink * v_arm) / max(v_arm, 1e-12))))
    c_eff = float(np.sqrt(max(1.0, (b2_eff - shrink * v_eff) / max(v_eff, 1e-12))))
    return {"arm": c_arm, "effect": c_eff, "z": t_multiplier(len(folds)), "shared_error_var_arm": b2_arm, "shared_error_var_effect": b2_eff,
            "mean_member_var_arm": v_arm, "mean_member_var_effect": v_eff, "neighbours": CALIBRATION_NEIGHBOURS,
            "method": "mean ± t(0.975, K-1)·c·sd over K members (t: sd is estimated from K members); c² = max(1, (b² - (1 - 1/K)·mean(sd²)) / mean(sd²)), b² = squared error "
                      "of one member, estimated on out-of-fold training rows as the mean product of each row's residual with "
                      "the residuals of its nearest neighbours in the same fold (outcome residuals per arm; DR pseudo-outcome "
                      "residuals per effect)"}


def interval_multipliers(info: dict[str, Any]) -> tuple[float, float]:
    """Half-width per unit of member sd, (per-arm, per-effect); an uncalibrated bundle keeps t(0.975, K-1)."""
    cal = info.get("interval_scale")
    if not cal:
        t = t_multiplier(int(info.get("n_members", 5)))
        return t, t
    return float(cal["z"]) * float(cal["arm"]), float(cal["z"]) * float(cal["effect"])


def summarise(d: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and mean ± t·sd over members (axis 0)."""
    mean, sd = d.mean(axis=0), d.std(axis=0, ddof=1)
    return mean, mean - t * sd, mean + t * sd


class _ContrastModule(nn.Module):
    """x (B, F) → (B, 1): the ensemble's mean effect of arm ``a`` over the reference (for attributions)."""

    def __init__(self, model: TreatmentModel, arm: int) -> None:
        super().__init__()
        self.model, self.arm, self.inner = model, arm, model.ensemble

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pred = self.model.member_outcomes(x)["pred"].mean(dim=0)
        return (pred[:, self.arm] - pred[:, self.model.ref]).unsqueeze(1)


def contrast_module(model: TreatmentModel, arm: int) -> nn.Module:
    return _ContrastModule(model, arm)


# ============================================================================ fitting


@dataclass
class Fitted:
    model: TreatmentModel
    spec_dicts: dict[str, Any]
    results: list[TrainResult]
    effect_results: list[TrainResult]
    oof: dict[str, np.ndarray]
    pool: np.ndarray
    weights: np.ndarray | None


def _outcome_targets(prep: Prepared, rows: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    y = prep.y[rows]
    if prep.kind == "continuous":
        return np.column_stack([prep.arm[rows], (y - info["y_mean"]) / info["y_sd"], np.zeros(len(rows))])
    if prep.kind == "binary":
        return np.column_stack([prep.arm[rows], y, np.zeros(len(rows))])
    j, ev = bin_targets(y, prep.event[rows], np.asarray(info["edges"]))
    return np.column_stack([prep.arm[rows], j, ev])


def restricted_outcome(prep: Prepared) -> np.ndarray:
    """The outcome the effects are about: y (continuous/binary) or min(T, horizon) (survival)."""
    return np.minimum(prep.y, prep.horizon) if prep.kind == "survival" else prep.y


def fit_treatment(
    prep: Prepared, *, pool: np.ndarray, spec: TreatmentSpec, progress: bool = False, console: Console | None = None,
    groups: np.ndarray | None = None,
) -> Fitted:
    """Fit featurizer (pool rows only), K cross-fitted outcome networks and K DR corrections."""
    featurizer = TabularFeaturizer().fit(prep.data.iloc[pool][prep.covariates], source="training split")
    x = featurizer.transform(prep.data, source="training split").values
    info: dict[str, Any] = {
        "arms": prep.arms, "ref": prep.ref, "kind": prep.kind, "better": prep.better, "assignment": spec.assignment,
        "arm_probabilities": prep.arm_probabilities, "propensity_clip": spec.propensity_clip, "horizon": prep.horizon,
        "edges": [0.0, 1.0], "y_mean": 0.0, "y_sd": 1.0, "corr_scale": 1.0,
    }
    if prep.kind == "continuous":
        info["y_mean"], info["y_sd"] = float(prep.y[pool].mean()), float(prep.y[pool].std() or 1.0)
        info["corr_scale"] = info["y_sd"]
    elif prep.kind == "survival":
        info["edges"] = survival_bins(prep.y[pool], prep.event[pool], horizon=prep.horizon, n_bins=spec.n_bins).tolist()
        info["corr_scale"] = prep.horizon
    n_arms = len(prep.arms)
    n_out = len(info["edges"]) - 1 if prep.kind == "survival" else 1
    pw = spec.propensity_weight if spec.propensity_weight is not None else (0.1 if spec.assignment == "randomised" else 1.0)

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return multiarm_loss(out, target, n_arms=n_arms, n_outputs=n_out, kind=prep.kind, propensity_weight=pw)

    folds = [(pool[tr], pool[va]) for tr, va in kfold_indices(prep.arm[pool], n_splits=spec.n_members,
                                                              groups=None if groups is None else groups[pool], seed=spec.seed)]
    members, results, member_spec = [], [], None
    oof_raw = np.zeros((len(prep.data), n_arms * n_out + n_arms), dtype=np.float32)
    for k, (tr, va) in enumerate(folds):
        torch.manual_seed(spec.seed + k)
        net, member_spec = build_model("multiarm", size=spec.size, n_features=x.shape[1], n_arms=n_arms, n_outputs=n_out)
        cfg = TrainConfig.from_dict({**spec.train.to_dict(), "seed": spec.seed + k})
        trainer = Trainer(config=cfg, progress=progress, console=console)
        res = trainer.fit(net, train_data=FloatTargetDataset(features=x[tr], targets=_outcome_targets(prep, tr, info)),
                          val_data=FloatTargetDataset(features=x[va], targets=_outcome_targets(prep, va, info)), loss_fn=loss_fn)
        with torch.no_grad():
            net.eval()
            oof_raw[va] = net(torch.as_tensor(x[va])).numpy()
        members.append(net)
        results.append(res)
    ens = TreatmentEnsemble(member=member_spec, effect=None, n_members=spec.n_members)
    for dst, src in zip(ens.members, members):
        dst.load_state_dict(src.state_dict())
    model = TreatmentModel(featurizer=featurizer, ensemble=ens, info=info)
    # out-of-fold nuisances: each pool row predicted by the member that did not train on it
    oof_draws = model.draws(x, corrected=False)
    mu_oof = np.zeros((len(x), n_arms))
    prop_oof = np.zeros((len(x), n_arms))
    for k, (_, va) in enumerate(folds):
        mu_oof[va] = oof_draws["pred"][k, va]
        prop_oof[va] = oof_draws["propensity"][k, va]
    e_oof = model.propensity(prop_oof[None])
    y_r = restricted_outcome(prep)
    weights = None
    if prep.kind == "survival":
        weights, _ = ipcw_weights(prep.y[pool], prep.event[pool], prep.horizon, groups=prep.arm[pool])
        w_full = np.zeros(len(x))
        w_full[pool] = weights
        weights = w_full
    pseudo = np.full((len(x), n_arms - 1), np.nan)
    pseudo[pool] = dr_pseudo_outcomes(y_r[pool], prep.arm[pool], mu_oof[pool], e_oof[pool], ref=prep.ref,
                                      weights=None if weights is None else weights[pool])
    plugin = np.delete(mu_oof - mu_oof[:, [prep.ref]], prep.ref, axis=1)
    effect_results: list[TrainResult] = []
    effect_spec = None
    if spec.dr_correction:
        resid = (pseudo - plugin) / info["corr_scale"]
        effects = []
        for k, (tr, va) in enumerate(folds):
            torch.manual_seed(10_000 + spec.seed + k)
            enet, effect_spec = build_model("effect_mlp", size=spec.size, n_features=x.shape[1], n_contrasts=n_arms - 1)
            with torch.no_grad():  # start at the DR average effect: the plug-in shifted by the mean residual
                enet.net[-1].bias.copy_(torch.as_tensor(resid[tr].mean(axis=0), dtype=torch.float32))
            cfg = TrainConfig.from_dict({**spec.effect_train.to_dict(), "seed": spec.seed + k})
            res = Trainer(config=cfg, progress=progress, console=console).fit(
                enet, train_data=FloatTargetDataset(features=x[tr], targets=resid[tr]),
                val_data=FloatTargetDataset(features=x[va], targets=resid[va]), loss_fn=nn.functional.mse_loss)
            effects.append(enet)
            effect_results.append(res)
        full = TreatmentEnsemble(member=member_spec, effect=effect_spec, n_members=spec.n_members)
        full.members.load_state_dict(ens.members.state_dict())
        for dst, src in zip(full.effects, effects):
            dst.load_state_dict(src.state_dict())
        ens = full
        model = TreatmentModel(featurizer=featurizer, ensemble=ens, info=info)
    ens.eval()
    spec_dict = treatment_ensemble_spec(member_spec, effect_spec, spec.n_members)
    info["interval_scale"] = interval_calibration(model, prep, x=x, pool=pool, folds=folds, pseudo=pseudo, weights=weights)
    oof = {"mu": mu_oof, "propensity": e_oof, "propensity_raw": prop_oof, "pseudo": pseudo, "plugin": plugin}
    return Fitted(model=model, spec_dicts=spec_dict, results=results, effect_results=effect_results, oof=oof, pool=pool, weights=weights)


# ============================================================================ evaluation


def _best(values: np.ndarray, better: str) -> int:
    return int(np.argmax(values) if better == "higher" else np.argmin(values))


def best_predicted(pred: np.ndarray, better: str) -> np.ndarray:
    """Arm with the best mean prediction per row, (N, A) → (N,)."""
    return pred.argmax(axis=1) if better == "higher" else pred.argmin(axis=1)


@dataclass
class Ranking:
    """Arms ranked per patient by expected outcome, with how sure the ensemble is of the order.

    ``order`` (N, A) arm indices best first; ``recommended`` (N,) the arm advised (the top arm,
    or the default arm where ``min_confidence`` is not met); ``p_best`` (N, A) probability that
    each arm is the best (rows sum to 1); ``p_vs_reference`` / ``p_vs_runner_up`` (N,) probability
    that the top arm is truly better than the reference (NaN when the top arm is the reference) /
    than the second-ranked arm; ``fallback`` (N,) where the conservative rule kept the default arm.
    """

    order: np.ndarray
    recommended: np.ndarray
    p_best: np.ndarray
    p_vs_reference: np.ndarray
    p_vs_runner_up: np.ndarray
    p_vs_default: np.ndarray
    fallback: np.ndarray


def rank_arms(pred_draws: np.ndarray, better: str, *, ref: int, default_arm: int, effect_scale: float,
              min_confidence: float | None = None, n_samples: int = 400, seed: int = 0) -> Ranking:
    """Rank arms by the ensemble mean (in the direction of ``better``) and say how sure that is.

    The calibrated posterior of a patient's A expected outcomes is taken as Gaussian with the
    ensemble mean and the member covariance inflated by ``effect_scale`` (the effect-interval
    factor c of :func:`interval_calibration`): P(best) by Monte Carlo, P(top better than an arm)
    as Phi(mean difference / (c · sd of the member differences)).

    Args:
        pred_draws: (K, N, A) member predictions.
        min_confidence: the conservative rule: keep ``default_arm`` (best on average in the trial)
            unless P(top arm better than it) >= this; None recommends the top arm.
    """
    k, n, a = pred_draws.shape
    sign = 1.0 if better == "higher" else -1.0
    s = sign * pred_draws
    mean = s.mean(axis=0)
    order = np.argsort(-mean, axis=1, kind="stable")
    top, second = order[:, 0], order[:, 1]
    rows = np.arange(n)

    def p_better(other: np.ndarray) -> np.ndarray:
        diff = s[:, rows, top] - s[:, rows, other]
        sd = diff.std(axis=0, ddof=1) * effect_scale
        m = diff.mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = stats.norm.cdf(m / sd)
        return np.where(sd > 0, p, np.where(m > 0, 1.0, 0.5))

    rng = np.random.default_rng(seed)
    dev = (s - mean) * effect_scale / np.sqrt(max(k - 1, 1))
    wins = np.zeros((n, a))
    for c in range(0, n_samples, 100):
        z = rng.normal(size=(min(100, n_samples - c), k)).astype(np.float32)
        sample = mean[None] + np.einsum("sk,kna->sna", z, dev.astype(np.float32))
        best = sample.argmax(axis=2)
        wins += (best[..., None] == np.arange(a)).sum(axis=0)
    p_best = wins / wins.sum(axis=1, keepdims=True)
    p_ref = np.where(top == ref, np.nan, p_better(np.full(n, ref)))
    p_default = np.where(top == default_arm, np.nan, p_better(np.full(n, default_arm)))
    fallback = np.zeros(n, dtype=bool)
    if min_confidence is not None:
        fallback = (top != default_arm) & ~(np.nan_to_num(p_default, nan=0.0) >= min_confidence)
    rec = np.where(fallback, default_arm, top)
    return Ranking(order=order, recommended=rec, p_best=p_best, p_vs_reference=p_ref, p_vs_runner_up=p_better(second),
                   p_vs_default=p_default, fallback=fallback)


def recommend(pred_draws: np.ndarray, better: str, *, ref: int, default_arm: int, effect_scale: float,
              min_confidence: float | None = None) -> np.ndarray:
    """Recommended arm per row (N,): the top-ranked arm, or with ``min_confidence`` the
    conservative rule of :func:`rank_arms`."""
    return rank_arms(pred_draws, better, ref=ref, default_arm=default_arm, effect_scale=effect_scale,
                     min_confidence=min_confidence, n_samples=100).recommended


def harrell_c(risk_score: np.ndarray, times: np.ndarray, events: np.ndarray) -> float:
    """Harrell's concordance: a higher score should go with an earlier event."""
    t, d, s = times[:, None], events[:, None] > 0, risk_score[:, None]
    comparable = d & (t < times[None, :])
    conc = (s > risk_score[None, :]) & comparable
    ties = (s == risk_score[None, :]) & comparable
    n = comparable.sum()
    return float((conc.sum() + 0.5 * ties.sum()) / n) if n else float("nan")


def overlap_report(prop: np.ndarray, arm: np.ndarray, arms: list[str], *, clip: float, assignment: str,
                   known: dict[str, float] | None) -> dict[str, Any]:
    """Propensity distribution per arm, share of rows below the clip, effective sample size."""
    out: dict[str, Any] = {"assignment": assignment, "clip": clip, "arms": {}}
    for a, name in enumerate(arms):
        e = prop[:, a]
        w = 1.0 / np.clip(e[arm == a], clip, 1)
        row = {"n": int((arm == a).sum()), "min": float(e.min()), "p01": float(np.quantile(e, 0.01)),
               "median": float(np.median(e)), "p99": float(np.quantile(e, 0.99)), "max": float(e.max()),
               "share_below_clip": float(np.mean(e < clip)), "effective_n": float(w.sum() ** 2 / (w ** 2).sum()) if len(w) else 0.0}
        if known is not None:
            row["known_probability"] = known[name]
            row["mean_abs_deviation_of_estimate"] = float(np.mean(np.abs(e - known[name])))
        out["arms"][name] = row
    worst = min(r["p01"] for r in out["arms"].values())
    out["summary"] = ("randomised: assignment probabilities known by design" if assignment == "randomised" else
                      f"1% of patients have an estimated probability below {worst:.3f} for some arm; "
                      f"{100 * max(r['share_below_clip'] for r in out['arms'].values()):.1f}% are below the clip {clip} for some arm")
    return out


def evaluate_rows(model: TreatmentModel, prep: Prepared, rows: np.ndarray, *, x: np.ndarray, n_boot: int, seed: int,
                  best_single: int | None = None) -> dict[str, Any]:
    """Outcome fit, effect calibration and policy values on held-out rows (unseen by every member)."""
    info = model.info
    d = model.draws(x[rows])
    m_eff = interval_multipliers(info)[1]
    pred = d["pred"].mean(axis=0)
    e = model.propensity(d["propensity"])
    arm, y = prep.arm[rows], restricted_outcome(prep)[rows]
    arms, ref, better = prep.arms, prep.ref, prep.better
    w = None
    if prep.kind == "survival":
        w, _ = ipcw_weights(prep.y[rows], prep.event[rows], prep.horizon, groups=arm)
    own = pred[np.arange(len(rows)), arm]
    fit: dict[str, Any] = {}
    if prep.kind == "continuous":
        fit["rmse"] = interval(*bootstrap(lambda r: np.sqrt(np.mean((own[r] - y[r]) ** 2)), len(rows), n_boot=n_boot, seed=seed))
        fit["r2"] = interval(*bootstrap(lambda r: 1 - np.mean((own[r] - y[r]) ** 2) / max(np.var(y[r]), 1e-12), len(rows), n_boot=n_boot, seed=seed))
    elif prep.kind == "binary":
        probs = np.column_stack([1 - own, own])
        fit["auc"] = interval(*bootstrap(lambda r: compute_roc_auc(probs[r], y[r].astype(int)) if len(np.unique(y[r])) > 1 else np.nan,
                                         len(rows), n_boot=n_boot, seed=seed))
        fit["brier"] = interval(*bootstrap(lambda r: np.mean((own[r] - y[r]) ** 2), len(rows), n_boot=n_boot, seed=seed))
    else:
        fit["c_index"] = interval(*bootstrap(lambda r: harrell_c(-own[r], prep.y[rows][r], prep.event[rows][r]), len(rows),
                                             n_boot=min(n_boot, 200), seed=seed))
    pseudo = dr_pseudo_outcomes(y, arm, pred, e, ref=ref, weights=w)
    tau = np.delete(pred - pred[:, [ref]], ref, axis=1)
    effects = {}
    for c, a in enumerate([i for i in range(len(arms)) if i != ref]):
        effects[f"{arms[a]} vs {arms[ref]}"] = {
            "dr_ate": interval(*bootstrap(lambda r, c=c: pseudo[r, c].mean(), len(rows), n_boot=n_boot, seed=seed)),
            "mean_predicted": float(tau[:, c].mean()),
            "blp": blp_calibration(tau[:, c], pseudo[:, c]),
            "groups": calibration_groups(tau[:, c], pseudo[:, c], n_groups=4, n_boot=min(n_boot, 200), seed=seed),
        }
    scale = float((info.get("interval_scale") or {}).get("effect", 1.0))
    default_arm = int(info.get("default_arm", ref))
    rec = recommend(d["pred"], better, ref=ref, default_arm=default_arm, effect_scale=scale)
    rec_argmax = recommend(d["pred"], better, ref=ref, default_arm=default_arm, effect_scale=scale, min_confidence=CONSERVATIVE)
    policies = {"model": rec, f"model (min confidence {CONSERVATIVE:g})": rec_argmax,
                **{f"all {a}": np.full(len(rows), i) for i, a in enumerate(arms)}}

    def values(r: np.ndarray) -> np.ndarray:
        out = []
        for pol in policies.values():
            out.append(policy_value(y[r], arm[r], pol[r], e[r], weights=None if w is None else w[r]))
            out.append(policy_value(y[r], arm[r], pol[r], e[r], mu=pred[r], weights=None if w is None else w[r]))
        return np.asarray(out)

    point, lo, hi = bootstrap(values, len(rows), n_boot=n_boot, seed=seed)
    policy: dict[str, Any] = {}
    for i, name in enumerate(policies):
        policy[name] = {"ipw": interval(point[2 * i], lo[2 * i], hi[2 * i]), "dr": interval(point[2 * i + 1], lo[2 * i + 1], hi[2 * i + 1])}
    if best_single is not None:
        b = best_single
        sign = 1.0 if better == "higher" else -1.0

        def gain(r: np.ndarray) -> np.ndarray:
            ww = None if w is None else w[r]
            fixed = np.full(len(r), b)
            out = []
            for pol in (rec, rec_argmax):
                out.append(policy_value(y[r], arm[r], pol[r], e[r], weights=ww) - policy_value(y[r], arm[r], fixed, e[r], weights=ww))
                out.append(policy_value(y[r], arm[r], pol[r], e[r], mu=pred[r], weights=ww)
                           - policy_value(y[r], arm[r], fixed, e[r], mu=pred[r], weights=ww))
            return sign * np.array(out)

        gp, gl, gh = bootstrap(gain, len(rows), n_boot=n_boot, seed=seed)
        policy["gain_over_best_single_arm"] = {"best_single_arm": arms[b], "chosen_on": "training rows (DR, out-of-fold)",
                                               "ipw": interval(gp[0], gl[0], gh[0]), "dr": interval(gp[1], gl[1], gh[1])}
        policy["gain_of_conservative_rule_over_best_single_arm"] = {"min_confidence": CONSERVATIVE,
            "best_single_arm": arms[b], "ipw": interval(gp[2], gl[2], gh[2]), "dr": interval(gp[3], gl[3], gh[3])}
    share = {a: float(np.mean(rec == i)) for i, a in enumerate(arms)}
    lo_b, hi_b = summarise(d["pred"] - d["pred"][:, :, [ref]], m_eff)[1:]
    distinguishable = float(np.mean(np.any(np.delete((lo_b > 0) | (hi_b < 0), ref, axis=1), axis=1)))
    return {"n": int(len(rows)), "outcome_fit": fit, "effects": effects, "policy_value": policy, "recommended_share": share,
            "share_with_distinguishable_difference": distinguishable,
            "policy_value_note": "IPW and doubly robust (AIPW) estimates on held-out rows; the DR estimate uses this model's own "
                                 "outcome predictions, the IPW estimate only the assignment probabilities"
                                 + (" (known by design)." if info["assignment"] == "randomised" else " (estimated).")}


def best_single_arm(fitted: Fitted, prep: Prepared) -> int:
    """The arm with the best DR value on the training rows (out-of-fold nuisances)."""
    pool = fitted.pool
    y = restricted_outcome(prep)[pool]
    w = None if fitted.weights is None else fitted.weights[pool]
    vals = [policy_value(y, prep.arm[pool], np.full(len(pool), a), fitted.oof["propensity"][pool], mu=fitted.oof["mu"][pool], weights=w)
            for a in range(len(prep.arms))]
    return _best(np.asarray(vals), prep.better)


# ============================================================================ support (applicability)


def fit_support(x: np.ndarray, arm: np.ndarray, featurizer: TabularFeaturizer, frame: pd.DataFrame, *, n_arms: int,
                seed: int, min_cluster: int = 5) -> dict[str, Any]:
    """Aggregated description of the training population, safe to ship in a bundle.

    K-means clusters of the featurized training rows (each centroid averages at least
    ``min_cluster`` patients; no training row is stored), per-arm counts per cluster, the 99th
    percentile of distances to the nearest centroid, and the 0.5-99.5 percentile range of each
    numeric covariate.
    """
    from sklearn.cluster import KMeans

    n_clusters = int(np.clip(len(x) // (30 * n_arms), 2, 64))
    km = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit(x)
    centers = km.cluster_centers_
    while True:
        dist = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
        lab = dist.argmin(1)
        sizes = np.bincount(lab, minlength=len(centers))
        if sizes.min() >= min_cluster or len(centers) <= 1:
            break
        centers = np.delete(centers, sizes.argmin(), axis=0)
    centers = np.stack([x[lab == c].mean(0) for c in range(len(centers))])
    dist = np.sqrt(((x[:, None, :] - centers[None]) ** 2).sum(-1))
    lab = dist.argmin(1)
    counts = np.zeros((len(centers), n_arms), dtype=int)
    np.add.at(counts, (lab, arm), 1)
    ranges = {}
    for c in featurizer.numeric_:
        v = parse_numeric(frame[c], column=c).dropna().to_numpy()
        if len(v):
            ranges[c] = [float(np.quantile(v, 0.005)), float(np.quantile(v, 0.995))]
    return {"centroids": centers.round(6).tolist(), "arm_counts": counts.tolist(),
            "distance_p99": float(np.quantile(dist.min(1), 0.99)), "ranges": ranges, "min_cluster": min_cluster}


# ============================================================================ train → bundle


@dataclass
class TreatmentOutcome:
    bundle_dir: Path
    metrics: dict[str, Any]
    notes: list[str]
    n_parameters: int
    overlap: dict[str, Any]
    best_epochs: list[int]


def train_treatment(
    frame: pd.DataFrame, *, spec: TreatmentSpec, source: DataSource, out_dir: Path, overwrite: bool = False,
    progress: bool = True, console: Console | None = None,
) -> TreatmentOutcome:
    """Preprocess → build → train → evaluate → bundle, for one trial or registry table."""
    console = console or Console(stderr=True)
    check_out_dir(out_dir, overwrite=overwrite)
    prep = prepare_treatment(frame, spec=spec, source=source.name)
    groups = None
    if spec.id_column:
        if prep.data[spec.id_column].isna().any():
            raise DataError(f"{source.name}: ID column '{spec.id_column}' is empty in some rows; every row needs a patient ID.")
        groups = prep.data[spec.id_column].astype(str).to_numpy()
    strat = prep.arm * 2 + (prep.event.astype(int) if prep.event is not None else (prep.y.astype(int) if prep.kind == "binary" else 0))
    sp = split_indices(strat, groups=groups, val_fraction=0.1, test_fraction=spec.test_fraction, seed=spec.seed)
    pool, test = np.sort(np.concatenate([sp.train, sp.val])), sp.test
    fitted = fit_treatment(prep, pool=pool, spec=spec, progress=progress, console=console, groups=groups)
    model = fitted.model
    x = model.features(prep.data, source="training data")
    best = best_single_arm(fitted, prep)
    model.info["default_arm"] = best
    evaluation = evaluate_rows(model, prep, test, x=x, n_boot=spec.n_boot, seed=spec.seed, best_single=best)
    overlap = overlap_report(fitted.oof["propensity_raw"][pool], prep.arm[pool], prep.arms, clip=spec.propensity_clip,
                             assignment=spec.assignment, known=prep.arm_probabilities)
    support = fit_support(x[pool], prep.arm[pool], model.featurizer, prep.data.iloc[pool], n_arms=len(prep.arms), seed=spec.seed)
    n_params = count_parameters(model.ensemble)
    info = {**model.info, "treatment": spec.treatment, "outcome": spec.outcome, "time": spec.time, "event": spec.event,
            "covariates": prep.covariates, "known_columns": [str(c) for c in frame.columns], "id_column": spec.id_column,
            "positive_class": prep.positive_class, "classes": prep.classes, "dr_correction": spec.dr_correction,
            "n_members": spec.n_members,
            "interval": (f"mean ± t(0.975, {spec.n_members - 1}) × c × sd over {spec.n_members} cross-fitted members, c = {model.info['interval_scale']['arm']:.2f} "
                         f"(per-arm) and {model.info['interval_scale']['effect']:.2f} (effects), fitted on out-of-fold training rows "
                         "so that the interval covers the patient's expected outcome (not a new patient's observed outcome)")}
    target = spec.time or spec.outcome
    schema = TaskSchema(input_schema=model.featurizer.input_schema(), output_schema={target: "treatment_effect"},
                        classes=prep.arms, positive_class=None, id_column=spec.id_column, extras={"treatment": info})
    headline = _headline(evaluation, prep)
    texts = default_card_texts("treatment_effect", target)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    card = ModelCard(
        name=model_title(subject=subject_of(source.data_dictionary(), target=str(target), fallback=f"{target} by {spec.treatment} ({source.name})"),
                         family="multiarm", size=str(spec.size)), version="1", created=created,
        task="treatment_effect", target=str(target), classes=prep.arms, positive_class=None,
        intended_use=texts["intended_use"], out_of_scope=texts["out_of_scope"],
        data={"source": source.name, "provenance": source.provenance, "licence": source.licence, "n_rows": int(len(prep.data)),
              "n_train": int(len(pool)), "n_test": int(len(test)), "treatment": spec.treatment, "arms": prep.arms,
              "reference": prep.arms[prep.ref], "outcome_kind": prep.kind, "better": prep.better, "horizon": prep.horizon,
              "assignment": spec.assignment, "covariates": prep.covariates, "excluded": list(spec.exclude),
              "inputs": input_descriptions(list(prep.covariates), source.data_dictionary()),
              "sha256": frame_fingerprint(frame), "split": f"stratified by arm{' and event' if prep.kind != 'continuous' else ''}, seed {spec.seed}"},
        model={"family": "multiarm (TARNet/DragonNet-style) + DR-learner correction", "size": spec.size, "n_parameters": n_params,
               "ensemble_members": spec.n_members, "hyperparameters": fitted.spec_dicts["params"]["member"]["params"]},
        training={**spec.train.to_dict(), "best_epochs": [r.best_epoch for r in fitted.results],
                  "effect_best_epochs": [r.best_epoch for r in fitted.effect_results]},
        metrics={"n": evaluation["n"], "metrics": headline},
        calibration={"interval": info["interval"], "overlap": overlap["summary"]},
        limitations=[
            "Effects are estimated from one trial or registry; patients unlike its population get a flag, not a reliable estimate.",
            "Intervals widen the members' disagreement by a factor fitted on out-of-fold training rows (an estimate of the "
            "error the members share); where the truth has sharp thresholds the factor can still be too small.",
            "The recommended arm is the best-ranked one; 'p_best' and 'confidence' say how sure that ranking is.",
            *(["Assignment was not randomised: estimates assume no unmeasured confounding."] if spec.assignment == "observational" else []),
            *prep.notes,
        ],
        ethical_considerations=texts["ethical_considerations"],
    )
    bundle = ModelBundle(
        model=model.ensemble, model_spec=fitted.spec_dicts, featurizer=model.featurizer, schema=schema,
        calibration={"support": support, "t_multiplier": t_multiplier(spec.n_members), "propensity_clip": spec.propensity_clip,
                     "interval_scale": model.info["interval_scale"]},
        metrics={"test": evaluation, "overlap": overlap}, model_card=card.to_dict(), model_card_markdown=card.to_markdown(),
        history=fitted.results[0].history, train_config={"outcome": spec.train.to_dict(), "effect": spec.effect_train.to_dict()},
        meta={"created": created, "data_source": source.name, "data_sha256": card.data["sha256"], "task": TASK},
        dictionary=source.data_dictionary().to_dict() or None,
    )
    out = save_bundle(bundle, out_dir, overwrite=overwrite, attachments={
        "splits.json": json.dumps({"train": pool.tolist(), "test": test.tolist()}).encode(),
        "overlap.json": json.dumps(overlap, indent=1).encode(),
    })
    return TreatmentOutcome(bundle_dir=out, metrics=evaluation, notes=prep.notes, n_parameters=n_params, overlap=overlap,
                            best_epochs=[r.best_epoch for r in fitted.results])


def _headline(ev: dict[str, Any], prep: Prepared) -> dict[str, Any]:
    """Flat ``{name: {value, ci_low, ci_high}}`` for the model card (no NaN)."""
    out: dict[str, Any] = {}
    for k, v in ev["outcome_fit"].items():
        out[k] = v
    for name, e in ev["effects"].items():
        out[f"DR effect {name}"] = e["dr_ate"]
    for name in ("model", "gain_over_best_single_arm"):
        if name in ev["policy_value"]:
            out[f"policy value ({name}, DR)"] = ev["policy_value"][name]["dr"]
    return {k: {kk: (None if isinstance(vv, float) and not np.isfinite(vv) else vv) for kk, vv in v.items()} for k, v in out.items()}


def model_from_bundle(bundle: ModelBundle) -> TreatmentModel:
    info = dict(bundle.schema.extras["treatment"])
    info["propensity_clip"] = bundle.calibration.get("propensity_clip", info.get("propensity_clip", 0.02))
    return TreatmentModel(featurizer=bundle.featurizer, ensemble=bundle.model, info=info)

