"""Prognosis (a task of diagnosis and cases): "what is this patient's risk of the event over time?"

Train the discrete-time neural survival ensemble of ``pipeline/survival.py`` (5 cross-fitted hazard
networks, each a residual trunk with a linear path beside it: see :func:`prognosis_spec`, and
``benchmarks/prognosis.py`` for how it compares) on any CSV with a follow-up time and an event
column, then predict survival at fixed horizons (with the ensemble's spread as an interval) and evaluate it (Harrell's and Uno's C, time-dependent AUC and Brier at the
horizons, integrated Brier, bootstrap 95% intervals).

The event column accepts 1/0, true/false, yes/no and dead/alive (case-insensitive); anything else
stops training with the row that has it. Times must be numbers >= 0; a row without a time or an
event stops training unless ``drop_missing_target`` (then it is left out and reported).

Example:
    >>> train_prognosis("gbsg2.csv", out=Path("models/gbsg"), time="time", event="cens", id_column="pid")
    >>> PrognosisAssistant.load("models/gbsg").predict(patients).loc[0, "surv_365"]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd
from rich.console import Console

from medassist.assistants.prognosis_curves import cohort_curve
from medassist.data.sources import DataSource, resolve_table
from medassist.evaluation.bootstrap import resamples
from medassist.exceptions import ConfigError, DataError, SchemaError
from medassist.models.sizes import check_size
from medassist.options import ModelSize
from medassist.pipeline.survival import (
    NETWORKS,
    SurvivalModel,
    SurvivalOutcome,
    SurvivalSpec,
    default_encoder_config,
    default_survival_config,
    outcome_rows,
    survival_model_from_bundle,
    train_survival_bundle,
)
from medassist.registry.bundle import ModelBundle, load_bundle

TASK = "survival"
T = TypeVar("T")
DAYS_PER_YEAR = 365.25
#: Members of the cross-fitted ensemble when the user does not say (``--ensemble 0``).
DEFAULT_ENSEMBLE = 5
#: Hazard networks with a linear path beside the trunk (see ``DiscreteHazardNet``).
DEFAULT_LINEAR_PATH = True

DP_REFUSAL = (
    "--dp-epsilon is not supported for task 'survival': the survival ensemble and its patient autoencoder are trained "
    "without DP-SGD, and the time grid is cut at the patients' event-time quantiles, so no ε would cover the bundle; "
    "train without it, or use --task diagnosis --dp-epsilon for a private classifier of the event."
)


@dataclass(frozen=True, kw_only=True)
class SurvivalTrainOptions:
    """What ``medassist train --task survival`` accepts; any other train option is refused by name
    (``--dp-epsilon`` with the reason in ``DP_REFUSAL``)."""

    time_column: str | None = None
    event_column: str | None = None
    id_column: str | None = None
    horizon: tuple[float, ...] = ()
    exclude: tuple[str, ...] = ()
    size: ModelSize = ModelSize.SMALL
    seed: int = 0
    epochs: int | None = None
    ensemble: int = 0
    drop_missing_target: bool = False

    REFUSED: ClassVar[dict[str, str]] = {"dp_epsilon": DP_REFUSAL}

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", check_size(self.size, task="survival", models=NETWORKS))
        object.__setattr__(self, "horizon", tuple(float(h) for h in self.horizon))
        for h in self.horizon:
            if not (math.isfinite(h) and h > 0):
                raise ConfigError(f"--horizon must be a time > 0 in the unit of --time. Got {h:g} instead.")
        if not 0 <= self.ensemble <= 20:
            raise ConfigError(f"--ensemble must be between 0 (default: {DEFAULT_ENSEMBLE}) and 20. Got {self.ensemble} instead.")


def looks_like_days(follow_up: np.ndarray) -> bool:
    """Follow-up longer than three years counted in days (1096 or more) reads as days."""
    return float(np.max(follow_up)) > 3 * DAYS_PER_YEAR


def default_horizons(follow_up: np.ndarray) -> tuple[list[float], str]:
    """1, 2 and 5 years when the times look like days (those inside the follow-up), else the
    quartiles of follow-up; and the unit words for messages."""
    t = np.asarray(follow_up, dtype=float)
    if looks_like_days(t):
        return [h for h in (365.0, 730.0, 1826.0) if h < t.max()], "days"
    qs = sorted({float(f"{q:.3g}") for q in np.quantile(t, [0.25, 0.5, 0.75]) if q > 0})
    return qs, "time units"


def horizon_label(h: float) -> str:
    return f"{h:g}"


def frame_with_ids(frame: pd.DataFrame, *, id_column: str | None, source: str) -> pd.DataFrame:
    """Index the rows by patient ID (checked: present, complete, one row per patient) or by row number."""
    frame = frame.copy()
    if id_column is None:
        frame.index = pd.Index([f"row {i + 1}" for i in range(len(frame))], name="row")
        return frame
    if id_column not in frame.columns:
        raise SchemaError(f"{source}: ID column '{id_column}' not found. Columns: {', '.join(map(str, frame.columns))}.")
    ids = frame[id_column]
    if ids.isna().any():
        raise DataError(f"{source}: ID column '{id_column}' is empty in data row {int(np.flatnonzero(ids.isna().to_numpy())[0]) + 1}.")
    dup = ids.astype(str).duplicated()
    if dup.any():
        raise DataError(f"{source}: ID '{ids[dup].iloc[0]}' appears in more than one row; a survival table has one row per "
                        "patient (the split is by row).")
    frame.index = pd.Index(ids.astype(str).to_numpy(), name=id_column)
    return frame


def prognosis_spec(
    *, time: str, event: str, exclude: tuple[str, ...] = (), size: ModelSize | str = ModelSize.SMALL, seed: int = 0,
    epochs: int | None = None, ensemble: int = 0, missing_outcome: str = "error",
) -> SurvivalSpec:
    """The model ``medassist train --task survival`` ships: what :func:`train_prognosis` fits and
    what ``benchmarks/prognosis.py`` measures, so the two cannot drift apart."""
    return SurvivalSpec(
        time=time, event=event, exclude=exclude, size=check_size(size, task="survival", models=NETWORKS), seed=seed, n_members=ensemble or DEFAULT_ENSEMBLE,
        linear=DEFAULT_LINEAR_PATH, missing_outcome=missing_outcome, train=default_survival_config(seed=seed, epochs=epochs),
        encoder_train=default_encoder_config(seed=seed, epochs=epochs),
    )


def train_prognosis(
    data: str | Path,
    *,
    out: Path,
    time: str | None,
    event: str | None,
    id_column: str | None = None,
    horizons: tuple[float, ...] = (),
    exclude: tuple[str, ...] = (),
    size: ModelSize | str = ModelSize.SMALL,
    seed: int = 0,
    epochs: int | None = None,
    ensemble: int = 0,
    drop_missing_target: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> tuple[SurvivalOutcome, list[float], str]:
    """Train the survival ensemble on a table; returns the outcome, the horizons and their unit."""
    frame, source = resolve_table(data)
    if not time or not event:
        raise ConfigError(f"{source.name}: a survival model needs its outcome columns: pass --time COLUMN and --event COLUMN.")
    absent = [c for c in (*exclude,) if c not in frame.columns]
    if absent:
        raise SchemaError(f"{source.name}: --exclude column(s) {absent} not found. Columns: {', '.join(map(str, frame.columns))}.")
    frame = frame_with_ids(frame, id_column=id_column, source=source.name)
    missing = "drop" if drop_missing_target else "error"
    oc = outcome_rows(frame, time=time, event=event, missing=missing, source=source.name)
    if oc.event.sum() == 0:
        raise DataError(f"{source.name}: event column '{event}' has no events (every row is censored); nothing to learn a risk from.")
    follow = float(oc.time.max())
    auto, unit = default_horizons(oc.time)
    if horizons:
        beyond = [h for h in horizons if h >= follow]
        if beyond:
            raise ConfigError(f"--horizon {beyond[0]:g} is at or beyond the longest follow-up in {source.name} ({follow:g}); "
                              "the model cannot say anything there.")
        chosen = sorted(set(horizons))
        unit = "days" if looks_like_days(oc.time) else "time units"
    else:
        chosen = auto
    if not chosen:
        raise DataError(f"{source.name}: no usable horizon inside the follow-up; pass --horizon TIME.")
    spec = prognosis_spec(time=time, event=event, exclude=tuple(c for c in (id_column, *exclude) if c), size=size, seed=seed,
                          epochs=epochs, ensemble=ensemble, missing_outcome=missing)
    outcome = train_survival_bundle(frame, spec=spec, source_name=source.name, out_dir=Path(out), overwrite=overwrite,
                                    progress=progress, console=console, task=TASK, id_column=id_column,
                                    extras={"horizons": chosen, "time_unit": unit, "id_column": id_column,
                                            "cohort": cohort_curve(oc.time, oc.event)})  # drawn by the service's prognosis pages
    return outcome, chosen, unit


def _median_survival(s_edges: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """First time S(t) reaches 0.5 (linear between edges); NaN when not reached: (N,)."""
    out = np.full(len(s_edges), np.nan)
    for i, s in enumerate(s_edges):
        below = np.flatnonzero(s <= 0.5)
        if len(below):
            j = int(below[0])
            if j == 0:
                out[i] = edges[0]
            else:
                s0, s1 = s[j - 1], s[j]
                out[i] = edges[j - 1] + (s0 - 0.5) / (s0 - s1) * (edges[j] - edges[j - 1]) if s0 != s1 else edges[j]
    return out


class PrognosisAssistant:
    """Predicts and evaluates with one survival bundle (``survival`` or ``cases-survival``)."""

    def __init__(self, *, bundle: ModelBundle) -> None:
        self.bundle = bundle
        self.model: SurvivalModel = survival_model_from_bundle(bundle, path=bundle.path or "bundle")
        info = self.model.info
        self.time, self.event = str(info["time"]), str(info["event"])
        self.id_column: str | None = info.get("id_column")
        edges = self.model.edges
        self.horizons: list[float] = [float(h) for h in info.get("horizons") or default_horizons(edges[1:])[0]]
        self.time_unit: str = info.get("time_unit", "days")

    @classmethod
    def load(cls, path: str | Path) -> PrognosisAssistant:
        return cls(bundle=load_bundle(path))

    @property
    def covariates(self) -> list[str]:
        return list(self.model.encoder.covariates)

    def predict(self, frame: pd.DataFrame, *, source: str = "input") -> pd.DataFrame:
        """One row per input row, in order: ID, ``risk`` (probability of the event by the last
        horizon), ``surv_<t>`` with ``_low``/``_high`` (lowest and highest ensemble member),
        ``median_survival`` (NaN when the curve stays above 0.5) and ``n_imputed``."""
        missing = [c for c in self.covariates if c not in frame.columns]
        if missing:
            raise SchemaError(f"{source}: the model needs column(s) {', '.join(missing)}, which the table does not have.")
        framed = frame.reset_index(drop=True)
        x = self.model.features(framed, source=source)
        h = np.asarray(self.horizons)
        mean = self.model.survival(x, h)
        members = self.model.member_survival(x, h)
        result = pd.DataFrame(index=range(len(framed)))
        if self.id_column and self.id_column in framed.columns:
            result[self.id_column] = framed[self.id_column].to_numpy()
        result["risk"] = 1.0 - mean[:, -1]
        for j, t in enumerate(self.horizons):
            name = f"surv_{horizon_label(t)}"
            result[name] = mean[:, j]
            result[f"{name}_low"] = members[:, :, j].min(axis=0)
            result[f"{name}_high"] = members[:, :, j].max(axis=0)
        result["median_survival"] = _median_survival(self.model.survival_at_edges(x), self.model.edges)
        result["n_imputed"] = framed[self.covariates].isna().sum(axis=1).astype(int).to_numpy()
        return result

    def risk(self, x: np.ndarray) -> np.ndarray:
        return 1.0 - self.model.survival(x, np.asarray(self.horizons[-1:]))[:, 0]

    def evaluate(self, frame: pd.DataFrame, *, source: str = "input", n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
        """Metrics on the rows the model never saw (see :func:`survival_metrics`)."""
        from medassist.pipeline.tabular import seen_in_training

        framed = frame_with_ids(frame, id_column=self.id_column if self.id_column in frame.columns else None, source=source)
        oc = outcome_rows(framed, time=self.time, event=self.event, missing="drop", source=source)
        notes = list(oc.notes)
        seen, how = seen_in_training(self.bundle, oc.frame)
        keep = np.ones(len(oc.frame), dtype=bool) if seen is None else ~seen
        if seen is None:
            notes.append(f"All rows evaluated: {how}.")
        elif seen.any():
            notes.append(f"{int(seen.sum())} row(s) the model was trained or tuned on were excluded (matched by {how}).")
        if keep.sum() == 0:
            raise DataError(f"{source}: every row with an outcome was seen in training; evaluate on rows the model never saw.")
        rows = oc.frame[keep]
        x = self.model.features(rows, source=source)
        t, d = oc.time[keep], oc.event[keep]
        metrics, warn = survival_metrics(self, x, t, d, n_boot=n_boot, seed=seed)
        return {"task": TASK, "source": source, "n_rows": int(len(frame)), "n_with_outcome": int(len(oc.frame)),
                "n_seen_in_training": None if seen is None else int(seen.sum()), "n_evaluated": int(keep.sum()),
                "n": int(keep.sum()), "events": int(d.sum()), "horizons": self.horizons, "time_unit": self.time_unit,
                "risk": f"probability of the event by {horizon_label(self.horizons[-1])} {self.time_unit}",
                "censoring": "IPCW weights use the censoring distribution of the evaluated rows",
                "metrics": metrics, "notes": notes, "warnings": warn}


def _point_metrics(risk: np.ndarray, surv: np.ndarray, grid_surv: np.ndarray, grid: np.ndarray,
                   t: np.ndarray, d: np.ndarray, horizons: np.ndarray) -> dict[str, float | None]:
    """Each metric on one set of rows; None where it is undefined there (no comparable pairs, past the follow-up)."""
    from sksurv.metrics import (
        brier_score,
        concordance_index_censored,
        concordance_index_ipcw,
        cumulative_dynamic_auc,
        integrated_brier_score,
    )
    from sksurv.util import Surv

    y = Surv.from_arrays(event=d.astype(bool), time=t)
    out: dict[str, float | None] = {}

    def attempt(fn: Callable[[], T]) -> T | None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return fn()
        except (ValueError, ZeroDivisionError, IndexError):  # a resample without comparable pairs or past its follow-up
            return None

    out["harrell_c"] = attempt(lambda: float(concordance_index_censored(d.astype(bool), t, risk)[0]))
    out["uno_c"] = attempt(lambda: float(concordance_index_ipcw(y, y, risk, tau=float(horizons[-1]))[0]))
    ok = (horizons > t.min()) & (horizons < t.max())
    if ok.any():
        hs = horizons[ok]
        aucs = attempt(lambda: cumulative_dynamic_auc(y, y, 1.0 - surv[:, ok], hs)[0])
        briers = attempt(lambda: brier_score(y, y, surv[:, ok], hs)[1])
        for k, h in enumerate(hs):
            out[f"auc_{horizon_label(h)}"] = None if aucs is None else float(aucs[k])
            out[f"brier_{horizon_label(h)}"] = None if briers is None else float(briers[k])
    g = (grid > t.min()) & (grid < t.max())
    out["integrated_brier"] = attempt(lambda: float(integrated_brier_score(y, y, grid_surv[:, g], grid[g]))) if g.sum() >= 2 else None
    return out


def survival_metrics(assistant: PrognosisAssistant, x: np.ndarray, t: np.ndarray, d: np.ndarray, *, n_boot: int,
                     seed: int = 0) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Harrell's and Uno's C (of ``risk``, up to the last horizon), time-dependent AUC and Brier at
    each horizon inside the follow-up, integrated Brier over the follow-up's 10th-90th percentile;
    each with a percentile bootstrap 95% interval (resamples where a metric is undefined are skipped)."""
    warn: list[str] = []
    if d.sum() == 0:
        warn.append("No events among the evaluated rows: concordance, AUC and Brier are undefined.")
    horizons = np.asarray(assistant.horizons, dtype=float)
    outside = [h for h in horizons if not (t.min() < h < t.max())]
    if outside:
        warn.append(f"Horizon(s) {', '.join(horizon_label(h) for h in outside)} lie outside the evaluated follow-up; no AUC or Brier there.")
    risk = assistant.risk(x)
    surv = assistant.model.survival(x, horizons)
    lo, hi = np.quantile(t, [0.1, 0.9])
    grid = np.unique(np.linspace(lo, hi, 50))
    grid_surv = assistant.model.survival(x, grid)
    point = _point_metrics(risk, surv, grid_surv, grid, t, d, horizons)
    boots: dict[str, list[float]] = {k: [] for k in point}
    for i in resamples(len(t), max(0, n_boot), seed):
        if d[i].sum() == 0:
            continue
        for k, v in _point_metrics(risk[i], surv[i], grid_surv[i], grid, t[i], d[i], horizons).items():
            if v is not None and math.isfinite(v) and k in boots:
                boots[k].append(v)
    metrics: dict[str, dict[str, Any]] = {}
    for k, v in point.items():
        b = boots[k]
        enough = len(b) >= max(10, 0.5 * n_boot)
        metrics[k] = {"value": None if v is None or not math.isfinite(v) else v,
                      "ci_low": float(np.quantile(b, 0.025)) if enough else None,
                      "ci_high": float(np.quantile(b, 0.975)) if enough else None, "n_boot": len(b)}
    return metrics, warn


def load_input(data: str | Path) -> tuple[pd.DataFrame, DataSource]:
    return resolve_table(data)
