"""Treatment-effect tasks: preprocess → build → train → evaluate → bundle.

The model is a cross-fitted deep ensemble of K multi-arm outcome networks (shared representation,
one head per arm, a propensity head) followed by a doubly robust second stage:

1. the K members are fitted on K folds of the training rows (member k trains on the other
   folds and stops early on fold k), which gives out-of-fold outcome predictions mu_a(x) and
   propensities e_a(x) (known by design in a randomised trial) for every training row;
2. AIPW (DR-learner) pseudo-outcomes of every arm against the reference are formed from them
   (with inverse probability of censoring weights for a survival outcome, whose effects are on
   the restricted mean survival time up to a horizon);
3. K small correction networks regress the DR pseudo-outcomes' departure from the plug-in effect
   on the covariates (their output starts at 0, so without signal they leave the plug-in alone);
4. with ``effect_learner="trees"`` (the default; continuous outcomes only, binary and survival
   outcomes stop at step 3): per member k, effect trees (LightGBM) fitted on the rows member k
   trained on: the outcome model y = m(x) + tau_arm(x), backfitted, with the prognostic part m
   shared by all arms (it learns from every arm's rows, and its error cancels in the effects) and
   one effect model tau_a per arm, fitted twice: with constant leaves (thresholds) and with linear
   leaves (trends); in the last pass tau_a learns from residuals of an m cross-fitted within the
   member's rows (as in the R-learner, no row's residual uses an m that saw it); the number of
   boosting rounds is chosen on the members' held-out folds together (few for a constant effect,
   many for thresholds). Member k's effect of arm a is the convex mix
   (1 - w) · network^k + w · (v_a · tau_a^k,constant + (1 - v_a) · tau_a^k,linear) (network =
   plug-in + correction), fitted against y - m(x) on held-out rows: v_a on arm a's, one w on every
   non-reference arm's. Boosted trees catch the thresholds the networks smooth over (see
   benchmarks/README.md, treatment).

Member k predicts arm a as mu_a^k(x) (+ correction_a^k(x) for a non-reference arm; with trees,
mu_ref^k(x) + the blended effect); the spread of
the K members, widened to the delete-a-group jackknife standard error (member k is the fit without
fold k) or by a larger out-of-fold shared-error factor, gives 95% intervals (Student t with K-1
degrees of freedom). 20% of rows are held
out to measure outcome fit, effect calibration, overlap and the policy value of the
recommendations.

This module wires the stages: preprocessing (:func:`prepare_treatment`), fitting
(:func:`fit_treatment`) and the bundle (:func:`train_treatment`). The networks and the fitted
:class:`~medassist.models.treatment.TreatmentModel` live in ``models/treatment.py``; ranking,
interval calibration, overlap, support and the held-out report in ``evaluation/treatment_policy.py``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import Dataset

from medassist.data.dictionary import model_title, subject_of
from medassist.data.sources import DataSource
from medassist.data.splits import kfold_indices, split_indices
from medassist.evaluation.causal import dr_pseudo_outcomes, ipcw_weights
from medassist.evaluation.model_card import ModelCard, default_card_texts, input_descriptions
from medassist.evaluation.treatment_policy import (
    best_single_arm,
    evaluate_rows,
    fit_support,
    interval_calibration,
    overlap_report,
    restricted_outcome,
    survival_outcome,
    t_multiplier,
)
from medassist.exceptions import BundleError, ConfigError, DataError, SchemaError
from medassist.featurizers.tabular import TabularFeaturizer, infer_column_kind, parse_numeric
from medassist.models import build_model, count_parameters
from medassist.models.sizes import check_size
from medassist.models.survival import discretise, time_grid
from medassist.models.treatment import (
    EffectCorrection,
    EffectTrees,
    TreatmentEnsemble,
    TreatmentModel,
    fit_effect_trees,
    multiarm_loss,
    stack_weights,
    treatment_ensemble_spec,
)
from medassist.options import ModelSize, look_up_option
from medassist.pipeline.tabular import frame_fingerprint, prepare_target
from medassist.registry.bundle import ModelBundle, check_out_dir, save_bundle
from medassist.training import Monitor, TrainConfig, Trainer, TrainResult
from medassist.types import Batch, TaskSchema
from medassist.validation import check_number

TASK = "treatment"
#: The networks a treatment model is built from; a size is accepted when each has a preset for it.
NETWORKS = ("multiarm", "effect_mlp")
NO_OUTCOME = "Which column is the outcome? Pass --outcome COLUMN, or --time COLUMN --event COLUMN for a survival outcome."


class OutcomeKind(StrEnum):
    AUTO = "auto"
    CONTINUOUS = "continuous"
    BINARY = "binary"
    SURVIVAL = "survival"


class Assignment(StrEnum):
    RANDOMISED = "randomised"
    OBSERVATIONAL = "observational"


class EffectLearner(StrEnum):
    """The second stage that turns the K outcome networks into effects."""

    TREES = "trees"
    NETWORK = "network"


#: The bundle attachment holding the effect trees (LightGBM model text in JSON).
EFFECT_TREES_FILE = "effect_trees.json"
#: ``info["effect_learner"]`` of the models that carry effect trees (``xlearner_trees``: bundles of 2026-12-05).
TREE_LEARNERS = ("backfit_trees", "xlearner_trees")


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
        dr_correction: fit the second stage (otherwise plug-in effects of the networks).
        effect_learner: ``trees`` (DR-learner correction networks, then backfitted effect trees blended in per
            contrast; continuous outcomes, binary and survival outcomes keep the networks alone) or ``network``
            (the correction networks alone).
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
    effect_learner: str = "trees"
    n_bins: int = 20
    min_per_arm: int = 20
    propensity_clip: float = 0.02
    propensity_weight: float | None = None
    test_fraction: float = 0.2
    missing_outcome: str = "error"
    n_boot: int = 500

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", check_size(self.size, task=TASK, models=NETWORKS))
        owner = "TreatmentSpec"
        check_number(self.n_members, name="n_members", owner=owner, low=2, high=20, integer=True)
        check_number(self.n_bins, name="n_bins", owner=owner, low=2, high=200, integer=True)
        check_number(self.min_per_arm, name="min_per_arm", owner=owner, low=5, integer=True)
        check_number(self.propensity_clip, name="propensity_clip", owner=owner, low=0, high=0.2, low_open=True)
        check_number(self.test_fraction, name="test_fraction", owner=owner, low=0, high=0.5, low_open=True)
        check_number(self.n_boot, name="n_boot", owner=owner, low=10, integer=True)
        if self.horizon is not None:
            check_number(self.horizon, name="horizon", owner=owner, low=0, low_open=True)
        object.__setattr__(self, "effect_learner", look_up_option(self.effect_learner, EffectLearner, name="effect learner").value)
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
            raise ConfigError(NO_OUTCOME)

    @property
    def target(self) -> str:
        """The outcome's column: the time column of a survival outcome, else the outcome column."""
        target = self.time or self.outcome
        if target is None:
            raise ConfigError(NO_OUTCOME)
        return target


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
    event: np.ndarray | None
    classes: list[str] | None
    pos: str | None
    if spec.time is not None and spec.event is not None:
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
    elif spec.outcome is not None:
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
            if tgt.positive_class is None:
                raise DataError(f"{source}: outcome '{spec.outcome}' has no positive class; pass --positive-class.")
            y = np.full(len(frame), np.nan)
            y[present] = np.equal(tgt.codes, tgt.classes.index(tgt.positive_class)).astype(float)
            classes, pos, event = tgt.classes, tgt.positive_class, None
            notes += tgt.notes
    else:
        raise ConfigError(NO_OUTCOME)
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
    if kind == "survival" and event is not None:  # event is None for every other kind
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
    """Bin edges 0 = e_0 < ... < e_J = horizon at quantiles of the event times before the horizon
    (the survival core's :func:`~medassist.models.survival.time_grid`, cut at the horizon)."""
    return time_grid(times, events, n_bins=n_bins, horizon=horizon)


def bin_targets(times: np.ndarray, events: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bin index, event) per row; follow-up reaching the horizon survives every bin (index J)."""
    y = discretise(times, events, edges, past_end="survived").astype(float)
    return y[:, 0], y[:, 1]


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
    j, ev = bin_targets(y, survival_outcome(prep)[0][rows], np.asarray(info["edges"]))
    return np.column_stack([prep.arm[rows], j, ev])


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
        event, horizon = survival_outcome(prep)
        info["edges"] = survival_bins(prep.y[pool], event[pool], horizon=horizon, n_bins=spec.n_bins).tolist()
        info["corr_scale"] = horizon
    n_arms = len(prep.arms)
    n_out = len(info["edges"]) - 1 if prep.kind == "survival" else 1
    pw = spec.propensity_weight if spec.propensity_weight is not None else (0.1 if spec.assignment == "randomised" else 1.0)

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return multiarm_loss(out, target, n_arms=n_arms, n_outputs=n_out, kind=prep.kind, propensity_weight=pw)

    folds = [(pool[tr], pool[va]) for tr, va in kfold_indices(prep.arm[pool], n_splits=spec.n_members,
                                                              groups=None if groups is None else groups[pool], seed=spec.seed)]
    members: list[nn.Module] = []
    results: list[TrainResult] = []
    member_spec: dict[str, Any] = {}
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
        event, horizon = survival_outcome(prep)
        w_pool, _ = ipcw_weights(prep.y[pool], event[pool], horizon, groups=prep.arm[pool])
        weights = np.zeros(len(x))
        weights[pool] = w_pool
    pseudo = np.full((len(x), n_arms - 1), np.nan)
    pseudo[pool] = dr_pseudo_outcomes(y_r[pool], prep.arm[pool], mu_oof[pool], e_oof[pool], ref=prep.ref,
                                      weights=None if weights is None else weights[pool])
    plugin = np.delete(mu_oof - mu_oof[:, [prep.ref]], prep.ref, axis=1)
    effect_results: list[TrainResult] = []
    effect_spec: dict[str, Any] | None = None
    prognostic_oof = None  # the effect trees' reference-arm outcome m(x), out of fold (with trees)
    info["effect_learner"] = "plugin"
    if spec.dr_correction:
        info["effect_learner"] = "dr_network"
        resid = (pseudo - plugin) / info["corr_scale"]
        effects: list[nn.Module] = []
        for k, (tr, va) in enumerate(folds):
            torch.manual_seed(10_000 + spec.seed + k)
            enet, effect_spec = build_model("effect_mlp", size=spec.size, n_features=x.shape[1], n_contrasts=n_arms - 1)
            if not isinstance(enet, EffectCorrection):
                raise TypeError(f"Model 'effect_mlp' built a {type(enet).__name__}, not an EffectCorrection.")
            # start at the DR average effect: the plug-in shifted by the mean residual
            enet.start_at(torch.as_tensor(resid[tr].mean(axis=0), dtype=torch.float32))
            cfg = TrainConfig.from_dict({**spec.effect_train.to_dict(), "seed": spec.seed + k})
            res = Trainer(config=cfg, progress=progress, console=console).fit(
                enet, train_data=FloatTargetDataset(features=x[tr], targets=resid[tr]),
                val_data=FloatTargetDataset(features=x[va], targets=resid[va]), loss_fn=nn.functional.mse_loss)
            effects.append(enet)
            effect_results.append(res)
        full = TreatmentEnsemble(member=member_spec, effect=effect_spec, n_members=spec.n_members)
        full.members.load_state_dict(ens.members.state_dict())
        full.load_effects(effects)
        ens = full
        model = TreatmentModel(featurizer=featurizer, ensemble=ens, info=info)
    if spec.dr_correction and spec.effect_learner == EffectLearner.TREES and prep.kind == "continuous":
        # member k's trees are fitted on member k's training rows; the held-out folds choose the rounds and the weights
        trees, prognostic = fit_effect_trees(x, prep.y, prep.arm, folds=folds, n_arms=n_arms, ref=prep.ref, seed=spec.seed)
        info["effect_learner"] = "backfit_trees"
        info["effect_tree_rounds"] = {v: r for v, r in zip(trees.variants, trees.rounds, strict=True)}
        model = TreatmentModel(featurizer=featurizer, ensemble=ens, info=info, trees=trees)
        # The weights are fitted against y - m(x) on held-out arm rows, each row predicted by the member that
        # never saw it (m: the trees' shared prognostic part, learned from every arm; measured on the outcome
        # itself, this is far less noisy than a DR pseudo-outcome, which divides by the arm's share of the
        # trial): per contrast, the convex mix of the tree variants on arm a's rows; then one weight of the
        # trees against the networks' effect, on every non-reference arm's rows together (which learner
        # to trust is a question about the learners and the trial; one number from all arms is steadier
        # than one per contrast).
        fold_of = np.zeros(len(x), dtype=int)
        for k, (_, va) in enumerate(folds):
            fold_of[va] = k
        own = (fold_of[pool], pool)  # indexes (K, N, ...) arrays over all rows: pool row i as its own member predicts it
        net_all = model.draws(x, trees=False)["pred"]  # the networks' own predictions
        net_oof = np.delete(net_all - net_all[..., [prep.ref]], prep.ref, axis=-1)[own]  # (P, A - 1)
        tree_oof = trees.predict_variants(x)[own]  # (P, A - 1, J)
        target = prep.y[pool] - prognostic[own]
        prognostic_oof = np.full(len(x), np.nan)
        prognostic_oof[pool] = prognostic[own]
        others = [a for a in range(n_arms) if a != prep.ref]
        on_arm = [prep.arm[pool] == a for a in others]
        trees.mix = [[float(v) for v in stack_weights(tree_oof[rows, c], target[rows])] for c, rows in enumerate(on_arm)]
        mixed = np.einsum("pcj,cj->pc", tree_oof, np.asarray(trees.mix))
        w = stack_weights(np.column_stack([np.concatenate([net_oof[rows, c] for c, rows in enumerate(on_arm)]),
                                           np.concatenate([mixed[rows, c] for c, rows in enumerate(on_arm)])]),
                          np.concatenate([target[rows] for rows in on_arm]))
        trees.weights = [float(w[1])] * len(others)
        info["effect_tree_mix"] = {v: [m[j] for m in trees.mix] for j, v in enumerate(trees.variants)}
        info["effect_blend_weights"] = list(trees.weights)
    ens.eval()
    spec_dict = treatment_ensemble_spec(member_spec, effect_spec, spec.n_members)
    info["interval_scale"] = interval_calibration(model, prep, x=x, pool=pool, folds=folds, pseudo=pseudo, weights=weights)
    oof = {"mu": mu_oof, "propensity": e_oof, "propensity_raw": prop_oof, "pseudo": pseudo, "plugin": plugin,
           **({} if prognostic_oof is None else {"prognostic": prognostic_oof})}
    return Fitted(model=model, spec_dicts=spec_dict, results=results, effect_results=effect_results, oof=oof, pool=pool, weights=weights)


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
    best = best_single_arm(prep, pool=pool, mu=fitted.oof["mu"], propensity=fitted.oof["propensity"], weights=fitted.weights)
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
                         f"(per-arm) and {model.info['interval_scale']['effect']:.2f} (effects): the delete-a-group jackknife factor "
                         f"{model.info['interval_scale']['jackknife']:.2f} (member k is the fit without fold k), or a larger shared-error "
                         "factor estimated on out-of-fold training rows, so that the interval covers the patient's expected outcome (not a new patient's observed outcome)"
                         + ("; with effect trees blended in, each interval also spans the networks' own interval" if model.trees is not None else ""))}
    target = spec.target
    schema = TaskSchema(input_schema=model.featurizer.input_schema(), output_schema={target: "treatment_effect"},
                        classes=prep.arms, positive_class=None, id_column=spec.id_column, extras={"treatment": info})
    headline = _headline(evaluation, prep)
    texts = default_card_texts("treatment_effect", target)
    created = datetime.now(UTC).isoformat(timespec="seconds")
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
        model={"family": _family(model.info["effect_learner"]), "size": spec.size, "n_parameters": n_params,
               "ensemble_members": spec.n_members, "hyperparameters": fitted.spec_dicts["params"]["member"]["params"]},
        training={**spec.train.to_dict(), "best_epochs": [r.best_epoch for r in fitted.results],
                  "effect_best_epochs": [r.best_epoch for r in fitted.effect_results]},
        metrics={"n": evaluation["n"], "metrics": headline},
        calibration={"interval": info["interval"], "overlap": overlap["summary"]},
        limitations=[
            "Effects are estimated from one trial or registry; patients unlike its population get a flag, not a reliable estimate.",
            "Intervals widen the members' disagreement to the jackknife standard error (members trained without one fold each), "
            "or by a larger factor fitted on out-of-fold training rows (error the members share). They cover sampling error, not "
            "every bias: where the truth has sharp thresholds, effect intervals can still cover less than 95% (0.94-0.95 for the "
            "worst contrast on the semi-synthetic benchmark's non-linear surfaces; see benchmarks/README.md).",
            *([f"Effects blend the networks' effect with boosted effect trees (weight {model.info['effect_blend_weights'][0]:.2f} "
               "of the trees, fitted on held-out fold rows; 0 keeps the networks alone; per contrast, the trees mix a model with "
               "constant leaves and one with linear leaves, also by held-out fit). Trees catch thresholds the networks "
               "smooth over, but shrink, and the jackknife covers their sampling error, not that bias: each interval therefore "
               "spans the blend's own interval and the networks' own (the estimate stays the blend's), which on the benchmark's "
               "non-linear surfaces covers at least as often as either alone (see benchmarks/README.md). "
               "Attributions explain the networks' effect, not the trees'."] if model.info["effect_learner"] in TREE_LEARNERS else []),
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
    attachments = {
        "splits.json": json.dumps({"train": pool.tolist(), "test": test.tolist()}).encode(),
        "overlap.json": json.dumps(overlap, indent=1).encode(),
    }
    if model.trees is not None:
        attachments[EFFECT_TREES_FILE] = model.trees.to_json().encode()
    out = save_bundle(bundle, out_dir, overwrite=overwrite, attachments=attachments)
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


def _family(effect_learner: str) -> str:
    return {"backfit_trees": "multiarm (TARNet/DragonNet-style) + DR-learner correction, blended per contrast with "
                             "effect trees (LightGBM: a prognostic model shared by the arms, backfitted with one effect model per arm)",
            "xlearner_trees": "multiarm (TARNet/DragonNet-style) + DR-learner correction, blended per contrast with "
                              "X-learner effect trees (LightGBM)",
            "dr_network": "multiarm (TARNet/DragonNet-style) + DR-learner correction",
            "plugin": "multiarm (TARNet/DragonNet-style), plug-in effects"}.get(effect_learner, effect_learner)


def _effect_trees(bundle: ModelBundle) -> EffectTrees:
    """The bundle's effect trees, checked against the checksum in bundle.json."""
    if bundle.path is None:
        raise BundleError("A treatment bundle with effect trees must be loaded from its directory (it has no path).")
    path = Path(bundle.path) / EFFECT_TREES_FILE
    if not path.is_file():
        raise BundleError(f"{bundle.path}: {EFFECT_TREES_FILE} is missing; the model predicts with its effect trees.")
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != bundle.meta.get("files", {}).get(EFFECT_TREES_FILE):
        raise BundleError(f"{path}: does not match the checksum in bundle.json; the bundle was altered or damaged.")
    try:
        return EffectTrees.from_json(raw.decode(), source=str(path))
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(str(e)) from e


def model_from_bundle(bundle: ModelBundle) -> TreatmentModel:
    extras = bundle.schema.extras.get("treatment")
    if not isinstance(extras, dict) or not isinstance(bundle.model, TreatmentEnsemble):
        raise BundleError(f"{bundle.path}: not a treatment bundle (it lacks the treatment description or the treatment ensemble).")
    info = dict(extras)
    info["propensity_clip"] = bundle.calibration.get("propensity_clip", info.get("propensity_clip", 0.02))
    # bundles from before the tree stage have no 'effect_learner': networks only, exactly as before
    trees = _effect_trees(bundle) if info.get("effect_learner") in TREE_LEARNERS else None
    return TreatmentModel(featurizer=bundle.featurizer, ensemble=bundle.model, info=info, trees=trees)
