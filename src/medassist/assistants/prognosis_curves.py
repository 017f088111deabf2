"""What a prognosis answer shows beside :meth:`PrognosisAssistant.predict`: one patient's survival
curve with its ensemble band, the cohort's Kaplan-Meier curve stored in the bundle, per-row flags
(missing, never-seen categories, values outside the training range) and the factors behind a
prediction (integrated gradients of the restricted mean survival time, as ``cases`` explains).

The cohort curve is written at training time (``train_prognosis`` stores it in the bundle's
survival info as ``cohort``): Kaplan-Meier of every row of the training file with an outcome,
read on a fixed grid of ``COHORT_POINTS`` times, so no patient's own follow-up time is stored.
Bundles written before it have none (:func:`cohort_of` returns ``None``).

Example:
    >>> a = PrognosisAssistant.load("models/gbsg")
    >>> curves = patient_curves(a, rows)          # edges, mean S and the members' band, (N, J + 1)
    >>> cohort_of(a)["survival"][:3]
    [1.0, 0.98, 0.95]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from medassist.assistants.prognosis import PrognosisAssistant

#: Points of the stored cohort curve (0 to the longest follow-up, evenly spaced).
COHORT_POINTS = 61


def cohort_curve(time: np.ndarray, event: np.ndarray, *, n_points: int = COHORT_POINTS) -> dict[str, Any]:
    """Kaplan-Meier S(t) with its 95% band (lifelines, log-log) on an even grid from 0 to the
    longest follow-up: plain JSON for the bundle."""
    from medassist.evaluation.survival import kaplan_meier

    km = kaplan_meier(time, event, label="cohort")
    grid = np.linspace(0.0, float(np.max(time)), n_points)
    k = np.clip(np.searchsorted(km.timeline, grid, side="right") - 1, 0, len(km.timeline) - 1)

    def r(v: np.ndarray) -> list[float]:
        return [round(float(x), 5) for x in np.clip(v[k], 0.0, 1.0)]

    return {"what": "Kaplan-Meier estimate of the training file's patients (95% band)", "n": km.n, "events": km.events,
            "times": [round(float(t), 4) for t in grid], "survival": r(km.survival), "lower": r(km.lower), "upper": r(km.upper),
            "median": None if not np.isfinite(km.median) else float(km.median)}


def cohort_of(assistant: PrognosisAssistant) -> dict[str, Any] | None:
    """The cohort curve stored in the bundle, or ``None`` for a bundle written without one."""
    c = assistant.model.info.get("cohort")
    return c if isinstance(c, dict) and c.get("times") else None


def patient_curves(assistant: PrognosisAssistant, x: np.ndarray) -> dict[str, np.ndarray]:
    """S(t | x) at the model's edges: ``survival`` the ensemble mean, ``low``/``high`` the lowest
    and highest member (the interval ``predict`` reports at the horizons): each (N, J + 1)."""
    model = assistant.model
    members = model.member_survival(x, model.edges)
    return {"times": model.edges.copy(), "survival": model.survival_at_edges(x), "low": members.min(axis=0), "high": members.max(axis=0)}


def row_flags(assistant: PrognosisAssistant, frame: pd.DataFrame, *, source: str) -> dict[str, list[list[str]]]:
    """Per row: ``missing`` inputs (imputed), ``unknown_categories`` (column=value never seen in
    training) and ``out_of_range`` numeric inputs (outside the training range), as the fitted
    featurizer sees them."""
    enc = assistant.model.encoder
    covariates = assistant.covariates
    fm = enc.featurizer.transform(enc._table(frame.reset_index(drop=True), source=source), source=source)
    absent = frame[covariates].isna().to_numpy()
    return {"missing": [[c for c, a in zip(covariates, row) if a] for row in absent],
            "unknown_categories": [list(r) for r in fm.unknown_categories],
            "out_of_range": [[c for c in r if c in covariates] for r in fm.out_of_range]}


def top_factors(assistant: PrognosisAssistant, frame: pd.DataFrame, x: np.ndarray, *, top_k: int,
                n_steps: int = 32) -> list[list[dict[str, Any]]]:
    """Per row, the ``top_k`` inputs that move the restricted mean survival time most against an
    average patient (integrated gradients, summed per input column): ``column``, ``weight`` (time
    units; > 0 means longer expected survival), ``value`` (the patient's; ``None`` if missing)."""
    from medassist.explain.attributions import group_attributions, integrated_gradients
    from medassist.models.survival import RestrictedMeanModule

    model = assistant.model
    if len(x) == 0:
        return []
    module = RestrictedMeanModule(model.nets, model.edges)
    attr = integrated_gradients(module, x.astype(np.float32), np.zeros(len(x), dtype=np.int64), n_steps=n_steps)
    grouped, names = group_attributions(attr, model.encoder.input_columns)
    rows = frame.reset_index(drop=True)
    out = []
    for i in range(len(x)):
        order = np.argsort(-np.abs(grouped[i]))[:top_k]
        factors = []
        for j in order:
            col = names[j]
            if col in rows.columns:
                v = rows.at[i, col]
                value = None if v is None or (not isinstance(v, str) and pd.isna(v)) else (v.item() if hasattr(v, "item") else v)
            else:  # a code column's member ("conditions:I21"): present or not
                base, _, code = col.partition(":")
                cell = rows.at[i, base] if base in rows.columns else None
                value = int(isinstance(cell, str) and code in {c.strip() for c in cell.split(";")})
            factors.append({"column": col, "weight": float(grouped[i, j]), "value": value})
        out.append(factors)
    return out
