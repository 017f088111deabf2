"""``medassist train | evaluate | predict`` for tabular diagnosis models."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from medassist.data.io.tables import write_table

# The assistants (and torch behind them) load inside each command, so that `medassist --help`
# and `medassist data list` start quickly.

out = Console()
err = Console(stderr=True)


def train(
    data: str = typer.Option(..., "--data", help="CSV file or bundled data set name (see 'medassist data list')."),
    out_dir: Path = typer.Option(..., "--out", help="Directory to write the model bundle to."),
    target: str = typer.Option(None, "--target", help="Outcome column (bundled data sets have a default)."),
    model: str = typer.Option("mlp", "--model", help="mlp | ft"),
    size: str = typer.Option("small", "--size", help="small | large (over a million parameters)"),
    seed: int = typer.Option(0, "--seed", help="Seed for splits, initialisation and data order."),
    id_column: str = typer.Option(None, "--id-column", help="Patient ID column: splits keep a patient's rows together."),
    positive_class: str = typer.Option(None, "--positive-class", help="Positive class of a binary outcome."),
    exclude: list[str] = typer.Option([], "--exclude", help="Column not to use as input (repeatable)."),
    epochs: int = typer.Option(None, "--epochs", help="Maximum epochs (early stopping may end sooner)."),
    ensemble: int = typer.Option(0, "--ensemble", help="Members of a cross-fitted deep ensemble (1: one model; 0: 5 for mlp, 1 for ft)."),
    class_weight: str = typer.Option("none", "--class-weight", help="none | balanced (reweights rare classes; probabilities are corrected back)."),
    drop_missing_target: bool = typer.Option(False, "--drop-missing-target", help="Drop rows whose outcome is missing (recorded in the model card)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle at --out."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Train a diagnosis model on a table; writes a bundle with report.html and a model card."""
    from medassist.assistants.diagnosis import train_diagnosis

    outcome = train_diagnosis(
        data, out=out_dir, target=target, model=model, size=size, seed=seed, id_column=id_column,
        positive_class=positive_class, exclude=tuple(exclude), epochs=epochs, ensemble=ensemble, class_weight=class_weight, drop_missing_target=drop_missing_target,
        overwrite=overwrite, progress=not no_progress, console=err,
    )
    m = outcome.metrics["metrics"]
    for note in outcome.notes:
        err.print(f"note: {note}", highlight=False)

    def fmt(k: str) -> str:
        v = m[k]
        return "n/a" if v["value"] is None else f"{v['value']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"

    err.print(
        f"test AUC {fmt('auc')}  accuracy {fmt('accuracy')}  ECE {fmt('ece')}  "
        f"({outcome.n_parameters:,} parameters, best epoch {outcome.result.best_epoch})", highlight=False,
    )
    out.print(f"bundle: {outcome.bundle_dir}\nreport: {outcome.report}", highlight=False)


def evaluate(
    bundle: Path = typer.Argument(..., help="Model bundle directory."),
    data: str = typer.Option(..., "--data", help="Labelled CSV file (or bundled data set name)."),
    report: Path = typer.Option(None, "--report", help="Also write an HTML report here."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the 95% intervals."),
) -> None:
    """Metrics (with bootstrap 95% intervals) of a bundle on labelled data, as JSON."""
    from medassist.assistants.diagnosis import DiagnosisAssistant, load_input

    assistant = DiagnosisAssistant.load(bundle)
    frame, source = load_input(data)
    result = assistant.evaluate(frame, source=source.name, n_boot=n_boot, report=report)
    typer.echo(json.dumps(result, indent=1))


def predict(
    bundle: Path = typer.Argument(..., help="Model bundle directory."),
    data: str = typer.Option(..., "--data", help="CSV file with the model's input columns."),
    out_path: Path = typer.Option(..., "--out", help="CSV file to write predictions to."),
    explain: bool = typer.Option(True, "--explain/--no-explain", help="Add the top attributions per row."),
    top_k: int = typer.Option(3, "--top-k", help="How many factors to list per row."),
) -> None:
    """Predict every row (in order): prediction, prob_<class>, and the top factors behind it."""
    from medassist.assistants.diagnosis import DiagnosisAssistant, load_input

    assistant = DiagnosisAssistant.load(bundle)
    frame, source = load_input(data)
    extra = [c for c in frame.columns if c not in assistant.bundle.featurizer.columns_ and c != assistant.bundle.schema.id_column]
    if extra:
        err.print(f"note: column(s) not used by the model: {', '.join(map(str, extra))}", highlight=False)
    preds = assistant.predict(frame, source=source.name, explain=explain, top_k=top_k)
    write_table(preds, out_path)
    err.print(f"wrote {len(preds)} predictions to {out_path} (model: {assistant.bundle.model_card.get('name', '')})", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(evaluate)
    app.command()(predict)
