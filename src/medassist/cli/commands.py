"""``medassist train | evaluate | predict``: one command each for every assistant.

``train`` picks the task handler from ``--task`` (or, with ``auto``, from the data); ``evaluate``
and ``predict`` pick it from the ``task`` recorded in the bundle. A new assistant adds its
handlers to the tables below (import strings, so nothing heavy loads for ``--help``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

from medassist.exceptions import ConfigError

out = Console()
err = Console(stderr=True)

#: ``--task`` → "module:function" taking a TrainRequest.
TRAIN_HANDLERS: dict[str, str] = {
    "diagnosis": "medassist.cli.diagnosis:train_table",
    "treatment": "medassist.cli.treatment:train_treatment",
    "image": "medassist.cli.imaging:train_images",
    "screening": "medassist.cli.screening:train_molecules",
}
#: bundle task (bundle.json "task") → "module:function" taking an EvaluateRequest / PredictRequest.
EVALUATE_HANDLERS: dict[str, str] = {
    "diagnosis-tabular": "medassist.cli.diagnosis:evaluate_table",
    "treatment": "medassist.cli.treatment:evaluate_treatment",
    "diagnosis-image": "medassist.cli.imaging:evaluate_images",
    "screening": "medassist.cli.screening:evaluate_molecules",
}
PREDICT_HANDLERS: dict[str, str] = {
    "diagnosis-tabular": "medassist.cli.diagnosis:predict_table",
    "treatment": "medassist.cli.treatment:predict_treatment",
    "diagnosis-image": "medassist.cli.imaging:predict_image",
    "screening": "medassist.cli.screening:predict_molecules",
}


@dataclass(frozen=True, kw_only=True)
class TrainRequest:
    """Everything ``medassist train`` was told; each handler reads what its task needs."""

    data: str
    out: Path
    task: str
    target: str | None
    model: str | None
    size: str
    seed: int
    id_column: str | None
    positive_class: str | None
    exclude: tuple[str, ...]
    epochs: int | None
    ensemble: int
    class_weight: str
    drop_missing_target: bool
    smiles_column: str | None
    treatment_column: str | None
    overwrite: bool
    progress: bool
    # differential privacy (DP-SGD through Opacus; recorded in the privacy ledger)
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0
    # treatment (survival outcome, comparator, direction, design)
    time_column: str | None = None
    event_column: str | None = None
    horizon: float | None = None
    reference_arm: str | None = None
    better: str | None = None
    assignment: str | None = None
    # images (DICOM/NIfTI CT window preset)
    window: str | None = None


@dataclass(frozen=True, kw_only=True)
class EvaluateRequest:
    bundle: Path
    data: str
    report: Path | None
    n_boot: int


@dataclass(frozen=True, kw_only=True)
class PredictRequest:
    bundle: Path
    data: str | None
    image: Path | None
    out: Path | None
    explain: bool
    explain_path: Path | None
    top_k: int


def _resolve(table: dict[str, str], key: str, *, what: str):
    if key not in table:
        raise ConfigError(f"No {what} handler for '{key}'. Known: {', '.join(sorted(table))}.")
    module, _, func = table[key].partition(":")
    return getattr(importlib.import_module(module), func)


def infer_task(data: str) -> str:
    """``auto``: a bundled data set's assistant, else diagnosis from a table."""
    from medassist.data.catalog import get_dataset, is_dataset_name

    if not Path(data).exists() and is_dataset_name(data):
        return get_dataset(data).assistant
    from medassist.data.io.images import is_image_csv  # a .npz, a folder or a path,label CSV: images

    path = Path(data)
    if path.is_dir() or path.suffix.lower() == ".npz" or (path.suffix.lower() == ".csv" and path.is_file() and is_image_csv(path)):
        return "image"
    return "diagnosis"


def train(
    data: str = typer.Option(..., "--data", help="CSV file or bundled data set name (see 'medassist data list')."),
    out_dir: Path = typer.Option(..., "--out", help="Directory to write the model bundle to."),
    task: str = typer.Option("auto", "--task", help="auto | " + " | ".join(TRAIN_HANDLERS)),
    target: str = typer.Option(None, "--target", "--outcome", help="Outcome column (bundled data sets have a default)."),
    model: str = typer.Option(None, "--model", help="Model family (diagnosis: mlp | ft)."),
    size: str = typer.Option("small", "--size", help="small | large (over a million parameters)."),
    seed: int = typer.Option(0, "--seed", help="Seed for splits, initialisation and data order."),
    id_column: str = typer.Option(None, "--id-column", help="Patient ID column: splits keep a patient's rows together."),
    positive_class: str = typer.Option(None, "--positive-class", help="Positive class of a binary outcome."),
    exclude: list[str] = typer.Option([], "--exclude", help="Column not to use as input (repeatable)."),
    epochs: int = typer.Option(None, "--epochs", help="Maximum epochs (early stopping may end sooner)."),
    ensemble: int = typer.Option(0, "--ensemble", help="Members of a cross-fitted deep ensemble (0: the task's default)."),
    class_weight: str = typer.Option("none", "--class-weight", help="none | balanced (probabilities are corrected back)."),
    drop_missing_target: bool = typer.Option(False, "--drop-missing-target", help="Drop rows whose outcome is missing (recorded in the model card)."),
    smiles_column: str = typer.Option(None, "--smiles-column", help="Screening: the column holding SMILES."),
    treatment_column: str = typer.Option(None, "--treatment-column", "--treatment", help="Treatment: the column naming the arm."),
    time_column: str = typer.Option(None, "--time", help="Treatment: follow-up time column of a survival outcome."),
    event_column: str = typer.Option(None, "--event", help="Treatment: event column of a survival outcome (1 event, 0 censored)."),
    horizon: float = typer.Option(None, "--horizon", help="Treatment: report RMST and risk up to this time."),
    reference_arm: str = typer.Option(None, "--reference", help="Treatment: the comparator arm."),
    better: str = typer.Option(None, "--better", help="Treatment: higher | lower outcome is better."),
    assignment: str = typer.Option(None, "--assignment", help="Treatment: randomised | observational (default observational for a CSV)."),
    window: str = typer.Option(None, "--window", help="Images: CT window preset for DICOM/NIfTI (lung | mediastinum | brain | bone | abdomen)."),
    dp_epsilon: float = typer.Option(None, "--dp-epsilon", help="Train with DP-SGD to this ε (spends privacy budget)."),
    dp_delta: float = typer.Option(1e-5, "--dp-delta", help="DP-SGD δ."),
    dp_max_grad_norm: float = typer.Option(1.0, "--dp-max-grad-norm", help="DP-SGD per-sample gradient clipping norm."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle at --out."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Train a model for an assistant; writes a bundle with report.html and a model card."""
    task = infer_task(data) if task == "auto" else task.strip().lower()
    request = TrainRequest(
        data=data, out=out_dir, task=task, target=target, model=model, size=size, seed=seed, id_column=id_column,
        positive_class=positive_class, exclude=tuple(exclude), epochs=epochs, ensemble=ensemble,
        class_weight=class_weight, drop_missing_target=drop_missing_target, smiles_column=smiles_column,
        treatment_column=treatment_column, overwrite=overwrite, progress=not no_progress,
        dp_epsilon=dp_epsilon, dp_delta=dp_delta, dp_max_grad_norm=dp_max_grad_norm,
        time_column=time_column, event_column=event_column, horizon=horizon, reference_arm=reference_arm,
        better=better, assignment=assignment, window=window,
    )
    _resolve(TRAIN_HANDLERS, task, what="training")(request)


def evaluate(
    bundle: Path = typer.Argument(..., help="Model bundle directory."),
    data: str = typer.Option(..., "--data", help="Labelled data (CSV file or bundled data set name)."),
    report: Path = typer.Option(None, "--report", help="Also write an HTML report here."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the 95% intervals."),
) -> None:
    """Metrics (with bootstrap 95% intervals) of a bundle on labelled data, as JSON."""
    from medassist.registry.bundle import read_bundle_task

    request = EvaluateRequest(bundle=bundle, data=data, report=report, n_boot=n_boot)
    _resolve(EVALUATE_HANDLERS, read_bundle_task(bundle), what="evaluation")(request)


def predict(
    bundle: Path = typer.Argument(..., help="Model bundle directory."),
    data: str = typer.Option(None, "--data", help="CSV file with the model's input columns."),
    image: Path = typer.Option(None, "--image", help="An image (DICOM, NIfTI, PNG) for an image model."),
    out_path: Path = typer.Option(None, "--out", help="CSV file to write predictions to."),
    no_explain: bool = typer.Option(False, "--no-explain", help="Skip the attributions."),
    explain_path: Path = typer.Option(None, "--explain", help="Image models: write the explanation overlay PNG here."),
    top_k: int = typer.Option(3, "--top-k", help="How many factors to list per row."),
) -> None:
    """Predict with a bundle: every input row in order, with probabilities and the factors behind them."""
    from medassist.registry.bundle import read_bundle_task

    request = PredictRequest(bundle=bundle, data=data, image=image, out=out_path, explain=not no_explain,
                             explain_path=explain_path, top_k=top_k)
    _resolve(PREDICT_HANDLERS, read_bundle_task(bundle), what="prediction")(request)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(evaluate)
    app.command()(predict)
