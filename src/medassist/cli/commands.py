"""``medassist train | evaluate | predict``: one command each for every assistant.

``train`` picks the task handler from ``--task`` (or, with ``auto``, from the data); ``evaluate``
and ``predict`` pick it from the ``task`` recorded in the bundle. A new assistant adds its
handlers to the tables below (import strings, so nothing heavy loads for ``--help``).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from medassist.exceptions import ConfigError
from medassist.options import ModelSize

out = Console()
err = Console(stderr=True)

#: ``--task`` → "module:function" taking a TrainRequest.
TRAIN_HANDLERS: dict[str, str] = {
    "diagnosis": "medassist.cli.diagnosis:train_table",
    "treatment": "medassist.cli.treatment:train_treatment",
    "image": "medassist.cli.imaging:train_images",
    "screening": "medassist.cli.screening:train_molecules",
    "survival": "medassist.cli.prognosis:train_survival",
}
#: bundle task (bundle.json "task") → "module:function" taking an EvaluateRequest / PredictRequest.
EVALUATE_HANDLERS: dict[str, str] = {
    "diagnosis-tabular": "medassist.cli.diagnosis:evaluate_table",
    "treatment": "medassist.cli.treatment:evaluate_treatment",
    "diagnosis-image": "medassist.cli.imaging:evaluate_images",
    "screening": "medassist.cli.screening:evaluate_molecules",
    "survival": "medassist.cli.prognosis:evaluate_survival",
    "cases-survival": "medassist.cli.prognosis:evaluate_survival",
}
PREDICT_HANDLERS: dict[str, str] = {
    "diagnosis-tabular": "medassist.cli.diagnosis:predict_table",
    "treatment": "medassist.cli.treatment:predict_treatment",
    "diagnosis-image": "medassist.cli.imaging:predict_image",
    "screening": "medassist.cli.screening:predict_molecules",
    "survival": "medassist.cli.prognosis:predict_survival",
    "cases-survival": "medassist.cli.prognosis:predict_survival",
}


@dataclass(frozen=True, kw_only=True)
class TrainRequest:
    """Everything ``medassist train`` was told. Each handler turns it into its task's options
    class (``train_options``), which refuses by name what the task does not accept."""

    data: str
    out: Path
    task: str
    # The defaults are the CLI's: an option whose value differs from its default counts as
    # set by the user, and a task that does not accept it refuses it (``train_options``).
    # A new option: add it here with the CLI's default and to the options class of every task
    # that honours it (``assistants/*.py``); every other task then refuses it by name.
    target: str | None = None
    model: str | None = None
    size: ModelSize = ModelSize.SMALL
    seed: int = 0
    id_column: str | None = None
    positive_class: str | None = None
    exclude: tuple[str, ...] = ()
    epochs: int | None = None
    ensemble: int = 0
    class_weight: str = "none"
    drop_missing_target: bool = False
    smiles_column: str | None = None
    treatment_column: str | None = None
    overwrite: bool = False
    progress: bool = True
    # differential privacy (DP-SGD through Opacus; recorded in the privacy ledger)
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0
    # treatment (survival outcome, comparator, direction, design)
    time_column: str | None = None
    event_column: str | None = None
    horizon: tuple[float, ...] = ()  # survival: every horizon; treatment: at most one
    reference_arm: str | None = None
    better: str | None = None
    assignment: str | None = None
    # images (DICOM/NIfTI CT window preset; a local checkpoint to start from)
    window: str | None = None
    init_from: Path | None = None
    # diagnosis: how inputs are encoded, and leaking columns kept knowingly
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    allow_leaky_column: tuple[str, ...] = ()
    dictionary: Path | None = None
    missing_values: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EvaluateRequest:
    bundle: Path
    data: str
    report: Path | None
    n_boot: int
    include_training_rows: bool = False
    json_output: bool = False
    out: Path | None = None


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


#: TrainRequest fields every task takes: where the data and the bundle are, not how to train.
COMMON_TRAIN_FIELDS = frozenset({"data", "out", "task", "overwrite", "progress"})
OptionsT = TypeVar("OptionsT")


def train_flag(field_name: str) -> str:
    """The ``medassist train`` option a TrainRequest field comes from (``time_column`` → ``--time``)."""
    param = inspect.signature(train).parameters.get(field_name)
    decls = getattr(param.default, "param_decls", None) if param is not None else None
    return decls[0] if decls else "--" + field_name.replace("_", "-")


def set_fields(req: TrainRequest) -> list[str]:
    """The options the user set: those whose value differs from the CLI's default."""
    names = []
    for f in fields(req):
        if f.name in COMMON_TRAIN_FIELDS or f.default is MISSING:
            continue
        value = getattr(req, f.name)
        if isinstance(value, (list, tuple)) and isinstance(f.default, (list, tuple)):
            value = tuple(value) if tuple(value) != tuple(f.default) else f.default  # [] from Typer is ()
        if value != f.default:
            names.append(f.name)
    return names


def train_options(req: TrainRequest, options: type[OptionsT]) -> OptionsT:
    """``req`` as the task's options class (a frozen dataclass its assistant owns).

    An option the user set is refused when the class lists it in ``REFUSED`` (with the reason
    given there) or does not declare it: "train --task screening does not accept --time,
    --event (accepted: ...)". Nothing set is ever silently dropped.
    """
    accepted = [f.name for f in fields(options)]  # type: ignore[arg-type]
    given = set_fields(req)
    refused_with_reason: dict[str, str] = getattr(options, "REFUSED", {})
    for name in given:
        if name in refused_with_reason:
            raise ConfigError(refused_with_reason[name])
    refused = [name for name in given if name not in accepted]
    if refused:
        raise ConfigError(f"train --task {req.task} does not accept {', '.join(train_flag(n) for n in refused)} "
                          f"(accepted: {', '.join(train_flag(n) for n in accepted)}).")
    values: dict[str, Any] = {name: getattr(req, name) for name in accepted if hasattr(req, name)}
    return options(**values)


def infer_task(data: str, *, survival_outcome: bool = False) -> str:
    """``auto``: a bundled data set's assistant; survival for a table given ``--time`` and
    ``--event`` (and no ``--treatment``); else diagnosis from a table."""
    from medassist.data.catalog import get_dataset, is_dataset_name

    if not Path(data).exists() and is_dataset_name(data):
        return get_dataset(data).assistant
    if survival_outcome:
        return "survival"
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
    model: str = typer.Option(None, "--model", help="Model family (diagnosis: tabm (default; TabM, 32 weight-sharing members) | mlp | ft | auto: tabm or a logistic regression, whichever has the higher validation AUC)."),
    size: ModelSize = typer.Option(None, "--size", case_sensitive=False, show_default=False, help="Model size (default small; images: base). large has over a million parameters, and so has base (images only)."),
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
    time_column: str = typer.Option(None, "--time", help="Survival, treatment: follow-up time column of a survival outcome."),
    event_column: str = typer.Option(None, "--event", help="Survival, treatment: event column (1/0, true/false, yes/no, dead/alive; 1 = event)."),
    horizon: list[float] = typer.Option([], "--horizon", help="Survival: predict survival at this time (repeatable; default 1/2/5 years for days, else follow-up quartiles). Treatment: report RMST and risk up to this time (once)."),
    reference_arm: str = typer.Option(None, "--reference", help="Treatment: the comparator arm."),
    better: str = typer.Option(None, "--better", help="Treatment: higher | lower outcome is better."),
    assignment: str = typer.Option(None, "--assignment", help="Treatment: randomised | observational (default observational for a CSV)."),
    window: str = typer.Option(None, "--window", help="Images: CT window preset for DICOM/NIfTI (lung | mediastinum | brain | bone | abdomen)."),
    init_from: Path = typer.Option(None, "--init-from", help="Images: start from a local checkpoint (.safetensors, a medassist bundle folder, or a PyTorch state-dict file); layers that do not fit are listed and skipped."),
    categorical: list[str] = typer.Option([], "--categorical", help="Diagnosis: encode this column as categories (repeatable); few-valued integer codes are by default."),
    numeric: list[str] = typer.Option([], "--numeric", help="Diagnosis: encode this column as a number, not as categories (repeatable)."),
    dictionary: Path = typer.Option(None, "--dictionary", help="Diagnosis: data dictionary (REDCap CSV, CSV, YAML or JSON): labels, units, codes, column types."),
    allow_leaky_column: list[str] = typer.Option([], "--allow-leaky-column", help="Diagnosis: keep a column flagged as leaking the target (repeatable; recorded in the model card)."),
    missing_values: list[str] = typer.Option([], "--missing-values", help="Diagnosis: values that mean missing in a column, e.g. \"insulin=0\" or \"bmi=0,-99\" (repeatable; counted, printed, kept with the model)."),
    dp_epsilon: float = typer.Option(None, "--dp-epsilon", help="Train with DP-SGD to this ε (spends privacy budget)."),
    dp_delta: float = typer.Option(1e-5, "--dp-delta", help="DP-SGD δ."),
    dp_max_grad_norm: float = typer.Option(1.0, "--dp-max-grad-norm", help="DP-SGD per-sample gradient clipping norm."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle at --out."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Train a model for an assistant; writes a bundle with report.html and a model card."""
    task = (infer_task(data, survival_outcome=bool(time_column and event_column and not treatment_column))
            if task == "auto" else task.strip().lower())
    request = TrainRequest(
        data=data, out=out_dir, task=task, target=target, model=model, seed=seed, id_column=id_column,
        size=size if size is not None else (ModelSize.BASE if task == "image" else ModelSize.SMALL),
        positive_class=positive_class, exclude=tuple(exclude), epochs=epochs, ensemble=ensemble,
        class_weight=class_weight, drop_missing_target=drop_missing_target, smiles_column=smiles_column,
        treatment_column=treatment_column, overwrite=overwrite, progress=not no_progress,
        dp_epsilon=dp_epsilon, dp_delta=dp_delta, dp_max_grad_norm=dp_max_grad_norm,
        time_column=time_column, event_column=event_column, horizon=tuple(horizon), reference_arm=reference_arm,
        better=better, assignment=assignment, window=window, init_from=init_from,
        categorical=tuple(categorical), numeric=tuple(numeric), allow_leaky_column=tuple(allow_leaky_column), dictionary=dictionary,
        missing_values=tuple(missing_values),
    )
    _resolve(TRAIN_HANDLERS, task, what="training")(request)


def evaluate(
    bundle: Path = typer.Argument(..., help="Model bundle directory."),
    data: str = typer.Option(..., "--data", help="Labelled data (CSV file or bundled data set name)."),
    report: Path = typer.Option(None, "--report", help="Also write an HTML report here."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the 95% intervals."),
    include_training_rows: bool = typer.Option(False, "--include-training-rows", help="Tabular: also evaluate rows the model was trained on (counted and labelled)."),
    json_output: bool = typer.Option(False, "--json", help="Print the full results as JSON instead of a summary."),
    out_path: Path = typer.Option(None, "--out", help="Also write the full results as JSON to this file."),
) -> None:
    """Metrics (with bootstrap 95% intervals) of a bundle on labelled data: a summary, or JSON."""
    from medassist.registry.bundle import read_bundle_task

    task = read_bundle_task(bundle)
    if include_training_rows and task != "diagnosis-tabular":
        raise ConfigError(f"--include-training-rows is for tabular diagnosis bundles; this bundle is a '{task}' model.")
    request = EvaluateRequest(bundle=bundle, data=data, report=report, n_boot=n_boot, include_training_rows=include_training_rows,
                              json_output=json_output, out=out_path)
    _resolve(EVALUATE_HANDLERS, task, what="evaluation")(request)


def format_interval(m: dict[str, Any]) -> str:
    v, lo, hi = m.get("value"), m.get("ci_low"), m.get("ci_high")
    if not isinstance(v, (int, float)):
        return "n/a"
    return f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) else "")


def emit_evaluation(req: EvaluateRequest, result: dict[str, Any], *, lines: list[str] | None = None) -> None:
    """Show an evaluation: JSON to ``--out`` (written whole, then renamed) and to stdout with
    ``--json``; otherwise a short summary (``lines``, or every metric with its interval)."""
    import json

    from medassist.fileio import write_atomic

    text = json.dumps(result, indent=1, default=float)
    if req.out is not None:
        write_atomic(Path(req.out), text + "\n", encoding=None)
    if req.json_output:
        typer.echo(text)
        return
    if lines is None:
        lines = []
        given = result.get("metrics")
        metrics = given if isinstance(given, dict) else {}
        shown = [f"{k} {format_interval(m)}" for k, m in metrics.items() if isinstance(m, dict) and "value" in m]
        if "n" in result:
            lines.append(f"{result['n']} rows evaluated")
        if shown:
            lines.append("  ".join(shown))
        for w in result.get("warnings", []) or []:
            lines.append(f"warning: {w}")
    for line in lines:
        out.print(line, highlight=False, soft_wrap=True)
    if req.out is not None:
        out.print(f"metrics (JSON): {req.out}", highlight=False)
    if result.get("report"):
        out.print(f"report: {result['report']}", highlight=False)
    if req.out is None:
        out.print("(full results: --json, or --out FILE.json)", highlight=False)


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
