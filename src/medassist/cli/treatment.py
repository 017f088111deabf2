"""Treatment handlers for ``medassist train | evaluate | predict`` and the ``advise`` command.

    medassist train --data actg175 --out models/actg
    medassist train --data trial.csv --task treatment --treatment arm --time days --event died --out models/t
    medassist advise models/actg --data patients.csv --out advice.csv
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from medassist.cli.commands import EvaluateRequest, PredictRequest, TrainRequest, emit_evaluation, err, out, train_options
from medassist.exceptions import ConfigError


def train_treatment(req: TrainRequest) -> None:
    from medassist.assistants.treatment import TreatmentTrainOptions, train_treatment_model

    if len(req.horizon) > 1:
        raise ConfigError(f"train --task treatment takes one --horizon; got {len(req.horizon)}.")
    opts = train_options(req, TreatmentTrainOptions)
    opts = replace(opts, horizon=req.horizon[0] if req.horizon else None)  # the treatment options hold one horizon
    outcome = train_treatment_model(
        req.data, out=req.out, treatment=opts.treatment_column, outcome=opts.target, time=opts.time_column,
        event=opts.event_column, horizon=opts.horizon, reference=opts.reference_arm, better=opts.better,
        assignment=opts.assignment, exclude=opts.exclude, id_column=opts.id_column, size=opts.size, seed=opts.seed,
        epochs=opts.epochs, ensemble=opts.ensemble, drop_missing_outcome=opts.drop_missing_target, overwrite=req.overwrite,
        progress=req.progress, console=err,
    )
    for note in outcome.notes:
        err.print(f"note: {note}", highlight=False)
    m = outcome.metrics
    fit = "  ".join(f"{k} {v['value']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]" for k, v in m["outcome_fit"].items())
    err.print(f"test outcome fit: {fit}", highlight=False)
    for name, e in m["effects"].items():
        a = e["dr_ate"]
        err.print(f"effect {name}: DR {a['value']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}], model mean {e['mean_predicted']:.3f}", highlight=False)
    gain = m["policy_value"].get("gain_over_best_single_arm")
    if gain:
        g = gain["dr"]
        err.print(f"policy gain over 'everyone gets {gain['best_single_arm']}' (DR): {g['value']:.3f} [{g['ci_low']:.3f}, {g['ci_high']:.3f}]",
                  highlight=False)
    err.print(f"overlap: {outcome.overlap['summary']}  ({outcome.n_parameters:,} parameters)", highlight=False)
    out.print(f"bundle: {outcome.bundle_dir}", highlight=False)


def evaluate_treatment(req: EvaluateRequest) -> None:
    from medassist.assistants.treatment import TreatmentAssistant, load_input

    if req.report is not None:
        err.print("note: treatment models have no HTML report yet; the metrics are printed as JSON.", highlight=False)
    assistant = TreatmentAssistant.load(req.bundle)
    frame, source = load_input(req.data)
    result = assistant.evaluate(frame, source=source.name, n_boot=req.n_boot)
    emit_evaluation(req, result)


def _advise_to(bundle: Path, data: str, out_path: Path, *, explain: bool, top_k: int, min_confidence: float | None = None) -> None:
    from medassist.assistants.treatment import TreatmentAssistant, load_input
    from medassist.data.io.tables import write_table

    assistant = TreatmentAssistant.load(bundle)
    frame, source = load_input(data)
    advice = assistant.advise(frame, source=source.name, explain=explain, top_k=top_k, min_confidence=min_confidence)
    write_table(advice, out_path)
    flagged = int((advice["flags"] != "").sum())
    err.print(f"wrote advice for {len(advice)} patient(s) to {out_path} ({flagged} with flags; model: "
              f"{assistant.model_card.get('name', '')})", highlight=False)
    out.print(f"advice: {out_path}", highlight=False)


def predict_treatment(req: PredictRequest) -> None:
    if req.data is None or req.out is None:
        raise ConfigError("A treatment model advises from a table: pass --data PATIENTS.csv and --out ADVICE.csv.")
    _advise_to(req.bundle, req.data, req.out, explain=req.explain, top_k=req.top_k)


def advise(
    bundle: Path = typer.Argument(..., help="Treatment model bundle directory."),
    data: str = typer.Option(..., "--data", help="CSV file with one row per patient (the model's covariates)."),
    out_path: Path = typer.Option(..., "--out", help="CSV file to write the advice to."),
    no_explain: bool = typer.Option(False, "--no-explain", help="Skip the effect modifiers (attributions)."),
    top_k: int = typer.Option(3, "--top-k", help="How many effect modifiers to list per patient."),
    min_confidence: float = typer.Option(None, "--min-confidence", help=(
        "Conservative rule: recommend the arm best on average in the trial unless the top-ranked arm beats it with at "
        "least this probability (e.g. 0.9). Default: recommend the top-ranked arm.")),
) -> None:
    """Per patient and arm: expected outcome with a 95% interval, the recommended arm, its benefit over the reference, flags."""
    from medassist.registry.bundle import read_bundle_task

    task = read_bundle_task(bundle)
    if task != "treatment":
        raise ConfigError(f"{bundle}: 'advise' needs a treatment model; this bundle is a '{task}' model (use 'medassist predict').")
    _advise_to(bundle, data, out_path, explain=not no_explain, top_k=top_k, min_confidence=min_confidence)
