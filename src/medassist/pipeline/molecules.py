"""Molecular property models (screening): molecules → standardise → split (random or
Bemis–Murcko scaffold, seeded) → featurize (fitted on training molecules only) → train (the one
Trainer; K members for an ensemble) → evaluate (bootstrap CIs) → bundle with the applicability
domain (training fingerprints as packed bits in safetensors).

This module wires the stages; each lives with its kind: splits in ``data.splits``, masked losses
in ``training.losses``, the applicability domain in ``evaluation.applicability``, metrics, model
card and report in ``evaluation.molecules``.

The CLI and the service call ``assistants.screening``; it calls these functions. Library
screening (streaming, worker processes) lives in ``pipeline.screen``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from torch.utils.data import Dataset

from medassist.data.io.molecules import MoleculeSet, Skipped, read_molecule_table, summarize_skipped
from medassist.data.splits import SplitKind, make_split
from medassist.evaluation.applicability import (
    AD_FILE,
    ApplicabilityDomain,
    fit_applicability_domain,
    summarize_evaluation,
    summarize_test_split,
)
from medassist.evaluation.molecules import evaluate_predictions, headline, molecule_card, molecule_report
from medassist.exceptions import BundleError, ConfigError, DataError, TrainingError
from medassist.featurizers.molecules import MoleculeFeatures, MoleculeFeaturizer
from medassist.models import build_model, count_parameters
from medassist.models.molecules import MoleculeEnsemble, make_batch, mol_ensemble_spec
from medassist.options import ModelSize, look_up_option
from medassist.registry.bundle import ModelBundle, check_out_dir, save_bundle
from medassist.training import TrainConfig, Trainer, TrainResult
from medassist.training.losses import masked_bce, masked_mse
from medassist.types import Batch, TaskSchema
from medassist.validation import check_number

TASK = "screening"
POSITIVE_NAMES = ("1", "true", "yes", "active", "positive", "pos", "bbb+", "+", "permeable")


# --------------------------------------------------------------------------- targets


@dataclass
class Targets:
    """Target matrix (N, T) float (NaN = not measured), one kind for all tasks, classes."""

    values: np.ndarray
    names: list[str]
    kind: str  # "regression" | "binary"
    classes: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def classification(self) -> bool:
        return self.kind == "binary"


def _is_numeric(s: pd.Series) -> bool:
    present = s.dropna()
    if pd.api.types.is_numeric_dtype(s):
        return True
    return len(present) > 0 and pd.to_numeric(present, errors="coerce").notna().mean() >= 0.9


def prepare_targets(frame: pd.DataFrame, targets: list[str], *, positive_class: str | None, source: str,
                    rows: np.ndarray | None = None, kind: str | None = None, classes: dict[str, list[str]] | None = None) -> Targets:
    """Encode target columns: regression values, or 0/1 for a two-class column. A missing value
    stays missing (masked in the loss), never a default."""
    rows = np.arange(1, len(frame) + 1) if rows is None else rows
    for t in targets:
        if t not in frame.columns:
            raise DataError(f"{source}: target column '{t}' not found. The table has: {', '.join(map(str, frame.columns[:30]))}.")
    kinds, values, cls, notes = [], [], {}, []
    for t in targets:
        s = frame[t]
        labels = s.map(lambda v: v if pd.isna(v) else str(v).strip())
        n_distinct = labels.dropna().nunique()
        want = kind or ("binary" if n_distinct == 2 or not _is_numeric(s) else "regression")
        if want == "regression":
            num = pd.to_numeric(s, errors="coerce")
            junk = num.isna() & s.notna() & (labels != "")
            if junk.any():
                pos = np.flatnonzero(junk.to_numpy())
                ex = ", ".join(f"row {rows[p]}: {s.iloc[p]!r}" for p in pos[:3])
                raise DataError(f"{source}: target '{t}' is numeric but {len(pos)} value(s) are not numbers ({ex}); expected a number or an empty cell.")
            values.append(num.to_numpy(dtype=float))
        else:
            if classes and t in classes:
                names = classes[t]
                unknown = sorted(set(labels.dropna()) - set(names))
                if unknown:
                    raise DataError(f"{source}: target '{t}' has value(s) {unknown} the model does not know; expected one of {names}.")
            else:
                present = sorted(labels.dropna().unique().tolist())
                if len(present) != 2:
                    raise DataError(f"{source}: target '{t}' has {len(present)} distinct values; a screening classifier needs exactly two "
                                    "(or pass a numeric column for regression).")
                if positive_class is not None and positive_class in present:
                    positive = positive_class
                else:
                    if positive_class is not None:
                        raise ConfigError(f"--positive-class '{positive_class}' is not a value of '{t}'; its values are {present}.")
                    lowered = {c.lower(): c for c in present}
                    named = [lowered[n] for n in POSITIVE_NAMES if n in lowered]
                    positive = named[0] if named else labels.value_counts().idxmin()
                    if not named:
                        notes.append(f"'{t}': positive class '{positive}' chosen as the minority class; pass --positive-class to change it.")
                names = [c for c in present if c != positive] + [positive]
            cls[t] = names
            values.append(labels.map(lambda v, names=names: np.nan if pd.isna(v) else float(names.index(v))).to_numpy(dtype=float))
        kinds.append(want)
        n_missing = int(np.isnan(values[-1]).sum())
        if n_missing:
            notes.append(f"'{t}': {n_missing} molecule(s) without a value; masked in training and evaluation, never filled in.")
    if len(set(kinds)) > 1:
        raise DataError(f"{source}: targets {targets} mix regression and classification; train one model per kind.")
    return Targets(values=np.column_stack(values), names=list(targets), kind=kinds[0], classes=cls, notes=notes)


def deduplicate(smiles: list[str], y: np.ndarray, *, classification: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Merge molecules with the same canonical SMILES: regression values are averaged,
    agreeing labels kept once; conflicting labels are set missing for that task.

    Returns (kept positions, merged targets for those positions, notes).
    """
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(smiles):
        groups.setdefault(s, []).append(i)
    keep, merged, n_dup, n_conflict = [], [], 0, 0
    for idx in groups.values():
        keep.append(idx[0])
        if len(idx) == 1:
            merged.append(y[idx[0]])
            continue
        n_dup += len(idx) - 1
        block = y[idx]
        row = np.full(y.shape[1], np.nan)
        for t in range(y.shape[1]):
            v = block[:, t][~np.isnan(block[:, t])]
            if len(v) == 0:
                continue
            if classification and len(np.unique(v)) > 1:
                n_conflict += 1
                continue
            row[t] = v.mean()
        merged.append(row)
    order = np.argsort(keep)
    notes = []
    if n_dup:
        notes.append(f"{n_dup} duplicate molecule(s) (same standardised structure) merged into their first occurrence"
                     + (" (values averaged)." if not classification else "."))
    if n_conflict:
        notes.append(f"{n_conflict} duplicated molecule label(s) disagreed between copies and were set missing (not guessed).")
    return np.asarray(keep)[order], np.asarray(merged, dtype=float).reshape(-1, y.shape[1])[order], notes


# --------------------------------------------------------------------------- training


@dataclass(frozen=True, kw_only=True)
class ScreeningSpec:
    """Everything that decides how a molecular property model is built and trained."""

    targets: tuple[str, ...]
    smiles_column: str
    model: str = "dmpnn"
    descriptors: str | None = "fast"
    size: ModelSize = ModelSize.SMALL
    seed: int = 0
    split: str = "random"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    n_members: int = 1
    id_column: str | None = None
    positive_class: str | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    n_boot: int = 1000
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", look_up_option(self.size, ModelSize, name="model size"))
        owner = "ScreeningSpec"
        if self.model not in ("dmpnn", "fpmlp"):
            raise ConfigError(f"The 'model' parameter of {owner} must be 'dmpnn' or 'fpmlp'. Got {self.model!r} instead.")
        check_number(self.n_members, name="n_members", owner=owner, low=1, high=20, integer=True)
        look_up_option(self.split, SplitKind, name="split")
        if not self.targets:
            raise ConfigError(f"{owner} needs at least one target column.")


class MoleculeDataset(Dataset):
    """Featurized molecules and targets (N, T) float32 (NaN = missing) for the Trainer."""

    def __init__(self, *, features: MoleculeFeatures, targets: np.ndarray, index: np.ndarray) -> None:
        self.features, self.index = features, np.asarray(index, dtype=np.int64)
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.index)

    def get_batch(self, indices: torch.Tensor) -> Batch:
        pos = self.index[indices.numpy()]
        # types.Batch.inputs is annotated Tensor though documented as "whatever the model's forward takes".
        return Batch(inputs=make_batch(self.features, pos), target=self.targets[pos])


def _auc_metric(out: np.ndarray, y: np.ndarray) -> float:
    from medassist.evaluation.metrics import compute_roc_auc

    aucs = []
    for t in range(y.shape[1]):
        m = ~np.isnan(y[:, t])
        yt = y[m, t].astype(int)
        if len(np.unique(yt)) < 2:
            continue
        p = 1 / (1 + np.exp(-out[m, t]))
        aucs.append(compute_roc_auc(np.column_stack([1 - p, p]), yt))
    return float(np.mean(aucs)) if aucs else float("nan")


@dataclass
class FittedScreening:
    featurizer: MoleculeFeaturizer
    model: torch.nn.Module
    model_spec: dict[str, Any]
    classification: bool
    target_mean: np.ndarray
    target_std: np.ndarray
    result: TrainResult
    uncertainty_scale: np.ndarray | None = None
    member_results: list[TrainResult] = field(default_factory=list)

    def predict(self, features: MoleculeFeatures, *, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray | None]:
        """(predictions (N, T) in target units / probabilities, member spread (N, T) or None)."""
        return predict_features(self.model, features, classification=self.classification, mean=self.target_mean,
                                std=self.target_std, batch_size=batch_size, uncertainty_scale=self.uncertainty_scale)


@torch.inference_mode()
def predict_features(model: torch.nn.Module, features: MoleculeFeatures, *, classification: bool, mean: np.ndarray, std: np.ndarray,
                     batch_size: int = 512, uncertainty_scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    model.eval()
    preds, spreads = [], []
    for s in range(0, len(features), batch_size):
        x = make_batch(features, np.arange(s, min(s + batch_size, len(features))))
        if isinstance(model, MoleculeEnsemble):
            members = model.member_outputs(x).numpy()  # (K, B, T): probabilities or standardised values
            preds.append(members.mean(axis=0))
            spreads.append(members.std(axis=0, ddof=1) if members.shape[0] > 1 else np.full(members.shape[1:], np.nan))
        else:
            out = model(x).numpy()
            preds.append(1 / (1 + np.exp(-out)) if classification else out)
    pred = np.concatenate(preds) if preds else np.zeros((0, len(mean)))
    spread = np.concatenate(spreads) if spreads else None
    if not classification:
        pred = pred * std + mean
        if spread is not None:
            spread = spread * std * (1.0 if uncertainty_scale is None else uncertainty_scale)
    return pred, spread


def fit_screening(
    mols: list[Any], y: np.ndarray, *, train_idx: np.ndarray, val_idx: np.ndarray, spec: ScreeningSpec, classification: bool,
    progress: bool = False, console: Console | None = None, features: MoleculeFeatures | None = None,
    featurizer: MoleculeFeaturizer | None = None,
) -> tuple[FittedScreening, MoleculeFeatures]:
    """Fit the featurizer (training molecules only) and K networks (Trainer; member k uses seed
    ``seed + k``); returns the fitted model and the features of every molecule."""
    structure = "graph" if spec.model == "dmpnn" else "morgan"
    if featurizer is None:
        featurizer = MoleculeFeaturizer(structure=structure, descriptors=spec.descriptors).fit([mols[i] for i in train_idx])
    if features is None:
        features = featurizer.transform(mols)
    y = np.asarray(y, dtype=float)
    if classification:
        mean, std = np.zeros(y.shape[1]), np.ones(y.shape[1])
    else:
        mean = np.nanmean(y[train_idx], axis=0)
        std = np.nanstd(y[train_idx], axis=0)
        std = np.where(std > 1e-12, std, 1.0)
    ys = (y - mean) / std
    for t in range(y.shape[1]):
        if np.isnan(ys[train_idx, t]).all():
            raise DataError(f"Target {spec.targets[t]!r} has no value in the training split.")
    dims = {"n_tasks": y.shape[1], "n_descriptors": featurizer.n_descriptors}
    if spec.model == "fpmlp":
        dims["n_bits"] = featurizer.n_bits
    train_data = MoleculeDataset(features=features, targets=ys, index=train_idx)
    val_data = MoleculeDataset(features=features, targets=ys, index=val_idx)
    loss = masked_bce if classification else masked_mse
    members, results = [], []
    member_spec: dict[str, Any] = {}
    for k in range(spec.n_members):
        cfg = TrainConfig.from_dict({**spec.train.to_dict(), "seed": spec.seed + k})
        torch.manual_seed(spec.seed + k)
        model, member_spec = build_model(spec.model, size=spec.size, overrides=spec.overrides, **dims)
        trainer = Trainer(config=cfg, progress=progress, console=console)
        results.append(trainer.fit(model, train_data=train_data, val_data=val_data, loss_fn=loss,
                                   metric_fn=_auc_metric if classification else None))
        members.append(model)
    if spec.n_members == 1:
        model, model_spec = members[0], member_spec
    else:
        model_spec = mol_ensemble_spec(member_spec, spec.n_members, classification=classification)
        model = MoleculeEnsemble(member=member_spec, n_members=spec.n_members, classification=classification)
        for dst, src in zip(model.members, members):
            dst.load_state_dict(src.state_dict())
    model.eval()
    result = results[0] if len(results) == 1 else TrainResult(
        history=results[0].history, best_epoch=int(np.median([r.best_epoch for r in results])),
        best_score=float(np.mean([r.best_score for r in results])), stopped_early=all(r.stopped_early for r in results),
        seconds=float(sum(r.seconds for r in results)))
    fitted = FittedScreening(featurizer=featurizer, model=model, model_spec=model_spec, classification=classification,
                             target_mean=mean, target_std=std, result=result, member_results=results)
    if spec.n_members > 1 and not classification:
        # Ensemble spread is usually too narrow; one factor per task, fitted on validation
        # molecules, makes (y - mean) / sd have unit variance there.
        val_feat = _subset(features, val_idx)
        pred, sd = fitted.predict(val_feat)
        if sd is None:  # an ensemble always reports its members' spread
            raise TrainingError(f"the {spec.n_members}-member ensemble returned no spread to calibrate its uncertainty with.")
        z2 = ((y[val_idx] - pred) / np.where(sd > 1e-12, sd, np.nan)) ** 2
        fitted.uncertainty_scale = np.sqrt(np.nanmean(z2, axis=0))
        fitted.uncertainty_scale = np.where(np.isfinite(fitted.uncertainty_scale), fitted.uncertainty_scale, 1.0)
    return fitted, features


def _subset(features: MoleculeFeatures, idx: np.ndarray) -> MoleculeFeatures:
    from medassist.featurizers.molecules import GraphArrays, SparseCounts

    idx = np.asarray(idx, dtype=np.int64)
    s = features.structure
    sub: GraphArrays | SparseCounts
    if isinstance(s, GraphArrays):
        g = s.select(idx)
        na = np.bincount(g["atom_batch"], minlength=len(idx))
        ne = (s.edge_ptr[idx + 1] - s.edge_ptr[idx])
        starts = np.repeat(np.concatenate([[0], np.cumsum(na)[:-1]]), ne)
        sub = GraphArrays(atom_codes=g["atom_codes"], atom_mass=g["atom_mass"], edge_index=(g["edge_index"] - starts).astype(np.int32),
                          bond_codes=g["bond_codes"], atom_ptr=np.concatenate([[0], np.cumsum(na)]), edge_ptr=np.concatenate([[0], np.cumsum(ne)]))
    else:
        i, c, o = s.select(idx)
        sub = SparseCounts(i.astype(np.int32), c, np.concatenate([o, [len(i)]]))
    desc = None if features.descriptors is None else features.descriptors[idx]
    return MoleculeFeatures(sub, desc, features.n_imputed[idx])


# --------------------------------------------------------------------------- train → bundle


@dataclass
class ScreeningOutcome:
    bundle_dir: Path
    metrics: dict[str, Any]
    notes: list[str]
    n_parameters: int
    result: TrainResult
    kind: str
    n_members: int
    skipped: list[Skipped]
    seconds: float = 0.0


def train_screening(frame: pd.DataFrame, *, spec: ScreeningSpec, source: Any, out_dir: Path, overwrite: bool = False,
                    progress: bool = False, console: Console | None = None, molblocks: list[str] | None = None) -> ScreeningOutcome:
    """Standardise, split, train, evaluate on the test split and write a screening bundle."""
    import time

    t0 = time.process_time()
    check_out_dir(Path(out_dir), overwrite=overwrite)
    mset: MoleculeSet = read_molecule_table(frame, smiles_column=None if molblocks else spec.smiles_column, source=source.name,
                                            molblocks=molblocks)
    notes = []
    if mset.skipped:
        notes.append(f"{len(mset.skipped)} molecule(s) could not be used and were skipped: " + "; ".join(summarize_skipped(mset.skipped)))
    if len(mset) < 10:
        raise DataError(f"{source.name}: only {len(mset)} usable molecule(s); a property model needs at least 10.")
    targets = prepare_targets(mset.frame, list(spec.targets), positive_class=spec.positive_class, source=source.name, rows=mset.rows)
    notes += targets.notes
    keep, y, dup_notes = deduplicate(mset.smiles, targets.values, classification=targets.classification)
    notes += dup_notes
    no_label = np.isnan(y).all(axis=1)
    if no_label.any():
        notes.append(f"{int(no_label.sum())} molecule(s) have no target value at all and were not used.")
        keep, y = keep[~no_label], y[~no_label]
    mols = [mset.mols[i] for i in keep]
    smiles = [mset.smiles[i] for i in keep]
    splits = make_split(spec.split, mols, seed=spec.seed, fractions=spec.fractions)
    fitted, features = fit_screening(mols, y, train_idx=splits.train, val_idx=splits.val, spec=spec,
                                     classification=targets.classification, progress=progress, console=console)
    test_feat = _subset(features, splits.test)
    pred, spread = fitted.predict(test_feat)
    y_test = y[splits.test]
    metrics = evaluate_predictions(pred, y_test, names=targets.names, kind=targets.kind, classes=targets.classes, n_boot=spec.n_boot, seed=spec.seed)
    # Applicability domain: nearest-training-neighbour similarity of held-out molecules.
    held = np.concatenate([splits.val, splits.test])
    ad, held_sim = fit_applicability_domain([mols[i] for i in splits.train], [mols[i] for i in held])
    ad_info = summarize_test_split(held_sim[len(splits.val):], ad.threshold, pred=pred, y=y_test, names=targets.names,
                                   kind=targets.kind, spread=spread)
    n_params = count_parameters(fitted.model)
    schema = TaskSchema(
        input_schema={spec.smiles_column: "smiles"}, output_schema={t: targets.kind for t in targets.names},
        classes=targets.classes.get(targets.names[0], []) if targets.classification else [],
        positive_class=targets.classes[targets.names[0]][1] if targets.classification else None, id_column=spec.id_column,
        extras={"smiles_column": spec.smiles_column, "targets": targets.names, "kind": targets.kind, "classes": targets.classes,
                "model": spec.model, "descriptors": spec.descriptors},
    )
    calibration = {"target_mean": fitted.target_mean.tolist(), "target_std": fitted.target_std.tolist(),
                   "uncertainty_scale": None if fitted.uncertainty_scale is None else fitted.uncertainty_scale.tolist(),
                   "uncertainty": "ensemble standard deviation" + (" scaled to unit z-variance on the validation split" if fitted.uncertainty_scale is not None else "")
                   if spec.n_members > 1 else "none (single model: train with --ensemble K for an uncertainty)",
                   "applicability_domain": ad_info}
    data = {"source": source.name, "provenance": getattr(source, "provenance", "user-supplied file"), "licence": getattr(source, "licence", "unknown"),
            "n_rows": int(len(frame)), "n_molecules": int(len(mols)), "n_skipped": len(mset.skipped), "n_train": int(len(splits.train)),
            "n_val": int(len(splits.val)), "n_test": int(len(splits.test)), "split": f"{spec.split}, seed {spec.seed}, fractions {list(spec.fractions)}",
            "smiles_column": spec.smiles_column, "targets": targets.names,
            "sha256": hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()}
    model_info = {"family": spec.model, "size": spec.size, "descriptors": spec.descriptors or "none", "n_parameters": n_params,
                  "ensemble_members": spec.n_members, "hyperparameters": fitted.model_spec["params"] if spec.n_members == 1 else fitted.model_spec["params"]["member"]["params"]}
    training = {**spec.train.to_dict(), "best_epoch": fitted.result.best_epoch, "epochs_run": len(fitted.result.history),
                "stopped_early": fitted.result.stopped_early, "seconds": round(fitted.result.seconds, 2)}
    card, card_md = molecule_card(family=spec.model, size=spec.size, names=targets.names, classification=targets.classification,
                                  classes=targets.classes, source=source, data=data, model=model_info, training=training, metrics=metrics,
                          calibration={k: v for k, v in calibration.items() if k != "applicability_domain"},
                          limitations=["Evaluated on a held-out split of the same source; molecules unlike the training set "
                                       "(flagged out of domain) are predicted less reliably.", *notes])
    title = f"medassist screening model: {', '.join(targets.names)} ({source.name})"
    report = molecule_report(title, metrics, pred, y_test, names=targets.names, classification=targets.classification,
                             card_md=card_md, ad=ad_info, history=fitted.result.history)
    bundle = ModelBundle(
        model=fitted.model, model_spec=fitted.model_spec, featurizer=fitted.featurizer, schema=schema, calibration=calibration,
        metrics={"test": metrics, "headline": headline(metrics, targets.kind)}, model_card=card, model_card_markdown=card_md,
        history=fitted.result.history, train_config=spec.train.to_dict(),
        meta={"created": card["created"], "data_source": source.name, "data_sha256": data["sha256"], "task": TASK},
    )
    split_json = {**splits.to_dict(), "smiles": smiles}
    skipped_json = [{"row": int(s.row), "input": s.text[:200], "reason": s.reason} for s in mset.skipped]
    out = save_bundle(bundle, Path(out_dir), overwrite=overwrite, attachments={
        AD_FILE: ad.to_bytes(), "report.html": report, "splits.json": json.dumps(split_json).encode(),
        "skipped.json": json.dumps(skipped_json, indent=1).encode(),
    })
    return ScreeningOutcome(bundle_dir=out, metrics=metrics, notes=notes, n_parameters=n_params, result=fitted.result,
                            kind=targets.kind, n_members=spec.n_members, skipped=mset.skipped, seconds=time.process_time() - t0)


# --------------------------------------------------------------------------- using a bundle


_T = TypeVar("_T")


def _extra(bundle: ModelBundle, key: str, expected: type[_T]) -> _T:
    """``bundle.schema.extras[key]``, checked to be of the type a screening bundle stores there."""
    value = bundle.schema.extras[key]
    if not isinstance(value, expected):
        raise BundleError(f"{bundle.path}: schema extra '{key}' should be a {expected.__name__}, got {type(value).__name__}.")
    return value


def bundle_predict_mols(bundle: ModelBundle, mols: list[Any], *, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions (N, T) (target units or positive-class probabilities) and uncertainty."""
    if not mols:
        t = len(_extra(bundle, "targets", list))
        return np.zeros((0, t)), None
    feats = bundle.featurizer.transform(mols)
    return bundle_predict_features(bundle, feats, batch_size=batch_size)


def bundle_predict_features(bundle: ModelBundle, feats: MoleculeFeatures, *, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray | None]:
    cal = bundle.calibration
    scale = cal.get("uncertainty_scale")
    return predict_features(bundle.model, feats, classification=_extra(bundle, "kind", str) == "binary",
                            mean=np.asarray(cal["target_mean"]), std=np.asarray(cal["target_std"]), batch_size=batch_size,
                            uncertainty_scale=None if scale is None else np.asarray(scale))


def score_columns(bundle: ModelBundle) -> list[tuple[str, str]]:
    """(score column, uncertainty column) per task: ``score``/``uncertainty`` for one task,
    ``score_<target>``/``uncertainty_<target>`` for several."""
    names = _extra(bundle, "targets", list)
    if len(names) == 1:
        return [("score", "uncertainty")]
    return [(f"score_{t}", f"uncertainty_{t}") for t in names]


def _input_smiles_column(bundle: ModelBundle, frame: pd.DataFrame, given: str | None, source: str) -> str:
    """The SMILES column of new data: the one given, the one the model was trained with, or one
    named like 'smiles'."""
    from medassist.data.io.molecules import find_smiles_column
    from medassist.exceptions import SchemaError

    trained = _extra(bundle, "smiles_column", str)
    if given or trained in frame.columns:
        return find_smiles_column(frame, given or trained, source=source)
    try:
        return find_smiles_column(frame, None, source=source)
    except SchemaError:
        raise SchemaError(f"{source}: no SMILES column; name it '{trained}' (as in the training data) or 'smiles'. "
                          f"The table has: {', '.join(map(str, frame.columns[:30]))}.") from None


def predict_frame(bundle: ModelBundle, frame: pd.DataFrame, *, smiles_column: str | None, source: str,
                  molblocks: list[str] | None = None, explain: bool = False, top_k: int = 3) -> tuple[pd.DataFrame, list[Skipped]]:
    """Every input row, in order: canonical SMILES, status, score(s), uncertainty, similarity to
    the training set and the applicability-domain flag. Unusable rows keep their place with
    ``status`` saying why and empty scores."""
    if frame.empty and not molblocks:
        raise DataError(f"{source}: no rows to predict.")
    col = None if molblocks else _input_smiles_column(bundle, frame, smiles_column, source)
    std = bundle.featurizer.make_standardizer()
    mset = read_molecule_table(frame, smiles_column=col, standardizer=std, source=source, molblocks=molblocks)
    n = len(frame) if molblocks is None else len(molblocks)
    pos = mset.rows - 1
    pred, spread = bundle_predict_mols(bundle, mset.mols)
    ad = ApplicabilityDomain.from_bundle(bundle)
    sim, _ = ad.similarity(mset.mols)
    out = pd.DataFrame(index=range(n))
    idc = bundle.schema.id_column
    if idc and idc in frame.columns:
        out[idc] = frame[idc].to_numpy()
    out["smiles_canonical"] = ""
    out.loc[pos, "smiles_canonical"] = mset.smiles
    out["status"] = "ok"
    for s in mset.skipped:
        out.loc[s.row - 1, "status"] = f"skipped: {s.reason}"
    classification = _extra(bundle, "kind", str) == "binary"
    for t, (sc, unc) in enumerate(score_columns(bundle)):
        out[sc] = np.nan
        out.loc[pos, sc] = np.round(pred[:, t], 6)
        out[unc] = np.nan
        if spread is not None:
            out.loc[pos, unc] = np.round(spread[:, t], 6)
        if classification:
            name = _extra(bundle, "targets", list)[t]
            cls = _extra(bundle, "classes", dict)[name]
            pc = "prediction" if len(score_columns(bundle)) == 1 else f"prediction_{name}"
            out[pc] = ""
            out.loc[pos, pc] = [cls[1] if p >= 0.5 else cls[0] for p in pred[:, t]]
    out["ad_similarity"] = np.nan
    out.loc[pos, "ad_similarity"] = np.round(sim, 4)
    out["in_domain"] = ""
    out.loc[pos, "in_domain"] = np.where(sim >= ad.threshold, "yes", "no")
    if explain and len(mset.mols):
        from medassist.explain.molecules import atom_attributions, top_atoms

        texts = []
        for m in mset.mols:
            w = atom_attributions(bundle, m)
            texts.append(top_atoms(m, w, k=top_k))
        out["top_atoms"] = ""
        out.loc[pos, "top_atoms"] = texts
    return out, mset.skipped


def evaluate_frame(bundle: ModelBundle, frame: pd.DataFrame, *, smiles_column: str | None, source: str, n_boot: int = 1000,
                   seed: int = 0, molblocks: list[str] | None = None) -> dict[str, Any]:
    """Metrics (per target, bootstrap 95% CIs) of a bundle on labelled molecules."""
    names: list[str] = _extra(bundle, "targets", list)
    kind = _extra(bundle, "kind", str)
    col = None if molblocks else _input_smiles_column(bundle, frame, smiles_column, source)
    mset = read_molecule_table(frame, smiles_column=col, standardizer=bundle.featurizer.make_standardizer(), source=source, molblocks=molblocks)
    if len(mset) < 2:
        raise DataError(f"{source}: fewer than two usable molecules; nothing to evaluate.")
    targets = prepare_targets(mset.frame, names, positive_class=None, source=source, rows=mset.rows, kind=kind,
                              classes=_extra(bundle, "classes", dict) if kind == "binary" else None)
    pred, spread = bundle_predict_mols(bundle, mset.mols)
    result: dict[str, Any] = {"task": kind, "targets": names, "n_rows": int(len(frame) if molblocks is None else len(molblocks)),
                              "n_molecules": len(mset), "n_skipped": len(mset.skipped), "skipped": summarize_skipped(mset.skipped)}
    result["metrics"] = evaluate_predictions(pred, targets.values, names=names, kind=kind,
                                             classes=_extra(bundle, "classes", dict) if "classes" in bundle.schema.extras else {},
                                             n_boot=n_boot, seed=seed)
    ad = ApplicabilityDomain.from_bundle(bundle)
    sim, _ = ad.similarity(mset.mols)
    result["applicability_domain"] = summarize_evaluation(ad, sim, pred=pred, y=targets.values, kind=kind)
    result["bundle"] = str(bundle.path) if bundle.path else None
    return result
