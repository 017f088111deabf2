"""The treatment assistant: "which treatment option is expected to do best for *this* patient,
with what uncertainty, and how much evidence backs it?"

Train a treatment-effect model on a trial or registry table, then advise: for every patient and
every arm the expected outcome with a 95% interval, the recommended arm, the benefit over the
reference arm with its interval, plain-language flags and the factors that modify the effect.

Example:
    >>> train_treatment_model("actg175", out=Path("models/actg"))
    >>> advice = TreatmentAssistant.load("models/actg").advise(patients_df)
    >>> advice.loc[0, ["recommended", "benefit", "benefit_lo", "benefit_hi", "flags"]]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from rich.console import Console

from medassist.data.sources import DataSource, resolve_table
from medassist.evaluation.treatment_policy import Ranking, evaluate_rows, interval_multipliers, outcome_intervals, rank_arms, summarise
from medassist.exceptions import ConfigError, DataError, SchemaError
from medassist.explain.attributions import group_attributions, integrated_gradients, top_attributions
from medassist.featurizers.tabular import parse_numeric
from medassist.models.sizes import check_size
from medassist.models.treatment import TreatmentModel, contrast_module
from medassist.options import ModelSize
from medassist.pipeline.treatment import (
    NETWORKS,
    TreatmentOutcome,
    TreatmentSpec,
    default_effect_config,
    default_train_config,
    model_from_bundle,
    prepare_treatment,
    train_treatment,
)
from medassist.registry.bundle import ModelBundle, load_bundle

#: P(top arm better than the runner-up) from which a ranking is called "clear" (without --min-confidence).
CLEAR = 0.9
#: Fewest training patients of an arm in a patient's neighbourhood before "few similar patients" is flagged.
MIN_SIMILAR = 10
#: How far (as a share of the 0.5-99.5 percentile range) a value may lie outside it before it is flagged.
RANGE_MARGIN = 0.1
FLAG_NO_DIFFERENCE = "difference not distinguishable from zero"
FLAG_OUTSIDE = "patient outside the trial's population"
FLAG_FEW_SIMILAR = "few similar patients in arm"


#: Why ``--dp-epsilon`` is refused. DP-SGD could noise the networks' gradients, but the bundle
#: holds more that is fitted on the same patients without noise: the support description that
#: flags patients outside the trial (k-means centroids, per-arm counts, covariate percentile
#: ranges), and the doubly robust stage, whose pseudo-outcomes reuse each patient's raw outcome
#: (and, for survival, censoring weights) through out-of-fold propensities of several
#: cross-fitted members. An ε on the card would claim a guarantee for all of it that DP-SGD does
#: not give.
DP_REFUSAL = (
    "--dp-epsilon is not supported for task 'treatment': the bundle also holds a support description (k-means centroids, "
    "per-arm counts, covariate ranges) and doubly robust pseudo-outcomes built from the patients' outcomes and propensities "
    "without privacy noise, so no ε would cover it; train without it, or use --task diagnosis --dp-epsilon for a private "
    "outcome model."
)


@dataclass(frozen=True, kw_only=True)
class TreatmentTrainOptions:
    """What ``medassist train --task treatment`` accepts; any other train option is refused by name
    (``--dp-epsilon`` with the reason in ``DP_REFUSAL``)."""

    treatment_column: str | None = None
    target: str | None = None
    time_column: str | None = None
    event_column: str | None = None
    horizon: float | None = None
    reference_arm: str | None = None
    better: str | None = None
    assignment: str | None = None
    exclude: tuple[str, ...] = ()
    id_column: str | None = None
    model: str | None = None
    size: ModelSize = ModelSize.SMALL
    seed: int = 0
    epochs: int | None = None
    ensemble: int = 0
    drop_missing_target: bool = False

    REFUSED: ClassVar[dict[str, str]] = {"dp_epsilon": DP_REFUSAL}

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", check_size(self.size, task="treatment", models=NETWORKS))
        if self.model not in (None, "multiarm"):
            raise ConfigError(f"--model '{self.model}': the treatment assistant has one model family, 'multiarm'.")


def train_treatment_model(
    data: str | Path,
    *,
    out: Path,
    treatment: str | None = None,
    outcome: str | None = None,
    time: str | None = None,
    event: str | None = None,
    horizon: float | None = None,
    reference: str | None = None,
    better: str | None = None,
    assignment: str | None = None,
    exclude: tuple[str, ...] = (),
    id_column: str | None = None,
    size: ModelSize | str = ModelSize.SMALL,
    seed: int = 0,
    epochs: int | None = None,
    ensemble: int = 0,
    drop_missing_outcome: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> TreatmentOutcome:
    """Train on a CSV file or a bundled trial; a bundled trial brings its declared design
    (treatment, arms, reference, outcome, randomisation, post-treatment columns to exclude)."""
    frame, source = resolve_table(data)
    exclude = tuple(exclude)
    probabilities = None
    ds = source.dataset
    if ds is not None and ds.assistant == "treatment":
        ex = ds.extras
        treatment = treatment or str(ex["treatment"])
        if outcome is None and time is None:
            if ex["outcome_kind"] == "survival":
                time, event = str(ex["time"]), str(ex["event"])
                horizon = horizon if horizon is not None else _declared_number(ex["horizon"], name="horizon", source=source.name)
            else:
                outcome = ds.target
        reference = reference or str(ex["reference"])
        better = better or str(ex["better"])
        if assignment is None:
            assignment = str(ex["assignment"])
            declared = ex.get("arm_probabilities")
            if declared is not None:
                probabilities = _declared_probabilities(declared, source=source.name)
        chosen = {outcome, time, event}
        declared_exclude = ex["exclude"]
        if not isinstance(declared_exclude, list | tuple):
            raise ConfigError(f"{source.name}: the data set declares 'exclude' as {declared_exclude!r}; expected a list of columns.")
        exclude = tuple(dict.fromkeys([*(str(c) for c in declared_exclude if c not in chosen), *exclude]))
        id_column = id_column or ds.id_column
    if not treatment:
        raise ConfigError(f"{source.name}: which column names the treatment arm? Pass --treatment COLUMN.")
    if outcome is None and time is None:
        raise ConfigError(f"{source.name}: which column is the outcome? Pass --outcome COLUMN, or --time COLUMN --event COLUMN.")
    spec = TreatmentSpec(
        treatment=treatment, outcome=outcome, time=time, event=event, horizon=horizon, reference=reference, better=better,
        assignment=assignment or "observational", arm_probabilities=probabilities, exclude=exclude, id_column=id_column,
        size=check_size(size, task="treatment", models=NETWORKS), seed=seed, n_members=ensemble or 5, train=default_train_config(seed=seed, epochs=epochs),
        effect_train=default_effect_config(seed=seed, epochs=epochs),
        missing_outcome="drop" if drop_missing_outcome else "error",
    )
    return train_treatment(frame, spec=spec, source=source, out_dir=Path(out), overwrite=overwrite, progress=progress, console=console)


def _declared_number(value: object, *, name: str, source: str) -> float:
    """A number a bundled data set declares (its design), checked."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{source}: the data set declares '{name}' as {value!r}; expected a number.")
    return float(value)


def _declared_probabilities(value: object, *, source: str) -> dict[str, float]:
    """The randomisation probabilities per arm a bundled trial declares, checked."""
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: the data set declares 'arm_probabilities' as {value!r}; expected {{arm: probability}}.")
    return {str(arm): _declared_number(p, name=f"arm_probabilities[{arm!r}]", source=source) for arm, p in value.items()}


class TreatmentAssistant:
    """Advises and evaluates with one treatment-effect bundle.

    Example:
        >>> assistant = TreatmentAssistant.load("models/actg")
        >>> assistant.advise(patients_df)[["recommended", "benefit", "flags"]]
    """

    def __init__(self, *, bundle: ModelBundle) -> None:
        if bundle.task != "treatment":
            raise ConfigError(f"{bundle.path}: this bundle is a '{bundle.task}' model, not a treatment model.")
        self.bundle = bundle
        self.model: TreatmentModel = model_from_bundle(bundle)
        self.info: dict[str, Any] = self.model.info

    @classmethod
    def load(cls, path: str | Path) -> TreatmentAssistant:
        return cls(bundle=load_bundle(path))

    @property
    def arms(self) -> list[str]:
        return list(self.info["arms"])

    @property
    def model_card(self) -> dict[str, Any]:
        return self.bundle.model_card

    # ------------------------------------------------------------------------------------
    def check_columns(self, frame: pd.DataFrame, *, source: str) -> None:
        """Every column must be one the model was trained beside; every covariate must be there."""
        known = set(self.info["known_columns"])
        unknown = [c for c in frame.columns if str(c) not in known]
        if unknown:
            raise SchemaError(
                f"{source}: column(s) {', '.join(repr(c) for c in unknown)} are unknown to this model; it was trained on a table "
                f"with columns {', '.join(self.info['known_columns'])}. Rename or remove them (a misspelt covariate would "
                "otherwise be silently treated as missing)."
            )
        missing = [c for c in self.info["covariates"] if c not in frame.columns]
        if missing:
            raise SchemaError(f"{source}: covariate(s) {', '.join(repr(c) for c in missing)} are missing; the model needs "
                              f"{', '.join(self.info['covariates'])} (an empty cell is allowed and is imputed).")

    def advise(
        self, frame: pd.DataFrame, *, source: str = "input", explain: bool = True, top_k: int = 3, min_similar: int = MIN_SIMILAR,
        min_confidence: float | None = None,
    ) -> pd.DataFrame:
        """One row per patient, in input order: per-arm predictions with 95% intervals, the
        recommended arm (the best-ranked; with ``min_confidence`` the arm best on average in the
        trial unless the top arm beats it with at least that probability), the probability that
        each arm is best, its benefit over the reference, flags and effect modifiers."""
        if min_confidence is not None and not 0.5 <= min_confidence < 1:
            raise ConfigError(f"--min-confidence must be a probability in [0.5, 1). Got {min_confidence} instead.")
        if frame.empty:
            raise DataError(f"{source}: no patients to advise on.")
        self.check_columns(frame, source=source)
        fm = self.model.featurizer.transform(frame, source=source)
        x = fm.values
        d = self.model.draws(x)
        m_arm, m_eff = interval_multipliers(self.info)
        arms, ref, better, kind = self.arms, self.model.ref, self.info["better"], self.info["kind"]
        sign = 1.0 if better == "higher" else -1.0
        mean, lo, hi = outcome_intervals(d, m_arm)
        dmean, dlo, dhi = outcome_intervals(d, m_eff, contrast_to=ref)
        default = int(self.info.get("default_arm", ref))
        rank = rank_arms(d["pred"], better, ref=ref, default_arm=default, effect_scale=float((self.info.get("interval_scale") or {}).get("effect", 1.0)),
                         min_confidence=min_confidence)
        rec = rank.recommended
        out = pd.DataFrame(index=range(len(frame)))
        idc = self.info.get("id_column")
        if idc and idc in frame.columns:
            out[idc] = frame[idc].to_numpy()
        unit = {"continuous": "mean", "binary": "probability", "survival": "RMST"}[kind]
        for j, a in enumerate(arms):
            out[f"pred_{a}"], out[f"lo_{a}"], out[f"hi_{a}"] = (np.round(v[:, j], 4) for v in (mean, lo, hi))
        if kind == "survival":
            rmean, rlo, rhi = summarise(d["risk"], m_arm)
            for j, a in enumerate(arms):
                out[f"risk_{a}"], out[f"risk_lo_{a}"], out[f"risk_hi_{a}"] = (np.round(np.clip(v[:, j], 0, 1), 4) for v in (rmean, rlo, rhi))
        for j, a in enumerate(arms):
            if j != ref:
                out[f"diff_{a}"], out[f"diff_lo_{a}"], out[f"diff_hi_{a}"] = (np.round(v[:, j], 4) for v in (dmean, dlo, dhi))
        rows = np.arange(len(frame))
        out["recommended"] = [arms[r] for r in rec]
        out["ranking"] = [" > ".join(arms[j] for j in o) for o in rank.order]
        for j, a in enumerate(arms):
            out[f"p_best_{a}"] = np.round(rank.p_best[:, j], 3)
        out["p_better_than_reference"] = np.round(rank.p_vs_reference, 3)
        out["p_better_than_runner_up"] = np.round(rank.p_vs_runner_up, 3)
        threshold = min_confidence if min_confidence is not None else CLEAR
        out["confidence_flag"] = np.where(rank.p_vs_runner_up >= threshold, "clear", "not distinguishable")
        out["recommendation_basis"] = [self._basis(rank, i, default, threshold, min_confidence is not None) for i in range(len(frame))]
        out["reference"] = arms[ref]
        ben_lo = np.where(sign > 0, dlo[rows, rec], -dhi[rows, rec])
        ben_hi = np.where(sign > 0, dhi[rows, rec], -dlo[rows, rec])
        out["benefit"] = np.round(sign * dmean[rows, rec], 4)
        out["benefit_lo"], out["benefit_hi"] = np.round(ben_lo, 4), np.round(ben_hi, 4)
        out["outcome_scale"] = f"{unit} of {self.bundle.schema.target}" + (f" up to {self.info['horizon']:g}" if kind == "survival" else "") + f" ({better} is better)"
        similar, outside = self._support(frame, x, fm.n_unknown, d, source=source)
        for j, a in enumerate(arms):
            out[f"similar_{a}"] = similar[:, j]
        flags = []
        for i in range(len(frame)):
            f: list[str] = []
            r = rec[i]
            others = [j for j in range(len(arms)) if j != ref]
            if (r != ref and dlo[i, r] <= 0 <= dhi[i, r]) or (r == ref and all(dlo[i, j] <= 0 <= dhi[i, j] for j in others)):
                shown = r if r != ref else others[int(np.argmax(sign * dmean[i, others]))]
                f.append(f"{FLAG_NO_DIFFERENCE} ({arms[shown]} vs {arms[ref]}: {dmean[i, shown]:.3g}, 95% interval "
                         f"{dlo[i, shown]:.3g} to {dhi[i, shown]:.3g})")
            if outside[i]:
                f.append(f"{FLAG_OUTSIDE} ({'; '.join(outside[i])})")
            for j, a in enumerate(arms):
                if similar[i, j] < min_similar:
                    f.append(f"{FLAG_FEW_SIMILAR} {a} ({similar[i, j]} in the training data)")
            flags.append("; ".join(f))
        out["flags"] = flags
        out["n_imputed"] = fm.n_imputed
        if explain:
            self._explain(out, x, rec, dmean, sign, top_k)
        return out

    def _basis(self, rank: Ranking, i: int, default: int, threshold: float, conservative: bool) -> str:
        arms = self.arms
        top, second = int(rank.order[i, 0]), int(rank.order[i, 1])
        if rank.fallback[i]:
            return (f"{arms[default]} (best on average in the trial) kept: {arms[top]} ranks first for this patient but is better "
                    f"than {arms[default]} with probability {rank.p_vs_default[i]:.2f} < {threshold:g} (--min-confidence)")
        p2 = rank.p_vs_runner_up[i]
        text = f"ranked first for this patient; better than {arms[second]} (next) with probability {p2:.2f}"
        if p2 < threshold:
            text += f", not distinguishable at {threshold:g}"
        if conservative and top != default:
            text += f"; better than {arms[default]} (best on average) with probability {rank.p_vs_default[i]:.2f}"
        return text

    def _support(self, frame: pd.DataFrame, x: np.ndarray, n_unknown: np.ndarray, d: dict[str, np.ndarray], *, source: str):
        sup = self.bundle.calibration["support"]
        centers = np.asarray(sup["centroids"])
        counts = np.asarray(sup["arm_counts"])
        dist = np.sqrt(((x[:, None, :] - centers[None]) ** 2).sum(-1))
        nearest = dist.argmin(1)
        similar = counts[nearest]
        outside: list[list[str]] = [[] for _ in range(len(frame))]
        for col, (lo, hi) in sup["ranges"].items():
            v = parse_numeric(frame[col], column=col, source=source).to_numpy()
            pad = RANGE_MARGIN * (hi - lo)
            for i in np.flatnonzero((v < lo - pad) | (v > hi + pad)):
                outside[i].append(f"{col} {v[i]:g} outside the trial's range {lo:g} to {hi:g}")
        for i in np.flatnonzero(n_unknown > 0):
            outside[i].append(f"{int(n_unknown[i])} categor{'y' if n_unknown[i] == 1 else 'ies'} never seen in the trial")
        for i in np.flatnonzero(dist.min(1) > sup["distance_p99"] * 1.25):
            if not outside[i]:
                outside[i].append("unlike every group of trial patients (unusual combination of values)")
        if self.info["assignment"] == "observational":
            e = d["propensity"].mean(axis=0)
            clip = float(self.info["propensity_clip"])
            for i, j in zip(*np.nonzero(e < clip)):
                outside[i].append(f"arm {self.arms[j]} was rarely given to patients like this (estimated probability {e[i, j]:.3f})")
        return similar, outside

    def _explain(self, out: pd.DataFrame, x: np.ndarray, rec: np.ndarray, dmean: np.ndarray, sign: float, top_k: int) -> None:
        """Integrated gradients of the effect being recommended (or, when the reference is
        recommended, of the best alternative): which covariates make it larger or smaller."""
        ref = self.model.ref
        others = [j for j in range(len(self.arms)) if j != ref]
        target = np.array([r if r != ref else others[int(np.argmax(sign * dmean[i, others]))] for i, r in enumerate(rec)])
        grouped_all = np.zeros((len(x), len(dict.fromkeys(self.model.featurizer.feature_groups_))), dtype=np.float32)
        names: list[str] = []
        for a in np.unique(target):
            rows = np.flatnonzero(target == a)
            attr = integrated_gradients(contrast_module(self.model, int(a)), x[rows], np.zeros(len(rows), dtype=np.int64), n_steps=24)
            g, names = group_attributions(attr, self.model.featurizer.feature_groups_)
            grouped_all[rows] = g
        tops = top_attributions(grouped_all, names, k=top_k)
        out["effect_explained"] = [f"{self.arms[a]} vs {self.arms[ref]}" for a in target]
        for r in range(top_k):
            out[f"modifier_{r + 1}"] = [tp[r][0] if len(tp) > r else "" for tp in tops]
            out[f"modifier_{r + 1}_weight"] = [round(tp[r][1], 4) if len(tp) > r else np.nan for tp in tops]

    # ------------------------------------------------------------------------------------
    def evaluate(self, frame: pd.DataFrame, *, source: str = "input", n_boot: int = 500, seed: int = 0) -> dict[str, Any]:
        """Outcome fit, effect calibration and policy values of this model on a labelled table."""
        info = self.info
        spec = TreatmentSpec(
            treatment=info["treatment"], outcome=info["outcome"], time=info["time"], event=info["event"],
            horizon=info["horizon"], reference=self.arms[self.model.ref], better=info["better"], assignment=info["assignment"],
            arm_probabilities=info["arm_probabilities"], covariates=tuple(info["covariates"]), min_per_arm=5,
            positive_class=info.get("positive_class"), n_boot=max(10, n_boot),
        )
        self.check_columns(frame, source=source)
        prep = prepare_treatment(frame, spec=spec, source=source)
        unknown = [a for a in prep.arms if a not in self.arms]
        if unknown:
            raise DataError(f"{source}: arm(s) {unknown} of '{info['treatment']}' are unknown to this model (its arms: {self.arms}).")
        prep.arm = np.array([self.arms.index(prep.arms[i]) for i in prep.arm], dtype=np.int64)
        prep.arms, prep.ref = self.arms, self.model.ref
        x = self.model.features(prep.data, source=source)
        result = evaluate_rows(self.model, prep, np.arange(len(prep.data)), x=x, n_boot=max(10, n_boot), seed=seed)
        result["bundle"] = str(self.bundle.path) if self.bundle.path else None
        return result


def load_input(data: str | Path) -> tuple[pd.DataFrame, DataSource]:
    return resolve_table(data)


__all__ = ["TreatmentAssistant", "load_input", "train_treatment_model"]
