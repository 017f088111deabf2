"""Tabular tasks (diagnosis from a table):
preprocess → build → train → evaluate → bundle.

The CLI and the service call assistants; assistants call these functions.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from medassist.data.dictionary import ColumnType, DataDictionary, model_title, subject_of
from medassist.data.quality import FindingCode, QualityReport, Severity, assess_quality, is_coded_category
from medassist.data.sources import DataSource
from medassist.data.splits import SplitIndices, kfold_indices, split_indices
from medassist.evaluation.calibration import TemperatureScaler, calibration_warning
from medassist.evaluation.comparison import compare, model_words
from medassist.evaluation.metrics import compute_ece, compute_roc_auc, evaluate_classification, subgroup_metrics
from medassist.evaluation.model_card import ModelCard, default_card_texts, input_descriptions
from medassist.evaluation.report import write_report
from medassist.exceptions import ConfigError, DataError, TrainingError
from medassist.explain.attributions import group_attributions, integrated_gradients, top_attributions
from medassist.featurizers.tabular import (
    TabularFeaturizer,
    category_key,
    count_declared_missing,
    declared_missing_mask,
    infer_column_kind,
    parse_numeric,
)
from medassist.models import Ensemble, build_model, count_parameters, ensemble_spec
from medassist.models.baselines import HGB_NOT_STORED, LogisticModel, fit_hgb, fit_logistic, hgb_proba, logistic_logits, softmax
from medassist.options import ModelSize, look_up_option
from medassist.privacy.ledger import PrivacyLedger
from medassist.registry.bundle import ModelBundle, check_out_dir, save_bundle
from medassist.training import (
    ArrayDataset,
    TrainConfig,
    Trainer,
    TrainResult,
    class_weights,
    classification_loss,
    distributed,
)
from medassist.training.trainer import TrainerCallback
from medassist.types import SCORE_DECIMALS, TaskSchema
from medassist.validation import check_number

#: Class names read as the positive (disease) class of a binary target, in this order.
POSITIVE_NAMES = ("1", "true", "yes", "y", "positive", "pos", "present", "malignant", "disease", "case", "abnormal", "dead", "died")
MAX_CLASSES = 20
SUBGROUP_NAMES = ("sex", "gender")


@dataclass(frozen=True, kw_only=True)
class TabularSpec:
    """Everything that decides how a tabular diagnosis model is built and trained."""

    target: str
    #: The deep model family (the diagnosis assistant's ``DEFAULT_MODEL``).
    model: str = "tabm"
    size: ModelSize = ModelSize.SMALL
    seed: int = 0
    id_column: str | None = None
    positive_class: str | None = None
    exclude: tuple[str, ...] = ()
    missing_target: str = "error"
    train: TrainConfig = field(default_factory=TrainConfig)
    n_members: int = 1
    class_weight: str = "none"
    n_boot: int = 1000
    #: Columns encoded as categories / as numbers, overriding the inference (``--categorical``,
    #: ``--numeric``); columns flagged as leaking the target that the user keeps knowingly.
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    allow_leaky: tuple[str, ...] = ()
    #: Per column, values that mean "missing" (``--missing-values insulin=0``): read as missing
    #: by the featurizer (imputed with an indicator) in training and in every later use.
    missing_values: dict[str, list[Any]] = field(default_factory=dict)
    #: ``--model auto``: deploy whichever of the deep model and the logistic regression has the
    #: higher validation AUC (never chosen on the test split).
    select_model: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", look_up_option(self.size, ModelSize, name="model size"))
        check_number(self.n_members, name="n_members", owner="TabularSpec", low=1, high=20, integer=True)
        if self.class_weight not in ("none", "balanced"):
            raise ConfigError(f"The 'class_weight' parameter of TabularSpec must be 'none' or 'balanced'. Got {self.class_weight!r} instead.")
        if self.missing_target not in ("error", "drop"):
            raise ConfigError(f"The 'missing_target' parameter of TabularSpec must be 'error' or 'drop'. Got {self.missing_target!r} instead.")


@dataclass(frozen=True)
class Target:
    codes: np.ndarray
    classes: list[str]
    positive_class: str | None
    kept: np.ndarray
    notes: list[str]


def _label_strings(s: pd.Series) -> pd.Series:
    """Class labels as strings; integral floats lose their '.0' (1.0 → '1')."""
    present = s.dropna()
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        if np.all(np.mod(present.to_numpy(dtype=float), 1) == 0):
            return s.map(lambda v: v if pd.isna(v) else str(int(v)))
    return s.map(lambda v: v if pd.isna(v) else str(v).strip())


def prepare_target(df: pd.DataFrame, *, target: str, positive_class: str | None, missing: str, source: str) -> Target:
    """Encode the outcome column. A missing outcome is never turned into a class."""
    if target not in df.columns:
        raise DataError(f"{source}: target column '{target}' not found. The table has: {', '.join(map(str, df.columns))}.")
    labels = _label_strings(df[target])
    notes: list[str] = []
    kept = labels.notna().to_numpy()
    if not kept.all():
        rows = np.flatnonzero(~kept)
        where = ", ".join(str(r + 1) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
        if missing == "error":
            raise DataError(
                f"{source}: target '{target}' is missing in {len(rows)} row(s) (rows {where}); an unknown outcome is "
                "never given a default class. Remove those rows, or pass --drop-missing-target to drop them and record it."
            )
        notes.append(f"{len(rows)} row(s) with a missing '{target}' were dropped at the user's request (rows {where}).")
    counts = labels[kept].value_counts()
    classes = sorted(counts.index.tolist())
    if len(classes) < 2:
        only = f" (only '{classes[0]}')" if classes else ""
        raise DataError(f"{source}: target '{target}' has one class{only}; a classifier needs at least two.")
    if len(classes) > MAX_CLASSES:
        raise DataError(
            f"{source}: target '{target}' has {len(classes)} distinct values; expected a categorical outcome with at most "
            f"{MAX_CLASSES} classes (is it a continuous measurement?)."
        )
    rare = counts[counts < 3]
    if len(rare):
        raise DataError(
            f"{source}: class(es) {', '.join(repr(c) for c in rare.index)} of target '{target}' have fewer than 3 rows; "
            "each class needs rows in the training, validation and test splits."
        )
    if len(classes) == 2:
        if positive_class is not None:
            if str(positive_class) not in classes:
                raise ConfigError(f"--positive-class '{positive_class}' is not a class of '{target}'; its classes are {classes}.")
            positive_class = str(positive_class)
        else:
            lowered = {c.lower(): c for c in classes}
            named = [lowered[n] for n in POSITIVE_NAMES if n in lowered]
            if named:
                positive_class = named[0]
            else:
                positive_class = str(counts.idxmin())
                notes.append(f"Positive class '{positive_class}' chosen as the minority class; pass --positive-class to change it.")
    else:
        positive_class = None
    index = {c: i for i, c in enumerate(classes)}
    codes = labels[kept].map(index).to_numpy(dtype=np.int64)
    return Target(codes=codes, classes=classes, positive_class=positive_class, kept=kept, notes=notes)


def select_features(df: pd.DataFrame, *, spec: TabularSpec, source: str) -> tuple[list[str], list[str]]:
    """Input columns: everything but the target, the ID and excluded columns, and columns that
    cannot be features (all missing, free text). Returns (features, notes)."""
    for col in [c for c in (spec.id_column, *spec.exclude) if c]:
        if col not in df.columns:
            raise DataError(f"{source}: column '{col}' (given as an ID or excluded column) not found. The table has: {', '.join(map(str, df.columns))}.")
    skip = {spec.target, spec.id_column, *spec.exclude}
    features, notes = [], []
    for col in df.columns:
        if col in skip:
            continue
        s = df[col]
        if s.isna().all():
            notes.append(f"Column '{col}' is empty and was not used.")
            continue
        if infer_column_kind(s) == "categorical" and s.nunique() > max(50, 0.5 * len(s)):
            notes.append(f"Column '{col}' looks like free text or an identifier ({s.nunique()} distinct values) and was not used.")
            continue
        features.append(col)
    if not features:
        raise DataError(f"{source}: no usable input columns besides the target '{spec.target}'.")
    return features, notes


def check_leakage(quality: QualityReport, *, features: list[str], spec: TabularSpec, source: str) -> list[str]:
    """Refuse to train on an input column that leaks the target (``data check`` calls it an
    error: it alone predicts the outcome, or copies or relabels it). Returns notes for the
    columns the user kept knowingly with ``--allow-leaky-column``.

    Raises:
        DataError: one line naming every leaking input column and both ways forward.
    """
    for col in spec.allow_leaky:
        if col not in features:
            raise DataError(f"{source}: --allow-leaky-column '{col}' is not an input column of the model "
                            f"(inputs: {', '.join(features)}).")
    leaks = {f.column: f.message for f in quality.findings
             if f.code is FindingCode.LEAKAGE_SUSPECT and f.severity is Severity.ERROR and f.column in features}
    refused = [c for c in features if c in leaks and c not in spec.allow_leaky]
    if refused:
        why = " ".join(leaks[c] for c in refused)
        excl = " ".join(f"--exclude {c}" for c in refused)
        allow = " ".join(f"--allow-leaky-column {c}" for c in refused)
        raise DataError(f"{source}: refusing to train: {why} A model would learn the answer from it. Train without it "
                        f"({excl}), or, only if it is truly known before the outcome, keep it with {allow}.")
    return [f"Column '{c}' was flagged as leaking the target ({leaks.get(c, 'no longer flagged')}) and kept at the user's "
            "request (--allow-leaky-column); test metrics may be optimistic." for c in spec.allow_leaky]


def check_trainable(frame: pd.DataFrame, *, spec: TabularSpec, source: str) -> None:
    """The checks ``train_tabular`` makes before it trains that need no training: the target,
    the input columns and label leakage (for callers that must refuse at once, like the
    service's training queue)."""
    quality = assess_quality(frame, target=spec.target, id_columns=[spec.id_column] if spec.id_column else [], source=source)
    prepare_target(frame, target=spec.target, positive_class=spec.positive_class, missing=spec.missing_target, source=source)
    features, _ = select_features(frame, spec=spec, source=source)
    check_leakage(quality, features=features, spec=spec, source=source)
    feature_kinds(frame, features=features, spec=spec, source=source)


def feature_kinds(df: pd.DataFrame, *, features: list[str], spec: TabularSpec, source: str,
                  dictionary: DataDictionary | None = None) -> tuple[list[str], list[str], list[str]]:
    """(numeric, categorical, notes): how each input column is encoded.

    In order of precedence: ``spec.categorical`` / ``spec.numeric`` (the flags), then the type
    the data dictionary declares for the column (a coded ``categorical`` column is a category, a
    ``numeric`` one a quantity, e.g. biopsy's 1-10 cytology scores), then inference: a numeric
    column of a few integer codes (``race`` = 1/2/3) is a category, by the same rule ``data
    check`` uses (:func:`medassist.data.quality.is_coded_category`), with a note naming it.
    """
    both = sorted(set(spec.categorical) & set(spec.numeric))
    if both:
        raise ConfigError(f"Column(s) {', '.join(repr(c) for c in both)} given both as --categorical and --numeric; choose one.")
    for flag, cols in (("--categorical", spec.categorical), ("--numeric", spec.numeric)):
        for col in cols:
            if col not in features:
                raise DataError(f"{source}: {flag} '{col}' is not an input column of the model (inputs: {', '.join(features)}).")
    numeric, categorical, inferred = [], [], []
    for col in features:
        parses = infer_column_kind(df[col]) == "numeric"
        if col in spec.numeric:
            if not parses:
                raise DataError(f"{source}: --numeric '{col}': the column does not hold numbers.")
            numeric.append(col)
        elif col in spec.categorical or not parses:
            categorical.append(col)
        elif (declared := dictionary.get(col) if dictionary else None) is not None and declared.type in (
                ColumnType.NUMERIC, ColumnType.BINARY, ColumnType.CATEGORICAL):
            (categorical if declared.type is ColumnType.CATEGORICAL else numeric).append(col)
        elif is_coded_category(df[col]):
            categorical.append(col)
            inferred.append(col)
        else:
            numeric.append(col)
    notes = []
    if inferred:
        names = ", ".join(f"'{c}'" for c in inferred)
        notes.append(f"Column(s) {names} hold a few integer codes and are encoded as categories, not numbers; "
                     f"pass --numeric {inferred[0]} (repeatable) to treat one as a quantity.")
    return numeric, categorical, notes


#: Bundle attachment with salted-free hashes of the rows the model was trained (or stopped
#: early / calibrated) on, so that ``evaluate`` can tell seen rows from unseen ones.
TRAINING_ROWS_FILE = "training_rows.json"


def _cell_key(v: Any) -> str:
    """A cell as text that survives a CSV round trip (1 == 1.0 == '1'; missing == '')."""
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, str):
        t = v.strip()
        try:
            f = float(t)
        except ValueError:
            return t
        return category_key(f) if np.isfinite(f) else t
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, float, np.integer, np.floating)):
        return category_key(float(v)) if np.isfinite(float(v)) else str(v)
    return str(v)


def row_hashes(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """SHA-256 (first 16 hex digits) of each row's values in ``columns``: identifies a row
    again without storing its values (they are PHI-adjacent)."""
    keys = [frame[c].map(_cell_key).tolist() for c in columns]
    head = "\x1e".join(map(str, columns)) + "\x1d"
    return [hashlib.sha256((head + "\x1f".join(vals)).encode()).hexdigest()[:16] for vals in zip(*keys)]


def id_hashes(ids: pd.Series) -> list[str]:
    """SHA-256 (first 16 hex digits) of each patient ID, never the ID itself."""
    return [hashlib.sha256(("id\x1f" + _cell_key(v)).encode()).hexdigest()[:16] for v in ids.tolist()]


def seen_in_training(bundle: ModelBundle, frame: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """Which rows of ``frame`` the bundle was trained on (training or validation split), and
    how that was decided; ``(None, reason)`` when the bundle does not record its rows."""
    path = Path(bundle.path) / TRAINING_ROWS_FILE if bundle.path else None
    if path is None or not path.is_file():
        return None, "the bundle does not record which rows it was trained on"
    rec = json.loads(path.read_text())
    id_col = rec.get("id_column")
    if id_col and rec.get("ids") is not None and id_col in frame.columns:
        known = set(rec["ids"])
        return np.array([h in known for h in id_hashes(frame[id_col])], dtype=bool), f"patient IDs in '{id_col}'"
    columns = rec["columns"]
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        return None, f"the table lacks column(s) {', '.join(absent)} recorded with the training rows"
    known = set(rec["rows"])
    return np.array([h in known for h in row_hashes(frame, columns)], dtype=bool), "row contents (inputs and outcome)"


def bundle_warnings(bundle: ModelBundle) -> list[str]:
    """Warnings every answer of this bundle carries (poor calibration on its own test set)."""
    ece = ((bundle.metrics.get("test") or {}).get("metrics") or {}).get("ece", {}).get("value")
    w = calibration_warning(ece)
    return [w] if w else []


@dataclass
class FittedTabular:
    """A fitted featurizer + network + temperature: enough to predict probabilities."""

    featurizer: TabularFeaturizer
    model: torch.nn.Module
    model_spec: dict[str, Any]
    scaler: TemperatureScaler
    result: TrainResult
    #: Validation-split logits (len(val_idx), C) from a model that did not train on those rows
    #: (out-of-fold for an ensemble), for choosing between models on validation, never test.
    val_logits: np.ndarray | None = None

    def logits(self, frame: pd.DataFrame, *, source: str = "input data") -> np.ndarray:
        x = self.featurizer.transform(frame, source=source).values
        with torch.no_grad():
            self.model.eval()
            return self.model(torch.from_numpy(x)).numpy()

    def predict_proba(self, frame: pd.DataFrame, *, source: str = "input data") -> np.ndarray:
        return self.scaler.transform(self.logits(frame, source=source))


def _auc_metric(positive_index: int, n_classes: int):
    def metric(logits: np.ndarray, targets: np.ndarray) -> float:
        p = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        if len(np.unique(targets)) < 2:
            return float("nan")
        return compute_roc_auc(p, targets, positive_index=positive_index)

    return metric


def fit_tabular(
    frame: pd.DataFrame, codes: np.ndarray, *, train_idx: np.ndarray, val_idx: np.ndarray, features: list[str],
    n_classes: int, positive_index: int, spec: TabularSpec, progress: bool = False, console: Console | None = None,
    checkpoint_dir: Path | None = None, groups: np.ndarray | None = None,
    numeric: list[str] | None = None, categorical: list[str] | None = None, callbacks: list[TrainerCallback] | None = None,
) -> FittedTabular:
    """Fit featurizer (training rows only), network (Trainer) and temperature (held-out rows).

    With ``spec.n_members == 1`` the network trains on ``train_idx`` and stops early on
    ``val_idx``. With K > 1 members, the rows of both are cross-fitted: member k trains on K-1
    folds and stops early on fold k, so every row is used for training and, once, for
    validation; the temperature is fitted on the out-of-fold logits of all those rows.
    """
    pool = np.sort(np.concatenate([train_idx, val_idx])) if spec.n_members > 1 else train_idx
    featurizer = TabularFeaturizer(numeric=numeric, categorical=categorical, missing_values=spec.missing_values or None).fit(
        frame.iloc[pool][features], source="training split")
    x_all = featurizer.transform(frame.iloc[np.sort(np.concatenate([train_idx, val_idx]))], source="training split").values
    row_of = {r: i for i, r in enumerate(np.sort(np.concatenate([train_idx, val_idx])))}
    trainer = Trainer(config=spec.train, checkpoint_dir=checkpoint_dir, progress=progress, console=console)
    metric = _auc_metric(positive_index, n_classes)

    def one_member(tr: np.ndarray, va: np.ndarray, seed: int) -> tuple[torch.nn.Module, dict[str, Any], TrainResult, np.ndarray]:
        torch.manual_seed(seed)
        model, model_spec = build_model(spec.model, size=spec.size, n_features=x_all.shape[1], n_outputs=n_classes)
        train_data = ArrayDataset(features=x_all[[row_of[r] for r in tr]], targets=codes[tr])
        # Data-dependent input state (TabM's quantile bins) from the training rows only; under
        # DP-SGD the bins stay data-independent (standard-normal quantiles of the standardised
        # inputs), as exact training quantiles would reveal training values outside the guarantee.
        fit_bins = getattr(model, "fit_bins", None)
        if callable(fit_bins) and spec.train.privacy is None:
            fit_bins(torch.from_numpy(x_all[[row_of[r] for r in tr]]))
        val_data = ArrayDataset(features=x_all[[row_of[r] for r in va]], targets=codes[va])
        t = trainer if seed == spec.seed else Trainer(
            config=TrainConfig.from_dict({**spec.train.to_dict(), "seed": seed}), progress=progress, console=console)
        balanced = spec.class_weight == "balanced"
        result = t.fit(model, train_data=train_data, val_data=val_data,
                       loss_fn=classification_loss(codes[tr], n_classes, balanced=balanced), metric_fn=metric,
                       callbacks=callbacks, member=(seed - spec.seed + 1, spec.n_members))
        if balanced:
            undo_class_weighting(model, class_weights(codes[tr], n_classes))
        val_logits, _ = t.predict_logits(model, val_data)
        return model, model_spec, result, val_logits

    if spec.n_members == 1:
        model, model_spec, result, val_logits = one_member(train_idx, val_idx, spec.seed)
        scaler = TemperatureScaler().fit(val_logits, codes[val_idx])
        return FittedTabular(featurizer=featurizer, model=model, model_spec=model_spec, scaler=scaler, result=result,
                             val_logits=val_logits)
    folds = list(kfold_indices(codes[pool], n_splits=spec.n_members, groups=None if groups is None else groups[pool], seed=spec.seed))
    members, oof_logits, oof_targets, results = [], [], [], []
    oof_by_row: dict[int, np.ndarray] = {}
    for k, (tr, va) in enumerate(folds):
        model, member_spec, result, val_logits = one_member(pool[tr], pool[va], spec.seed + k)
        oof_by_row.update(zip(pool[va].tolist(), val_logits))
        members.append(model)
        results.append(result)
        oof_logits.append(torch.log_softmax(torch.from_numpy(val_logits), dim=1).numpy())
        oof_targets.append(codes[pool[va]])
    ens_spec = ensemble_spec(member_spec, spec.n_members)
    ensemble = Ensemble(member=member_spec, n_members=spec.n_members)
    for dst, src in zip(ensemble.members, members):
        dst.load_state_dict(src.state_dict())
    ensemble.eval()
    scaler = TemperatureScaler().fit(np.concatenate(oof_logits), np.concatenate(oof_targets))
    summary = TrainResult(
        history=results[0].history, best_epoch=int(np.median([r.best_epoch for r in results])),
        best_score=float(np.mean([r.best_score for r in results])), stopped_early=all(r.stopped_early for r in results),
        seconds=float(sum(r.seconds for r in results)),
    )
    return FittedTabular(featurizer=featurizer, model=ensemble, model_spec=ens_spec, scaler=scaler, result=summary,
                         val_logits=np.stack([oof_by_row[int(r)] for r in val_idx]))


#: Bundle attachment with the baselines: logistic regression as plain coefficients (JSON).
BASELINES_FILE = "baselines.json"


def declare_missing(frame: pd.DataFrame, *, spec: TabularSpec, source: str) -> pd.DataFrame:
    """A copy of ``frame`` with the values the user declared to mean "missing" (``--missing-values``)
    set to missing; ``frame`` itself when none are declared. The caller's table is never changed."""
    if not spec.missing_values:
        return frame
    for col in spec.missing_values:
        if col not in frame.columns:
            raise DataError(f"{source}: --missing-values names column '{col}', which the table does not have "
                            f"(columns: {', '.join(map(str, frame.columns))}).")
        if col == spec.target:
            raise DataError(f"{source}: --missing-values names the outcome '{col}'; an outcome is never imputed "
                            "(use --drop-missing-target for rows whose outcome is unknown).")
    out = frame.copy()
    for col, values in spec.missing_values.items():
        out[col] = out[col].mask(declared_missing_mask(out[col], values))
    return out


def declared_missing_note(column: str, values: list[Any], n_rows: int) -> str:
    """"insulin: 0 treated as missing in 12 rows" (printed, and written to the model card)."""
    return f"{column}: {' or '.join(map(str, values))} treated as missing in {n_rows} row{'s' if n_rows != 1 else ''} (--missing-values)"


def fit_baselines(
    fitted: FittedTabular, data: pd.DataFrame, codes: np.ndarray, splits: SplitIndices, *, spec: TabularSpec,
    n_classes: int, pos: int,
) -> tuple[FittedTabular, dict[str, Any], dict[str, np.ndarray]]:
    """Logistic regression and gradient-boosted trees on the training split (the fitted
    featurizer's output), and, with ``spec.select_model``, the choice between the deep model and
    the logistic regression on the validation split.

    Returns:
        The model to deploy (``fitted``, or the logistic regression as a :class:`LogisticModel`),
        the baselines record for the card (``fitted_on``, ``evaluate``, ``selection``,
        ``logistic_state``, or ``not_fitted`` with the reason) and the test-split probabilities
        of each comparator by name.
    """
    if spec.train.privacy is not None:
        return fitted, {"fitted_on": "", "not_fitted": {
            "logistic regression and gradient-boosted trees": "the model was trained under differential privacy; a "
            "non-private baseline fitted on the same rows would fall outside the privacy guarantee"}}, {}
    fz = fitted.featurizer
    x_tr = fz.transform(data.iloc[splits.train], source="training split").values
    x_va = fz.transform(data.iloc[splits.val], source="validation split").values
    x_te = fz.transform(data.iloc[splits.test], source="test split").values
    y_tr = codes[splits.train]
    lr_state = fit_logistic(x_tr, y_tr, n_classes=n_classes, seed=spec.seed)
    hgb = fit_hgb(x_tr, y_tr, seed=spec.seed)
    probs = {"logistic": softmax(logistic_logits(lr_state, x_te)), "hgb": hgb_proba(hgb, x_te, n_classes)}
    record: dict[str, Any] = {
        "fitted_on": f"training split only ({len(splits.train)} rows), on the model's featurizer output "
                     "(median imputation with missingness indicators, one-hot categories, standardised numbers)",
        "evaluate": "the logistic regression is stored as coefficients (baselines.json) and re-applied by evaluate; "
                    + HGB_NOT_STORED,
        "logistic_state": lr_state,
        "settings": {"logistic": "L2, C=1, lbfgs, max_iter=1000" + ("" if lr_state["converged"] else " (did not converge)"),
                     "hgb": "HistGradientBoostingClassifier, scikit-learn defaults (early stopping 'auto')"},
    }
    if not spec.select_model:
        return fitted, record, probs
    if fitted.val_logits is None:  # fit_tabular always keeps them; a loaded bundle does not
        raise TrainingError("--model auto needs the validation logits of the deep model; this fitted model has none.")
    y_va = codes[splits.val]
    lr_val_logits = logistic_logits(lr_state, x_va)
    auc_deep = compute_roc_auc(softmax(fitted.val_logits), y_va, positive_index=pos)
    auc_lr = compute_roc_auc(softmax(lr_val_logits), y_va, positive_index=pos)
    lr_wins = bool(np.isfinite(auc_lr) and (not np.isfinite(auc_deep) or auc_lr > auc_deep))
    chosen = "logistic" if lr_wins else spec.model
    deep_how = "out-of-fold predictions of the ensemble members" if spec.n_members > 1 else "the deep model stopped early on it"
    record["selection"] = {
        "rule": "--model auto: the higher AUC on the validation split (never the test split); a tie keeps the deep model",
        "validation_auc": {spec.model: float(auc_deep), "logistic": float(auc_lr)}, "n_validation": int(len(splits.val)),
        "chosen": chosen,
        "why": (f"chose {'the logistic regression' if lr_wins else f'the deep model ({spec.model})'}: validation AUC "
                f"{auc_lr:.3f} (logistic) vs {auc_deep:.3f} ({spec.model}, {deep_how}) on {len(splits.val)} validation rows"),
    }
    if not lr_wins:
        return fitted, record, probs
    model, model_spec = LogisticModel.from_state(lr_state)
    deployed = FittedTabular(featurizer=fz, model=model, model_spec=model_spec, scaler=TemperatureScaler().fit(lr_val_logits, y_va),
                             result=fitted.result, val_logits=lr_val_logits)
    probs = {spec.model: fitted.predict_proba(data.iloc[splits.test], source="test split"), "hgb": probs["hgb"]}
    return deployed, record, probs


def undo_class_weighting(model: torch.nn.Module, weights: np.ndarray) -> None:
    """Make a model trained with class weights w_c predict unweighted probabilities again.

    Weighted cross-entropy fits p_w(c|x) ∝ w_c p(c|x), so subtracting log w_c from the logits
    restores p(c|x) exactly (the prior shift that temperature scaling alone cannot undo).
    """
    head = getattr(model, "head", None)
    last = head[-1] if isinstance(head, torch.nn.Sequential) else None
    bias = getattr(last, "bias", None)
    # A linear head's bias (C,), or per-member heads' biases (K, C) (TabM): the shift applies to each.
    if not isinstance(bias, torch.nn.Parameter) or bias.shape[-1] != len(weights):
        raise ConfigError(f"class_weight='balanced' needs a model whose head ends in a linear layer; {type(model).__name__} does not.")
    with torch.no_grad():
        bias.sub_(torch.log(torch.as_tensor(np.where(weights > 0, weights, 1.0), dtype=bias.dtype)))


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of the table's content (values and column names), for provenance."""
    h = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _subgroup_columns(frame: pd.DataFrame, source: DataSource) -> list[str]:
    cols = [source.site_column] if source.site_column and source.site_column in frame.columns else []
    cols += [c for c in frame.columns if c.lower() in SUBGROUP_NAMES and c not in cols]
    return cols


@dataclass
class TrainOutcome:
    bundle_dir: Path
    metrics: dict[str, Any]
    report: Path
    notes: list[str]
    n_parameters: int
    result: TrainResult
    n_members: int = 1
    privacy: dict[str, Any] | None = None
    #: ``compare`` rows: each baseline on the test split, paired AUC difference, verdict.
    baselines: list[dict[str, Any]] = field(default_factory=list)
    model_family: str = ""
    selection: dict[str, Any] | None = None


def train_tabular(
    frame: pd.DataFrame, *, spec: TabularSpec, source: DataSource, out_dir: Path, overwrite: bool = False,
    progress: bool = True, console: Console | None = None, ledger: PrivacyLedger | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> TrainOutcome:
    """Preprocess → build → train → evaluate → bundle, for one table.

    With ``spec.train.privacy`` set, training is DP-SGD and ``ledger`` must be given: the run is
    refused when it would exceed the data set's budget, and recorded once the bundle is written.
    """
    console = console or Console(stderr=True)
    check_out_dir(out_dir, overwrite=overwrite)
    dataset_id = frame_fingerprint(frame)
    if spec.train.privacy is not None:
        if ledger is None:
            raise ConfigError("Differentially private training needs a privacy ledger to record the budget it spends.")
        if spec.n_members > 1:
            raise ConfigError(f"An ensemble of {spec.n_members} would spend the privacy budget {spec.n_members} times on the same rows; use --ensemble 1 with --dp-epsilon.")
        ledger.check(dataset_id, spec.train.privacy.target_epsilon, source=source.name)
    if spec.select_model and spec.train.privacy is not None:
        raise ConfigError("--model auto compares the deep model with a logistic regression fitted without privacy; "
                          "with --dp-epsilon choose the model family (--model tabm, mlp or ft).")
    # Values the user declared to mean "missing" are read as missing everywhere below; the
    # featurizer applies the same rule itself (in training and at every later use), and the
    # table (`data`, hashed to recognise training rows) keeps what the user handed in.
    checked = declare_missing(frame, spec=spec, source=source.name)
    quality = assess_quality(checked, target=spec.target, id_columns=[spec.id_column] if spec.id_column else [], source=source.name)
    tgt = prepare_target(frame, target=spec.target, positive_class=spec.positive_class, missing=spec.missing_target, source=source.name)
    features, notes = select_features(checked, spec=spec, source=source.name)
    for col in spec.missing_values:
        if col not in features:
            raise DataError(f"{source.name}: --missing-values '{col}' is not an input column of the model (inputs: {', '.join(features)}).")
    notes += check_leakage(quality, features=features, spec=spec, source=source.name)
    for col in features:  # junk in a numeric column is reported with the file's own row numbers
        if infer_column_kind(frame[col]) == "numeric":
            parse_numeric(frame[col], column=col, source=source.name)
    data = frame.loc[tgt.kept].reset_index(drop=True)
    numeric, categorical, kind_notes = feature_kinds(checked.loc[tgt.kept].reset_index(drop=True), features=features, spec=spec,
                                                     source=source.name, dictionary=source.data_dictionary())
    declared: dict[str, dict[str, Any]] = {c: {"values": v, "n_rows": n} for (c, v), n in zip(spec.missing_values.items(),
                                                                    count_declared_missing(data, spec.missing_values).values())}
    notes = tgt.notes + notes + kind_notes + [declared_missing_note(c, d["values"], d["n_rows"]) for c, d in declared.items()]
    groups = None
    if spec.id_column:
        if data[spec.id_column].isna().any():
            raise DataError(f"{source.name}: ID column '{spec.id_column}' is empty in some rows; every row needs a patient ID.")
        groups = data[spec.id_column].astype(str).to_numpy()
    splits: SplitIndices = split_indices(tgt.codes, groups=groups, seed=spec.seed)
    n_classes = len(tgt.classes)
    pos = tgt.classes.index(tgt.positive_class) if tgt.positive_class is not None else 1
    fitted = fit_tabular(
        data, tgt.codes, train_idx=splits.train, val_idx=splits.val, features=features, n_classes=n_classes,
        positive_index=pos, spec=spec, progress=progress, console=console, groups=groups,
        numeric=numeric, categorical=categorical, callbacks=callbacks,
    )
    if not distributed.is_main():  # under torchrun only rank 0 evaluates and writes
        return TrainOutcome(bundle_dir=Path(out_dir), metrics={}, report=Path(out_dir) / "report.html", notes=notes,
                            n_parameters=count_parameters(fitted.model), result=fitted.result, n_members=spec.n_members)
    test = data.iloc[splits.test]
    y_test = tgt.codes[splits.test]
    deep_family = spec.model
    fitted, baselines, comparators_probs = fit_baselines(fitted, data, tgt.codes, splits, spec=spec, n_classes=n_classes, pos=pos)
    chosen = fitted.model_spec["name"] if fitted.model_spec["name"] == "logistic" else deep_family
    # Test-split evaluation with calibrated probabilities and bootstrap intervals.
    p_test = fitted.predict_proba(test, source="test split")
    evaluation = evaluate_classification(p_test, y_test, classes=tgt.classes, positive_index=pos, n_boot=spec.n_boot, seed=spec.seed)
    raw_test = torch.softmax(torch.from_numpy(fitted.logits(test, source="test split")), dim=1).numpy()
    calibration = {
        "scaler": fitted.scaler.to_dict(), "temperature": fitted.scaler.temperature_,
        "fitted_on": "validation split" if spec.n_members == 1 else f"out-of-fold predictions of {spec.n_members} cross-fitted members",
        "nll_before": fitted.scaler.nll_before_, "nll_after": fitted.scaler.nll_after_,
        "test_ece_uncalibrated": compute_ece(raw_test, y_test, positive_index=pos),
        "test_ece_calibrated": compute_ece(p_test, y_test, positive_index=pos),
    }
    subgroups: list[dict[str, Any]] = []
    for col in _subgroup_columns(test, source):
        for row in subgroup_metrics(p_test, y_test, test[col].astype(str).to_numpy(), classes=tgt.classes, positive_index=pos):
            subgroups.append({"column": col, **row})
    comparators = [compare(p_test, p, y_test, model=chosen, baseline=name, classes=tgt.classes, positive_index=pos,
                           n_boot=spec.n_boot, seed=spec.seed, fitted_on=baselines["fitted_on"])
                   for name, p in comparators_probs.items()]
    for r in comparators:
        if r["name"] == deep_family:
            r["label"] += ", not chosen"
    baselines["comparators"] = comparators
    n_params = count_parameters(fitted.model)
    schema = TaskSchema(
        input_schema=fitted.featurizer.input_schema(),
        output_schema={spec.target: "binary" if n_classes == 2 else "multiclass"},
        classes=tgt.classes, positive_class=tgt.positive_class, id_column=spec.id_column,
    )
    warnings_found = [f"{f.code}: {f.message}" for f in quality.findings if str(f.severity) in ("warning", "error")]
    texts = default_card_texts(schema.kind, spec.target)
    card = ModelCard(
        name=model_title(subject=subject_of(source.data_dictionary(), target=spec.target, fallback=f"{spec.target} ({source.name})"),
                         family=chosen, size=str(spec.size)),
        version="1", created=datetime.now(UTC).isoformat(timespec="seconds"),
        task=schema.kind, target=spec.target, classes=tgt.classes, positive_class=tgt.positive_class,
        intended_use=texts["intended_use"], out_of_scope=texts["out_of_scope"],
        data={
            "source": source.name, "provenance": source.provenance, "licence": source.licence,
            "n_rows": int(len(data)), "n_train": int(len(splits.train)), "n_val": int(len(splits.val)), "n_test": int(len(splits.test)),
            "features": features, "inputs": input_descriptions(features, source.data_dictionary()), "id_column": spec.id_column, "sha256": dataset_id,
            "categorical": categorical, "allowed_leaky_columns": list(spec.allow_leaky),
            "missing_values": {c: f"{', '.join(map(str, d['values']))} treated as missing in {d['n_rows']} rows" for c, d in declared.items()},
            "missing_rate": fitted.featurizer.missing_rate_, "split": "stratified" + (f", grouped by '{spec.id_column}'" if spec.id_column else "") + f", seed {spec.seed}",
        },
        model={"family": chosen, "size": spec.size, "n_parameters": n_params,
               "ensemble_members": 1 if chosen == "logistic" else spec.n_members,
               "hyperparameters": fitted.model_spec["params"],
               **({"selection": baselines["selection"]} if baselines.get("selection") else {})},
        training={**spec.train.to_dict(), "best_epoch": fitted.result.best_epoch, "epochs_run": len(fitted.result.history),
                  "stopped_early": fitted.result.stopped_early, "seconds": round(fitted.result.seconds, 2),
                  **({"of_model": f"{deep_family} (the deep candidate, not deployed; the deployed logistic regression "
                                  "is fitted in one step)"} if chosen == "logistic" else {})},
        metrics=evaluation, calibration=calibration,
        baselines={k: v for k, v in baselines.items() if k != "logistic_state"},
        limitations=[
            "Evaluated on a held-out split of the same source; performance at another site or time may differ.",
            "Missing values are imputed with training medians (with missingness indicators); many imputed values lower reliability.",
            *notes, *warnings_found[:10],
            *(["Trained with DP-SGD; the calibration temperature (one number) and the reported test metrics "
               "use held-out rows without privacy noise."] if fitted.result.privacy else []),
            *(["Under DP-SGD the numeric embeddings' bins are fixed standard-normal quantiles of the standardised "
               "inputs, not quantiles of the training rows (those would reveal training values)."]
              if fitted.result.privacy and chosen == "tabm" else []),
        ],
        ethical_considerations=texts["ethical_considerations"],
        privacy=fitted.result.privacy or {},
    )
    deployed, history_note = deployed_words(card.model)
    with tempfile.TemporaryDirectory() as tmp:
        report_tmp = write_report(
            Path(tmp) / "report.html", title=f"medassist diagnosis model: {spec.target} ({source.name})",
            evaluation=evaluation, y_prob=p_test, y_true=y_test, classes=tgt.classes, positive_index=pos,
            model_card=card, history=fitted.result.history, subgroups=subgroups or None,
            comparison={"model_label": model_words(chosen)[1], "comparators": comparators,
                        "notes": [f"{k}: not fitted ({v})" for k, v in (baselines.get("not_fitted") or {}).items()]},
            deployed=deployed, history_note=history_note,
        )
        report_bytes = Path(report_tmp).read_bytes()
    bundle = ModelBundle(
        model=fitted.model, model_spec=fitted.model_spec, featurizer=fitted.featurizer, schema=schema,
        calibration=calibration, metrics={"test": evaluation, "subgroups": subgroups, "baselines": comparators}, model_card=card.to_dict(),
        model_card_markdown=card.to_markdown(), history=fitted.result.history, train_config=spec.train.to_dict(),
        meta={"created": card.created, "data_source": source.name, "data_sha256": card.data["sha256"], "task": "diagnosis-tabular",
              "allowed_leaky_columns": list(spec.allow_leaky), "training_rows": TRAINING_ROWS_FILE,
              "baselines": BASELINES_FILE, "missing_values": spec.missing_values},
        dictionary=source.data_dictionary().to_dict() or None,
    )
    out = save_bundle(bundle, out_dir, overwrite=overwrite, attachments={
        "report.html": report_bytes, "quality.json": json.dumps(quality.to_dict(), indent=1).encode(),
        "splits.json": json.dumps(splits.to_dict()).encode(),
        TRAINING_ROWS_FILE: json.dumps(_training_rows(data, splits, features=features, spec=spec)).encode(),
        BASELINES_FILE: json.dumps({
            "what": "simple baselines fitted on the training split; logistic regression as plain coefficients over the "
                    "featurizer's output (re-applied by evaluate); gradient-boosted trees not stored",
            "deployed": chosen, "logistic": baselines.get("logistic_state"),
            "feature_names": fitted.featurizer.feature_names_, "hgb": {"stored": False, "why": HGB_NOT_STORED},
        }, indent=1).encode(),
    })
    privacy = None
    if fitted.result.privacy is not None and ledger is not None:
        p = fitted.result.privacy
        ledger.record(dataset_id, epsilon=p["epsilon"], delta=p["delta"], source=source.name, bundle=str(out))
        privacy = {**p, "ledger_spent": ledger.spent(dataset_id), "ledger_budget": ledger.total_epsilon}
    return TrainOutcome(bundle_dir=out, metrics=evaluation, report=out / "report.html", notes=notes, n_parameters=n_params, result=fitted.result,
                        n_members=spec.n_members, privacy=privacy, baselines=comparators, model_family=chosen,
                        selection=baselines.get("selection"))


def _training_rows(data: pd.DataFrame, splits: SplitIndices, *, features: list[str], spec: TabularSpec) -> dict[str, Any]:
    """Hashes (never values) of the rows the model learnt from or was tuned on (train + val)."""
    seen = data.iloc[np.sort(np.concatenate([splits.train, splits.val]))]
    columns = [*features, spec.target]
    return {
        "what": "SHA-256 (16 hex digits) of the training and validation rows; no values are stored",
        "columns": columns, "rows": sorted(set(row_hashes(seen, columns))),
        "id_column": spec.id_column, "ids": sorted(set(id_hashes(seen[spec.id_column]))) if spec.id_column else None,
    }


# --------------------------------------------------------------------------------------------
# Using a bundle


def _bundle_probs(bundle: ModelBundle, frame: pd.DataFrame, *, source: str) -> tuple[np.ndarray, np.ndarray, Any, np.ndarray | None]:
    """Calibrated probabilities (N, C), features, the FeatureMatrix and, for an ensemble, each
    member's probabilities (K, N, C) from the same single pass over the members."""
    fm = bundle.featurizer.transform(frame, source=source)
    x = torch.from_numpy(fm.values)
    members = None
    with torch.no_grad():
        if isinstance(bundle.model, Ensemble):
            member_probs = bundle.model.member_probabilities(x)
            logits = torch.log(member_probs.mean(dim=0)).numpy()  # what Ensemble.forward returns
            members = member_probs.numpy()
        else:
            logits = bundle.model(x).numpy()
    probs = TemperatureScaler.from_dict(bundle.calibration["scaler"]).transform(logits)
    return probs, fm.values, fm, members


def predict_table(bundle: ModelBundle, frame: pd.DataFrame, *, source: str, explain: bool = True, top_k: int = 3) -> pd.DataFrame:
    """Every input row, in order: prediction, ``prob_<class>``, imputation counts, top factors."""
    if frame.empty:
        raise DataError(f"{source}: no rows to predict.")
    probs, x, fm, members = _bundle_probs(bundle, frame, source=source)
    schema = bundle.schema
    if len(schema.classes) == 2:
        pred_idx = (probs[:, schema.positive_index] >= 0.5).astype(int)
        pred_idx = np.where(pred_idx == 1, schema.positive_index, 1 - schema.positive_index)
    else:
        pred_idx = probs.argmax(axis=1)
    out = pd.DataFrame(index=range(len(frame)))
    if schema.id_column and schema.id_column in frame.columns:
        out[schema.id_column] = frame[schema.id_column].to_numpy()
    out["prediction"] = [schema.classes[i] for i in pred_idx]
    for j, c in enumerate(schema.classes):
        out[f"prob_{c}"] = np.round(probs[:, j], SCORE_DECIMALS)
    if members is not None:
        # Disagreement between members: the standard deviation of their probability for the
        # predicted class (0 when they agree); large values mean "do not lean on this one".
        out["member_sd"] = np.round(members[:, np.arange(len(frame)), pred_idx].std(axis=0), SCORE_DECIMALS)
    out["n_imputed"] = fm.n_imputed
    out["n_unknown_categories"] = fm.n_unknown
    out["unknown_categories"] = ["; ".join(r) for r in fm.unknown_categories]
    out["n_out_of_range"] = fm.n_out_of_range
    out["out_of_range"] = ["; ".join(r) for r in fm.out_of_range]
    out["warnings"] = "; ".join(bundle_warnings(bundle))
    if explain:
        attr = integrated_gradients(bundle.model, x, pred_idx)
        grouped, names = group_attributions(attr, bundle.featurizer.feature_groups_)
        tops = top_attributions(grouped, names, k=top_k)
        for r in range(top_k):
            out[f"factor_{r + 1}"] = [t[r][0] if len(t) > r else "" for t in tops]
            out[f"factor_{r + 1}_weight"] = [round(t[r][1], 4) if len(t) > r else np.nan for t in tops]
    return out


def evaluate_table(
    bundle: ModelBundle, frame: pd.DataFrame, *, source: str, n_boot: int = 1000, seed: int = 0, report: Path | None = None,
    include_training_rows: bool = False,
) -> dict[str, Any]:
    """Metrics with 95% intervals of a bundle on a labelled table (and an HTML report if asked).

    Rows the model was trained on (training or validation split, recognised by patient ID or
    by a hash of their inputs and outcome) are left out unless ``include_training_rows``; the
    result says how many: ``n_rows``, ``n_seen_in_training`` (None when the bundle cannot
    tell), ``n_evaluated``, and ``warnings``.
    """
    schema = bundle.schema
    if schema.target not in frame.columns:
        raise DataError(f"{source}: target column '{schema.target}' not found; evaluation needs the true outcome in every row.")
    labels = _label_strings(frame[schema.target])
    if labels.isna().any():
        rows = np.flatnonzero(labels.isna().to_numpy())
        raise DataError(f"{source}: target '{schema.target}' is missing in {len(rows)} row(s) (first: row {rows[0] + 1}); evaluation needs every outcome.")
    unknown = sorted(set(labels) - set(schema.classes))
    if unknown:
        raise DataError(f"{source}: target '{schema.target}' has value(s) {unknown} the model does not know; expected one of {schema.classes}.")
    y = labels.map({c: i for i, c in enumerate(schema.classes)}).to_numpy(dtype=np.int64)
    seen, how = seen_in_training(bundle, frame)
    n_rows = len(frame)
    warnings_: list[str] = []
    if seen is None:
        keep = np.ones(n_rows, dtype=bool)
        note = f"{n_rows} patients evaluated; whether the model saw them in training is unknown ({how})"
        warnings_.append(f"cannot tell which rows the model was trained on ({how}); if they are among these, the figures are optimistic")
    elif include_training_rows:
        keep = np.ones(n_rows, dtype=bool)
        note = f"{n_rows} patients evaluated, {int(seen.sum())} of them seen in training (included on request)"
        if seen.any():
            warnings_.append(f"{int(seen.sum())} of {n_rows} rows were seen in training (matched by {how}) and are included "
                             "(--include-training-rows): these figures are optimistic")
    else:
        if seen.all():
            raise DataError(f"{source}: all {n_rows} rows were seen in training (matched by {how}); metrics on them would "
                            "overstate performance. Evaluate on rows the model never saw, or pass --include-training-rows "
                            "to evaluate them anyway (labelled as seen).")
        keep = ~seen
        note = f"{int(keep.sum())} patients the model never saw" + (
            f"; {int(seen.sum())} of the {n_rows} rows were seen in training and excluded" if seen.any() else "")
    sub = frame.loc[keep] if not keep.all() else frame
    y = y[keep]
    probs, _, fm, _ = _bundle_probs(bundle, sub, source=source)
    result = evaluate_classification(probs, y, classes=schema.classes, positive_index=schema.positive_index, n_boot=n_boot, seed=seed)
    warnings_ += bundle_warnings(bundle)
    result.update({
        "n_rows": n_rows, "n_seen_in_training": None if seen is None else int(seen.sum()), "n_evaluated": int(keep.sum()),
        "seen_matched_by": how if seen is not None else None,
        "rows_evaluated": note, "warnings": warnings_,
    })
    result["n_rows_with_imputed_values"] = int((fm.n_imputed > 0).sum())
    declared = getattr(bundle.featurizer, "missing_values", None) or {}
    result["declared_missing"] = [declared_missing_note(c, declared[c], n) for c, n in count_declared_missing(sub, declared).items()]
    result["baselines"], result["baseline_notes"] = _evaluate_baselines(bundle, fm.values, probs, y, n_boot=n_boot, seed=seed)
    result["bundle"] = str(bundle.path) if bundle.path else None
    if report is not None:
        deployed, history_note = deployed_words({"family": _family(bundle), **(bundle.model_card.get("model") or {})})
        write_report(
            Path(report), title=f"medassist evaluation: {schema.target} on {source}", evaluation=result, y_prob=probs,
            y_true=y, classes=schema.classes, positive_index=schema.positive_index,
            model_card=ModelCard.from_dict(bundle.model_card), history=bundle.history, rows_note=note, warnings=warnings_,
            comparison={"model_label": model_words(_family(bundle))[1], "comparators": result["baselines"],
                        "notes": result["baseline_notes"]},
            deployed=deployed, history_note=history_note,
        )
        result["report"] = str(report)
    return result


def deployed_words(model: dict[str, Any]) -> tuple[str, str | None]:
    """What a report says about the deployed model, from the model card's ``model`` section:
    ``deployed`` (its name, and why when ``--model auto`` chose it) and, when the deployed model
    is the logistic regression, the ``history_note``: the training curves kept with the bundle are
    the deep candidate's, which was not deployed (a logistic regression has no epochs)."""
    family = str(model.get("family") or "model")
    selection = model.get("selection") or {}
    members = int(model.get("ensemble_members") or 1)
    deployed = ("Logistic regression" if family == "logistic" else model_words(family)[1]) + (f", an ensemble of {members} cross-fitted members" if members > 1 else "")
    if selection.get("why"):
        deployed += f", chosen by --model auto ({selection['why']})"
    if family != "logistic":
        return deployed, None
    candidate = next((k for k in (selection.get("validation_auc") or {}) if k != "logistic"), "the deep model")
    return deployed, (f"the deployed model is the logistic regression, fitted in one step without epochs; these curves "
                      f"are the training of the deep model ({candidate}) it was compared with on the validation split "
                      "and not chosen.")


def _family(bundle: ModelBundle) -> str:
    return str((bundle.model_card.get("model") or {}).get("family") or bundle.model_spec.get("name", "model"))


def _evaluate_baselines(
    bundle: ModelBundle, x: np.ndarray, probs: np.ndarray, y: np.ndarray, *, n_boot: int, seed: int,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The stored logistic regression on the same rows (same featurizer output, same resamples),
    and why any other comparator is not shown."""
    path = Path(bundle.path) / BASELINES_FILE if bundle.path else None
    if path is None or not path.is_file():
        return [], ["no baselines: this bundle was written before baselines were stored with it"]
    rec = json.loads(path.read_text())
    notes = [f"gradient-boosted trees: not shown ({rec.get('hgb', {}).get('why', HGB_NOT_STORED)})"]
    state = rec.get("logistic")
    family = _family(bundle)
    if family == "logistic":
        return [], ["the deployed model is the logistic regression (chosen by --model auto); the deep model it was "
                    "compared with is not stored, see the model card for its test figures", *notes[:1]]
    if not state:
        return [], ["no logistic baseline stored with this bundle (see the model card for why)", *notes]
    if rec.get("feature_names") != list(bundle.featurizer.feature_names_):
        return [], ["the stored logistic baseline does not match this bundle's featurizer; not shown", *notes]
    schema = bundle.schema
    row = compare(probs, softmax(logistic_logits(state, x)), y, model=family, baseline="logistic", classes=schema.classes,
                  positive_index=schema.positive_index, n_boot=n_boot, seed=seed, fitted_on="the training split of the bundle")
    return [row], notes
