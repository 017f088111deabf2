"""``medassist cases`` commands: analysis part (similar cases, cohort survival, key factors).

    medassist cases train-survival --dataset whas500 [--out BUNDLE] [--preset small|large]
    medassist cases similar ID --k 10 [--outcome-aware] [--json]   (no outcome needed without --outcome-aware)
    medassist cases cohort [--dataset D] [--where 'age > 60 and sex == "female"'] [--by COL] [--out DIR]
    medassist cases factors [--dataset D] [--where ...] [--case ID] [--out DIR]

Cases come from the case store (``medassist cases import``). Commands that need a model use
``--bundle``, else the bundle ``train-survival`` wrote by default for the data set, else they fit
a small model in-process (and say so).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from medassist.options import ModelSize

out = Console()
err = Console(stderr=True)



class SurvivalSize(StrEnum):
    """The ``ModelSize`` values the survival networks come in: ``base`` is a preset of the image
    models only, so ``--preset`` refuses it and names these instead."""

    SMALL = ModelSize.SMALL.value
    LARGE = ModelSize.LARGE.value


def _settings():
    from medassist.settings import Settings

    return Settings()


def _store(settings):
    from medassist.store.cases import CaseStore

    return CaseStore.from_settings(settings)


def _frame(store, dataset: str | None):
    from medassist.exceptions import EmptyDataError

    frame = store.frame(dataset=dataset)
    if frame.empty:
        where = f" in data set '{dataset}'" if dataset else ""
        raise EmptyDataError(f"The case store has no cases{where}; import some first (medassist cases import ...).")
    return frame


def default_bundle(settings, dataset: str | None) -> Path:
    return settings.bundles_dir / f"cases-survival-{dataset or 'all'}"


def _analysis(frame, settings, *, dataset: str | None, bundle: Path | None, need_model: bool, seed: int = 0):
    from medassist.assistants.cases import CaseAnalysis

    path = bundle or default_bundle(settings, dataset)
    if bundle is not None or path.exists():
        return CaseAnalysis.load(frame, path)
    if not need_model:
        return CaseAnalysis(frame=frame)
    ca = CaseAnalysis.fit(frame, seed=seed)
    for note in ca.notes[:1]:
        err.print(f"note: {note}", highlight=False)
    return ca


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "—" if x is None else format(x, spec)


def _emit_json(result: dict[str, Any]) -> None:
    typer.echo(json.dumps(result, indent=1, default=str))


def train_survival(
    dataset: str = typer.Option(None, "--dataset", help="Data set in the case store (default: every case)."),
    out_dir: Path = typer.Option(None, "--out", help="Bundle directory (default: MEDASSIST_HOME/bundles/cases-survival-DATASET)."),
    preset: SurvivalSize = typer.Option(SurvivalSize.SMALL, "--preset", case_sensitive=False, help="Model size; large has over a million parameters."),
    epochs: int = typer.Option(None, "--epochs", help="Most training epochs (default 150, early stopping)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and the training."),
    members: int = typer.Option(5, "--members", help="Cross-fitted hazard networks averaged into the curves (1-20)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Train the neural survival model and patient embedding on stored cases; write a bundle."""
    from medassist.pipeline.survival import case_survival_spec, train_survival_bundle

    settings = _settings()
    frame = _frame(_store(settings), dataset)
    target = out_dir or default_bundle(settings, dataset)
    spec = case_survival_spec(size=ModelSize(preset.value), seed=seed, n_members=members, epochs=epochs)
    res = train_survival_bundle(frame, spec=spec, source_name=f"case store ({dataset or 'all data sets'})", out_dir=target,
                                overwrite=overwrite, progress=progress, console=err)
    for note in res.notes:
        err.print(f"note: {note}", highlight=False)
    m = res.metrics
    err.print(f"held-out ({m['n']} cases, {m['events']} events): C-index {m['c_index']:.3f}, Uno's C {m['uno_c_index']:.3f}, "
              f"integrated Brier {_fmt(m['integrated_brier'], '.3f')}  ({res.n_parameters:,} parameters)", highlight=False)
    out.print(f"bundle: {res.bundle_dir}", highlight=False)


def similar(
    case: str = typer.Argument(..., help="Case id, MRN, source id or DATASET:ID."),
    k: int = typer.Option(10, "--k", help="How many similar cases."),
    outcome_aware: bool = typer.Option(False, "--outcome-aware", help="Embed with the survival network (cases alike in prognosis)."),
    dataset: str = typer.Option(None, "--dataset", help="Search within this data set (default: the query case's data set)."),
    bundle: Path = typer.Option(None, "--bundle", help="cases-survival bundle (default: the one train-survival wrote)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The k most similar earlier cases, with what happened to them and why they are alike."""
    settings = _settings()
    store = _store(settings)
    case_id = store.resolve(case)
    if dataset is None:
        dataset = str(store.get_case(case_id).get("dataset") or "") or None
    from medassist.assistants.cases import CaseAnalysis

    frame = _frame(store, dataset)
    # a survival model where the cases have outcomes to learn from; else the cases' feature profile
    ca = _analysis(frame, settings, dataset=dataset, bundle=bundle, need_model=CaseAnalysis.can_fit(frame))
    if ca.model is None and not outcome_aware:
        err.print("note: no survival model for these cases (too few outcomes to learn from); "
                  "similar cases by feature profile.", highlight=False)
    res = ca.similar(case_id, k=k, outcome_aware=outcome_aware)
    if as_json:
        _emit_json(res)
        return
    table = Table(title=f"Cases most similar to {case_id} ({res['embedding']})")
    for col in ("#", "case", "distance", "outcome", "why similar"):
        table.add_column(col)
    for i, n in enumerate(res["neighbours"], 1):
        o = n["outcome"]
        outcome = "—" if o is None else f"{'event' if o['event'] else 'censored'} at {o['time']:g} d"
        table.add_row(str(i), n["case_id"], f"{n['distance']:.3f}", outcome, _reason_text(n["reasons"]))
    out.print(table)


def _reason_text(r: dict[str, Any]) -> str:
    parts = []
    for key in ("shared_conditions", "shared_medications"):
        if key in r:
            parts.append(f"{key.split('_')[1]}: {', '.join(r[key][:5])}")
    if "shared_condition_categories" in r:
        parts.append(f"same ICD-10 category: {', '.join(r['shared_condition_categories'][:5])}")
    if r.get("closest_values"):
        parts.append("; ".join(f"{v['column']} {_fmt(v['query'])} vs {_fmt(v['case'])}" for v in r["closest_values"]))
    if r.get("same_category"):
        parts.append("same " + ", ".join(f"{v['column']}={v['value']}" for v in r["same_category"]))
    return " | ".join(parts)


def cohort(
    dataset: str = typer.Option(None, "--dataset", help="Data set in the case store (default: every case)."),
    where: str = typer.Option(None, "--where", help="Filter, e.g. 'age > 60 and sex == \"female\"' (and, or, not, in, contains)."),
    by: str = typer.Option(None, "--by", help="Column to compare groups by (numeric columns split at the median)."),
    out_dir: Path = typer.Option(Path("cases-cohort"), "--out", help="Directory for the PNG plots."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Kaplan-Meier curves with 95% intervals, median survival, log-rank test and Cox hazard ratios."""
    from medassist.assistants.case_words import case_dictionary, endpoint_of
    from medassist.assistants.cases import CaseAnalysis, endpoint_words

    store = _store(_settings())
    frame = _frame(store, dataset)
    if dataset:  # the data set's own words for groups and the endpoint, as on the cohort page
        dictionary = case_dictionary(store.db, dataset, [str(c) for c in frame.columns])
        endpoint = endpoint_of(store.db, dataset, dictionary)
    else:
        dictionary, endpoint = None, endpoint_words(None)
    res = CaseAnalysis(frame=frame).cohort(where, by, out_dir=out_dir, dictionary=dictionary, endpoint=endpoint)
    if as_json:
        _emit_json(res)
        return
    for note in res["notes"]:
        err.print(f"note: {note}", highlight=False)
    table = Table(title=f"Survival{' where ' + where if where else ''}{' by ' + by if by else ''}: {res['n']} cases, {res['events']} events")
    for col in ("group", "n", "events", "median (days)", "95% CI"):
        table.add_column(col)
    for g in res["groups"]:
        lo, hi = g["median_ci"]
        table.add_row(g["label"], str(g["n"]), str(g["events"]), _fmt(g["median"], ".0f"), f"[{_fmt(lo, '.0f')}, {_fmt(hi, '.0f')}]")
    out.print(table)
    if res["logrank"]:
        lr = res["logrank"]
        out.print(f"log-rank: chi2 {lr['statistic']:.2f} on {lr['df']} df, p = {lr['p_value']:.3g}", highlight=False)
    for h in res["hazard_ratios"] or []:
        out.print(f"hazard ratio {h['covariate']}: {h['hr']:.2f} [{h['ci_low']:.2f}, {h['ci_high']:.2f}] (Cox, penalizer {res['cox_penalizer']})",
                  highlight=False)
    for name, path in res["plots"].items():
        out.print(f"plot {name}: {path}", highlight=False)


def factors(
    dataset: str = typer.Option(None, "--dataset", help="Data set in the case store (default: every case)."),
    where: str = typer.Option(None, "--where", help="Restrict the cohort with a filter expression."),
    case: str = typer.Option(None, "--case", help="One patient: their risk curve and top factors."),
    top: int = typer.Option(10, "--top", help="How many factors to show."),
    bundle: Path = typer.Option(None, "--bundle", help="cases-survival bundle (default: the one train-survival wrote)."),
    out_dir: Path = typer.Option(Path("cases-factors"), "--out", help="Directory for the PNG plots."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What drives the outcome: Cox hazard ratios and the neural model's attributions (or one patient's)."""
    settings = _settings()
    store = _store(settings)
    case_id = store.resolve(case) if case else None
    ca = _analysis(_frame(store, dataset), settings, dataset=dataset, bundle=bundle, need_model=True)
    if case_id is not None:
        res = ca.patient_risk(case_id, top=top, out_dir=out_dir)
        if as_json:
            _emit_json(res)
            return
        o = res["outcome"]
        seen = "no outcome recorded" if o is None else f"observed: {'event' if o['event'] else 'censored'} at {o['time']:g} d"
        out.print(f"case {case_id}: expected {res['restricted_mean_days']:.0f} days alive within {res['horizon_days']:.0f} ({seen})",
                  highlight=False)
        for s in res["survival_at"]:
            out.print(f"  survival at {s['time']:.0f} d: patient {s['patient']:.2f}, cohort {s['cohort']:.2f}", highlight=False)
        table = Table(title="Top factors (integrated gradients, days of expected survival vs an average patient)")
        for col in ("factor", "value", "days", "direction"):
            table.add_column(col)
        for f in res["top_factors"]:
            table.add_row(f["column"], str(f["value"]), f"{f['effect_days']:+.0f}", f["direction"])
        out.print(table)
        for name, path in res["plots"].items():
            out.print(f"plot {name}: {path}", highlight=False)
        return
    res = ca.factors(where, top=top, out_dir=out_dir)
    if as_json:
        _emit_json(res)
        return
    for note in res["notes"]:
        err.print(f"note: {note}", highlight=False)
    table = Table(title=f"Cox hazard ratios ({res['n']} cases, {res['events']} events; penalizer {res['cox_penalizer']})")
    for col in ("covariate", "HR", "95% CI", "p"):
        table.add_column(col)
    for h in res["hazard_ratios"][:top]:
        table.add_row(h["covariate"], f"{h['hr']:.2f}", f"[{h['ci_low']:.2f}, {h['ci_high']:.2f}]", _fmt(h["p"]))
    out.print(table)
    if res["attributions"]:
        table = Table(title=f"Neural model: {res['attributions']['method']}")
        for col in ("factor", "mean |days|", "mean days"):
            table.add_column(col)
        for f in res["attributions"]["factors"]:
            table.add_row(f["column"], f"{f['mean_abs_days']:.1f}", f"{f['mean_days']:+.1f}")
        out.print(table)
    for name, path in res["plots"].items():
        out.print(f"plot {name}: {path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``cases`` sub-app."""
    app.command(name="train-survival")(train_survival)
    app.command(name="similar")(similar)
    app.command(name="cohort")(cohort)
    app.command(name="factors")(factors)
