"""The cases assistant, analysis part: "which earlier cases resemble this one, what happened to
them, and what drives the outcome?"

Works on a case frame (one row per case, index ``case_id``; see ``pipeline/survival.py``) and a
survival model (from a ``cases-survival`` bundle, or fitted in-process):

* :meth:`CaseAnalysis.similar` — exact k nearest neighbours over L2-normalised patient
  embeddings (the autoencoder's bottleneck, or the hazard network's penultimate layer when
  ``outcome_aware``), with the reasons: shared codes, closest labs and covariates, equal categories.
  Without a survival model (cases with no outcome) the embedding is the cases' feature profile
  (:class:`~medassist.featurizers.case_profile.CaseProfile`: age, sex, ICD-10 chapters and
  categories, medications, standardised latest observations) and neighbours are the nearest by
  Euclidean distance; no outcome is needed;
* :meth:`CaseAnalysis.cohort` — Kaplan-Meier per group with 95% bands, median survival, log-rank
  test, Cox hazard ratios of the groups, PNG plots;
* :meth:`CaseAnalysis.factors` — multivariable Cox hazard ratios and the neural model's
  integrated-gradients attributions; :meth:`CaseAnalysis.patient_risk` — one patient's curve and
  top factors.

Example:
    >>> ca = CaseAnalysis.fit(frame)                       # or CaseAnalysis.load(frame, bundle)
    >>> ca.similar("whas500-17", k=5)["neighbours"][0]["reasons"]
    >>> ca.cohort('age > 60', by="sex", out_dir=Path("plots"))["logrank"]["p_value"]
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from medassist.assistants.case_query import filter_mask
from medassist.data.dictionary import DataDictionary
from medassist.evaluation.survival import (
    COX_PENALIZER,
    cox_design,
    cox_hazard_ratios,
    kaplan_meier,
    kaplan_meier_groups,
    plot_forest,
    plot_km,
    plot_risk_curve,
)
from medassist.exceptions import ConfigError, DataError, SchemaError
from medassist.explain.attributions import group_attributions, integrated_gradients
from medassist.featurizers.case_profile import CaseProfile, icd10_category
from medassist.featurizers.tabular import infer_column_kind
from medassist.models.survival import RestrictedMeanModule
from medassist.options import ModelSize, look_up_option
from medassist.pipeline.survival import (
    CODE_COLUMNS,
    SurvivalModel,
    SurvivalSpec,
    case_survival_spec,
    fit_survival,
    load_survival_model,
    outcome_rows,
    select_covariates,
    split_codes,
    split_rows,
)
from medassist.training import TrainConfig
from medassist.validation import check_number

#: A numeric ``by`` column with more distinct values than this is split at its median.
MAX_NUMERIC_LEVELS = 6
#: Most groups a cohort is split into (rarer levels are merged into 'other').
MAX_GROUPS = 8
#: Fewest events :meth:`CaseAnalysis.fit` fits a survival model on.
MIN_EVENTS = 10


_DEATH = {"death", "died", "dead", "mortality", "os", "overall_survival", "all_cause_death"}


def _words(text: str) -> str:
    """Lower case for a phrase in a sentence, acronyms (MI, ICU) kept."""
    return " ".join(w if len(w) > 1 and w.isupper() else w.lower() for w in str(text).replace("_", " ").split())


def endpoint_words(name: str | None, *, description: str | None = None, dictionary: DataDictionary | None = None) -> dict[str, str]:
    """An endpoint in words, for axes and headings: ``ttde`` ("Time to First Dermatologic Event")
    → event "first dermatologic event", y axis "probability free of first dermatologic event".

    Taken from, in order: a description "Time to X"; a name meaning death; a name that is a phrase
    (``recurrence_or_death``); the data dictionary's event column (binary, role outcome); the
    description; the name.

    Example:
        >>> endpoint_words("death")["ylabel"]
        'survival probability (free of death)'
    """
    key = str(name or "").strip().lower().replace("-", "_")
    desc = str(description or "").strip()
    event = ""
    m = re.match(r"(?i)^time (?:to|until) (.+)$", desc)
    if m:
        event = m.group(1)
    elif key in _DEATH:
        event = "death"
    elif "_" in key or " " in key:
        event = key
    if not event and dictionary:
        for e in dictionary.columns.values():
            if e.role.value == "outcome" and e.type.value == "binary" and e.label:
                event = re.sub(r"(?i)\s+(observed|occurred)$", "", e.label)
                event = "death" if re.match(r"(?i)^(died|death|dead)\b", event) else event
                break
    event = _words(event or desc or key)
    if not event:  # nothing says what the event is
        return {"name": key, "event": "event", "ylabel": "event-free probability", "median": "median time to event"}
    if event == "death":
        return {"name": key, "event": event, "ylabel": "survival probability (free of death)", "median": "median survival"}
    return {"name": key, "event": event, "ylabel": f"probability free of {event}", "median": f"median time to {event}"}


def _clean(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


class CaseAnalysis:
    """Analyses over one case frame.

    Args:
        frame: the case frame (index ``case_id``).
        model: a fitted :class:`SurvivalModel` (needed for attributions, curves and outcome-aware
            similar cases; without one, similar cases use the cases' feature profile).
        time, event: outcome columns.
        notes: how the model came about (shown to the user).
    """

    def __init__(self, *, frame: pd.DataFrame, model: SurvivalModel | None = None, time: str = "time", event: str = "event",
                 notes: list[str] | None = None) -> None:
        if frame.index.has_duplicates:
            dup = frame.index[frame.index.duplicated()][0]
            raise DataError(f"case frame: case id {dup!s} appears more than once; expected one row per case.")
        self.frame, self.model, self.time, self.event = frame, model, time, event
        self.notes = list(notes or [])
        self._index: dict[bool, np.ndarray] = {}
        self._profile: CaseProfile | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, frame: pd.DataFrame, bundle: str | Path) -> CaseAnalysis:
        model = load_survival_model(bundle)
        return cls(frame=frame, model=model, time=model.info["time"], event=model.info["event"])

    @classmethod
    def fit(cls, frame: pd.DataFrame, *, size: ModelSize | str = "small", seed: int = 0, epochs: int | None = None, n_members: int = 5,
            train: TrainConfig | None = None, time: str = "time", event: str = "event", progress: bool = False,
            console: Console | None = None) -> CaseAnalysis:
        """Fit a survival model and embedding on this frame's cases with an outcome (no bundle written).

        ``train`` overrides the hazard networks' TrainConfig (default: ``default_survival_config``).
        """
        spec = case_survival_spec(time=time, event=event, size=look_up_option(size, ModelSize, name="model size"), seed=seed,
                                  n_members=n_members, epochs=epochs, train=train)
        _require_outcomes(frame, time=time, event=event)
        oc = outcome_rows(frame, time=time, event=event, missing="drop")
        if oc.event.sum() < MIN_EVENTS:
            raise DataError(f"case frame: only {int(oc.event.sum())} events among {len(oc.frame)} cases; too few to fit a survival model.")
        covariates, notes = select_covariates(oc.frame, spec=spec)
        tr, va, _ = split_rows(oc.event, spec=SurvivalSpec(test_fraction=0.1, val_fraction=0.15, seed=seed))
        tr = np.sort(np.concatenate([tr, _]))  # no held-out evaluation here: use those rows for training
        fitted = fit_survival(oc.frame, oc.time, oc.event, train=tr, val=va, spec=spec, covariates=covariates,
                              progress=progress, console=console)
        notes = [f"Model fitted in-process on {len(oc.frame)} cases ({size} preset, seed {seed}); "
                 "train one with 'medassist cases train-survival' to reuse it.", *oc.notes, *notes]
        return cls(frame=frame, model=fitted.model, time=time, event=event, notes=notes)

    @staticmethod
    def can_fit(frame: pd.DataFrame, *, time: str = "time", event: str = "event") -> bool:
        """Whether ``frame`` has outcomes enough (:data:`MIN_EVENTS` events) for :meth:`fit`."""
        if time not in frame.columns or event not in frame.columns:
            return False
        t = pd.to_numeric(frame[time], errors="coerce")
        e = pd.to_numeric(frame[event], errors="coerce")
        return int(((e == 1) & t.notna()).sum()) >= MIN_EVENTS

    def _need_model(self, what: str) -> SurvivalModel:
        if self.model is None:
            raise ConfigError(f"{what} needs a survival model: load a cases-survival bundle or use CaseAnalysis.fit().")
        return self.model

    def _row(self, case_id: str) -> int:
        try:
            pos = self.frame.index.get_loc(str(case_id))
        except KeyError:
            raise DataError(f"No case '{case_id}' in this case frame ({len(self.frame)} cases).") from None
        if not isinstance(pos, (int, np.integer)):
            raise DataError(f"Case id '{case_id}' is not unique in this case frame.")
        return int(pos)

    # ------------------------------------------------------------------ similar cases
    def embeddings(self, *, outcome_aware: bool = False) -> np.ndarray:
        """Embeddings of every case (N, d), computed once and kept: L2-normalised model embeddings,
        or, without a model, the feature profile (compared by Euclidean distance)."""
        if self.model is None:
            if outcome_aware:
                raise ConfigError("Outcome-aware similar cases need a survival model, and these cases have none "
                                  "(no outcomes, or no cases-survival bundle); search without outcome_aware.")
            if False not in self._index:
                self._profile = CaseProfile().fit(self.frame)
                self._index[False] = self._profile.transform(self.frame)
                self._prepare_reasons()
            return self._index[False]
        if outcome_aware not in self._index:
            model = self._need_model("Similar cases")
            z = model.embed(model.features(self.frame), outcome_aware=outcome_aware).astype(np.float32)
            z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
            self._index[outcome_aware] = np.ascontiguousarray(z)
            if not hasattr(self, "_numeric"):
                self._prepare_reasons()
        return self._index[outcome_aware]

    def _prepare_reasons(self) -> None:
        if self._profile is not None:
            prof = self._profile
            covariates, numeric, scale = [*prof.numeric_, *prof.categorical_], set(prof.numeric_), prof.scale_
        else:
            model = self._need_model("Similar cases")
            fz = model.encoder.featurizer
            covariates, numeric, scale = list(model.encoder.covariates), set(fz.numeric_), fz.scale_
        # continuous values are compared by distance; 0/1 flags and categories by equality
        cols = [c for c in covariates if c in numeric and self.frame[c].nunique() > 2]
        self._numeric_cols = cols
        self._numeric = (np.column_stack([pd.to_numeric(self.frame[c], errors="coerce").to_numpy(float) for c in cols])
                         if cols else np.zeros((len(self.frame), 0)))
        self._scale = np.array([scale[c] for c in cols])
        self._categorical_cols = [c for c in covariates if c not in cols]

    def similar(self, case_id: str, *, k: int = 10, outcome_aware: bool = False, n_reasons: int = 3) -> dict[str, Any]:
        """The ``k`` nearest cases to ``case_id`` with distance, outcome and the reasons they are alike."""
        check_number(k, name="k", owner="similar", low=1, high=1000, integer=True)
        z = self.embeddings(outcome_aware=outcome_aware)
        q = self._row(case_id)
        if len(self.frame) < 2:
            raise DataError(f"Case '{case_id}' is the only case in this case frame; there is nothing to compare it with.")
        if self._profile is not None:  # feature profile: Euclidean distance, similarity 1 / (1 + distance)
            dist = np.sqrt(np.maximum(((z - z[q]) ** 2).sum(axis=1), 0.0))
            sims = 1.0 / (1.0 + dist)
        else:
            sims = z @ z[q]
            dist = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sims))
        sims[q] = -np.inf
        k = min(k, len(sims) - 1)
        top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        top = top[np.argsort(-sims[top], kind="stable")]
        neighbours = []
        for j in top:
            neighbours.append({
                "case_id": str(self.frame.index[j]), "distance": float(dist[j]),
                "similarity": float(sims[j]), "outcome": self._outcome(j), "reasons": self._reasons(q, j, n=n_reasons),
            })
        embedding = ("feature profile: age, sex, ICD-10 chapters and categories, medications, observations"
                     if self._profile is not None else
                     "hazard network penultimate layer" if outcome_aware else "autoencoder bottleneck")
        return {"case_id": str(self.frame.index[q]), "k": k, "outcome_aware": outcome_aware,
                "embedding": embedding, "outcome": self._outcome(q), "neighbours": neighbours}

    def _outcome(self, i: int) -> dict[str, Any] | None:
        if self.time not in self.frame.columns or self.event not in self.frame.columns:
            return None
        t, e = self.frame[self.time].iloc[i], self.frame[self.event].iloc[i]
        if pd.isna(t) or pd.isna(e):
            return None
        return {"time": float(t), "event": int(float(e))}

    def _reasons(self, q: int, j: int, *, n: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for col in CODE_COLUMNS:
            if col in self.frame.columns:
                a, b = split_codes(self.frame[col].iloc[[q, j]])
                shared = sorted(a & b)
                if shared:
                    out[f"shared_{col}"] = shared
                if col == "conditions":  # same ICD-10 category, not the same code (I21.4 and I21.9)
                    cats = sorted({icd10_category(c) for c in a - b} & {icd10_category(c) for c in b - a}
                                  - {icd10_category(c) for c in shared})
                    if cats:
                        out["shared_condition_categories"] = cats
        if self._numeric.shape[1]:
            a, b = self._numeric[q], self._numeric[j]
            both = ~np.isnan(a) & ~np.isnan(b)
            diff = np.where(both, np.abs(a - b) / self._scale, np.inf)
            order = [i for i in np.argsort(diff, kind="stable")[:n] if both[i]]
            out["closest_values"] = [{"column": self._numeric_cols[i], "query": _clean(a[i]), "case": _clean(b[i]),
                                      "difference_in_sd": float(diff[i])} for i in order]
        same = []
        for c in self._categorical_cols:
            va, vb = self.frame[c].iloc[q], self.frame[c].iloc[j]
            if not pd.isna(va) and not pd.isna(vb) and str(va) == str(vb):
                same.append({"column": c, "value": str(va)})
        if same:
            out["same_category"] = same[: max(n, 8)]
        return out

    # ------------------------------------------------------------------ cohorts
    def _cohort_rows(self, where: str | None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
        sub = self.frame.loc[filter_mask(self.frame, where)]
        if sub.empty:
            raise DataError(f"The filter {where!r} selects no cases.")
        _require_outcomes(sub, time=self.time, event=self.event, selected=bool(where))
        oc = outcome_rows(sub, time=self.time, event=self.event, missing="drop")
        return oc.frame, oc.time, oc.event, oc.notes

    def _groups(self, sub: pd.DataFrame, by: str, *, label: str | None = None, unit: str = "") -> tuple[np.ndarray, list[str]]:
        if by not in self.frame.columns:
            from medassist.options import unknown_name_error

            raise SchemaError(f"--by: {unknown_name_error(by, [str(c) for c in self.frame.columns], kind='column')}")
        s = sub[by]
        notes = []
        if infer_column_kind(s) == "numeric" and s.nunique() > MAX_NUMERIC_LEVELS:
            x = pd.to_numeric(s, errors="coerce")
            med = float(x.median())
            g = np.where(x.isna(), "missing", np.where(x <= med, f"{by} <= {med:g}", f"{by} > {med:g}"))
            notes.append(f"'{label or by}' is numeric: split at its median {med:g}{' ' + unit if unit else ''}.")
            return g.astype(object), notes
        text = s.map(lambda v: "missing" if pd.isna(v) else (str(int(v)) if isinstance(v, float) and float(v).is_integer() else str(v)))
        counts = text.value_counts()
        if len(counts) > MAX_GROUPS:
            keep = set(counts.index[: MAX_GROUPS - 1])
            text = text.where(text.isin(keep), "other")
            notes.append(f"'{label or by}' has {len(counts)} levels; all but the {MAX_GROUPS - 1} most frequent are merged into 'other'.")
        return text.to_numpy(dtype=object), notes

    def cohort(self, where: str | None = None, by: str | None = None, *, out_dir: Path | None = None,
               time_unit: str = "days", dictionary: DataDictionary | None = None,
               endpoint: dict[str, str] | None = None) -> dict[str, Any]:
        """Kaplan-Meier per group with 95% intervals, median survival, log-rank p, Cox hazard ratios, plots.

        ``dictionary`` (the data set's, keyed by the frame's columns) words the groups ("yes",
        "Initial systolic blood pressure <= 141.5 mm Hg") in ``text`` keys and on the plot; a group's
        ``label`` stays its value in the data. ``endpoint`` (:func:`endpoint_words`) names the y axis.
        """
        d = dictionary or DataDictionary()
        entry = d.get(by) if by else None
        by_label = entry.display_label if entry else by
        # the grouping column and its words as str, for the parts that only run with ``by``
        column, column_label = by or "", by_label or ""
        sub, t, d_event, notes = self._cohort_rows(where)
        groups, gnotes = self._groups(sub, by, label=by_label, unit=entry.unit if entry else "") if by else (None, [])
        notes += gnotes
        km = kaplan_meier_groups(t, d_event, groups)
        texts = {c.label: self._group_text(c.label, column, column_label, entry) for c in km.curves} if by else {}
        hr = None
        if groups is not None and len(km.curves) > 1:
            design, dnotes = cox_design(pd.DataFrame({column: groups}), [column])
            hr = cox_hazard_ratios(design, t, d_event)
            notes += dnotes
        words = endpoint or endpoint_words(None, dictionary=d)
        plots = {}
        if out_dir is not None:
            label = f"{where}" if where else "all cases"
            # on the plot the legend's title names the column: "≤ 141.5 mm Hg", not the label again
            shown = replace(km, curves=[replace(c, label=texts.get(c.label, c.label).removeprefix(f"{by_label} ")) for c in km.curves])
            plots["km"] = str(plot_km(shown, Path(out_dir) / "km.png", title=f"{label}{' by ' + column_label if by else ''}",
                                      time_unit=time_unit, ylabel=words["ylabel"], legend_title=column_label))
            if hr is not None:
                plots["forest"] = str(plot_forest(hr.rename(index=lambda k: self._hr_text(str(k), column, texts)),
                                                  Path(out_dir) / "cohort_hazard_ratios.png", title=f"Hazard ratios by {by_label}"))
        if by:  # "'chf': reference level '0'" → "Congestive heart complications: the reference group is 'no'"
            ref = re.compile(rf"^'{re.escape(by)}': reference level '(.*)'\.$")
            notes = [f"{by_label}: hazard ratios are against the group '{texts.get(m.group(1), m.group(1))}'."
                     if (m := ref.match(n)) else n for n in notes]
        hr_rows = _hr_records(hr)
        for h in hr_rows or []:
            h["label"] = self._hr_text(h["covariate"], column, texts)
        return {
            "where": where, "by": by, "by_label": by_label, "endpoint": words, "n": int(len(t)), "events": int(d_event.sum()),
            "groups": [{**c.to_dict(), "text": texts.get(c.label, c.label)} for c in km.curves], "logrank": km.logrank,
            "hazard_ratios": hr_rows, "cox_penalizer": COX_PENALIZER, "plots": plots, "notes": notes,
        }

    @staticmethod
    def _group_text(level: str, by: str, by_label: str, entry: Any) -> str:
        m = re.fullmatch(rf"{re.escape(by)} (<=|>) (.+)", str(level))
        if m:  # a numeric column split at its median
            unit = f" {entry.unit}" if entry is not None and entry.unit else ""
            return f"{by_label} {'≤' if m.group(1) == '<=' else '>'} {m.group(2)}{unit}"
        meaning = entry.meaning(level) if entry is not None else None
        return meaning if meaning and meaning != level else str(level)

    @staticmethod
    def _hr_text(covariate: str, by: str, texts: dict[str, str]) -> str:
        level = covariate.split("=", 1)[1] if covariate.startswith(f"{by}=") else covariate
        return texts.get(level, level)

    # ------------------------------------------------------------------ key factors
    def factors(self, where: str | None = None, *, top: int = 10, out_dir: Path | None = None, n_steps: int = 32,
                max_rows: int = 2000) -> dict[str, Any]:
        """What drives the outcome: multivariable Cox hazard ratios and, with a model, integrated gradients."""
        sub, t, d, notes = self._cohort_rows(where)
        if self.model is not None:
            covariates = list(self.model.encoder.covariates)
        else:
            covariates, more = select_covariates(sub, spec=SurvivalSpec(time=self.time, event=self.event))
            notes += more
        if not covariates:
            raise DataError("No covariates to relate to the outcome.")
        design, dnotes = cox_design(sub, covariates)
        hr = cox_hazard_ratios(design, t, d)
        notes += dnotes
        out: dict[str, Any] = {"where": where, "n": int(len(t)), "events": int(d.sum()), "cox_penalizer": COX_PENALIZER,
                               "hazard_ratios": _hr_records(hr.reindex(hr["p"].sort_values().index)), "attributions": None,
                               "plots": {}, "notes": notes}
        if self.model is not None:
            rows = np.arange(len(sub))
            if len(rows) > max_rows:
                rows = np.sort(np.random.default_rng(0).choice(rows, max_rows, replace=False))
                notes.append(f"Attributions averaged over a random {max_rows} of the {len(sub)} cases.")
            grouped, names = self._attributions(sub.iloc[rows], n_steps=n_steps)
            mean_abs, mean = np.abs(grouped).mean(axis=0), grouped.mean(axis=0)
            order = np.argsort(-mean_abs)[:top]
            out["attributions"] = {
                "method": "integrated gradients of the restricted mean survival time (days up to "
                          f"{self.model.edges[-1]:g}) against an average patient",
                "factors": [{"column": names[i], "mean_abs_days": float(mean_abs[i]), "mean_days": float(mean[i])} for i in order],
            }
        if out_dir is not None:
            shown = hr.reindex(hr["p"].sort_values().index).head(max(top, 1))
            out["plots"]["forest"] = str(plot_forest(shown, Path(out_dir) / "factor_hazard_ratios.png"))
        return out

    def _attributions(self, frame: pd.DataFrame, *, n_steps: int) -> tuple[np.ndarray, list[str]]:
        model = self._need_model("Attributions")
        x = model.features(frame)
        module = RestrictedMeanModule(model.nets, model.edges)
        attr = integrated_gradients(module, x, np.zeros(len(x), dtype=np.int64), n_steps=n_steps)
        return group_attributions(attr, model.encoder.input_columns)

    def patient_risk(self, case_id: str, *, top: int = 5, out_dir: Path | None = None, n_points: int = 60,
                     endpoint: dict[str, str] | None = None) -> dict[str, Any]:
        """One patient's predicted survival curve, restricted mean survival, and the factors that move it
        (``endpoint``: :func:`endpoint_words`, for the plot's y axis)."""
        model = self._need_model("A patient's risk curve")
        i = self._row(case_id)
        row = self.frame.iloc[[i]]
        x = model.features(row)
        times = np.linspace(0.0, float(model.edges[-1]), n_points)
        s = model.survival(x, times)[0]
        grouped, names = self._attributions(row, n_steps=64)
        order = np.argsort(-np.abs(grouped[0]))[:top]
        factors = []
        for j in order:
            col = names[j]
            value = row[col].iloc[0] if col in row.columns else (
                1 if ":" in col and col.split(":", 1)[1] in split_codes(row[col.split(":", 1)[0]])[0] else 0)
            factors.append({"column": col, "value": _clean(value) if not pd.isna(value) else None,
                            "effect_days": float(grouped[0, j]),
                            "direction": "longer expected survival" if grouped[0, j] > 0 else "shorter expected survival"})
        _, t, d, _ = self._cohort_rows(None)
        cohort_km = kaplan_meier(t, d, label="cohort")
        rmst = float(model.restricted_mean(x)[0])
        plots = {}
        if out_dir is not None:
            plots["risk"] = str(plot_risk_curve(times, s, Path(out_dir) / f"risk_{_safe_name(case_id)}.png", reference=cohort_km,
                                                title=f"Predicted survival of case {case_id}",
                                                ylabel=(endpoint or endpoint_words(None))["ylabel"]))
        marks = [float(q) for q in np.quantile(t, [0.25, 0.5, 0.75])]
        return {
            "case_id": str(self.frame.index[i]), "outcome": self._outcome(i),
            "curve": {"times": times.round(3).tolist(), "survival": s.round(5).tolist()},
            "survival_at": [{"time": m, "patient": float(np.interp(m, times, s)), "cohort": cohort_km.at(m)} for m in marks],
            "restricted_mean_days": rmst, "horizon_days": float(model.edges[-1]),
            "top_factors": factors, "plots": plots,
            "note": "effect_days: integrated-gradients share of this patient's restricted mean survival time versus an average patient.",
        }


def _require_outcomes(frame: pd.DataFrame, *, time: str, event: str, selected: bool = False) -> None:
    """Survival analyses (cohort, factors, risk curves, fitting) need an outcome; say so in one line."""
    if time not in frame.columns or event not in frame.columns or (frame[time].isna() | frame[event].isna()).all():
        raise DataError(f"Survival analysis needs outcomes, and no case{' selected' if selected else ''} has one "
                        f"('{time}', '{event}'): import cases with outcomes or Patient.deceased (similar cases work without).")


def _hr_records(hr: pd.DataFrame | None) -> list[dict[str, Any]] | None:
    if hr is None:
        return None
    return [{"covariate": str(k), **{c: _clean(v) for c, v in row.items()}} for k, row in hr.iterrows()]


def _safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text))[:80]


__all__ = ["CaseAnalysis"]
