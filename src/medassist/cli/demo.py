"""``medassist demo``: train and evaluate the diagnosis models on the bundled data sets."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from medassist.data.catalog import list_datasets
from medassist.settings import Settings

out = Console() if sys.stdout.isatty() else Console(width=120)  # a pipe or a log gets the full table
err = Console(stderr=True)


def demo(
    out_dir: Path = typer.Option(None, "--out", help="Where to write bundles (default: MEDASSIST_HOME/demo)."),
    models: list[str] = typer.Option(
        ["mlp:large", "ft:small"], "--model", help="FAMILY[:SIZE] to train (repeatable); SIZE is small or large."),
    epochs: int = typer.Option(60, "--epochs", help="Cap on epochs per model (early stopping may end sooner)."),
    datasets: list[str] = typer.Option([], "--dataset", help="Only these bundled data sets (repeatable)."),
) -> None:
    """Train, evaluate and report diagnosis models on every bundled data set."""
    from medassist.assistants.diagnosis import train_diagnosis

    settings = Settings()
    base = out_dir or settings.home / "demo"
    base.mkdir(parents=True, exist_ok=True)
    infos = [i for i in list_datasets() if i.assistant == "diagnosis" and (not datasets or i.name in datasets)]
    table = Table(title="medassist demo: tabular diagnosis on bundled real data (held-out test split)")
    for col in ("data set", "model", "parameters", "AUC [95% CI]", "accuracy", "ECE", "bundle"):
        table.add_column(col, overflow="fold")
    for info in infos:
        for entry in models:
            model, _, size = entry.partition(":")
            size = size or "small"
            err.rule(f"{info.name} · {model}-{size} · target '{info.target}'")
            outcome = train_diagnosis(
                info.name, out=base / f"{info.name}-{model}", model=model, size=size, epochs=epochs, overwrite=True, console=err,
            )
            m = outcome.metrics["metrics"]
            auc = m["auc"]
            k = outcome.n_members
            params = f"{k}×{outcome.n_parameters // k / 1e6:.2f}M" if k > 1 else f"{outcome.n_parameters / 1e6:.2f}M"
            table.add_row(
                info.name, f"{model}-{size}", params,
                f"{auc['value']:.3f} [{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]",
                f"{m['accuracy']['value']:.3f}", f"{m['ece']['value']:.3f}", outcome.bundle_dir.name,
            )
    out.print(table)
    out.print(f"\nBundles and reports are in {base}. Open a report.html in a browser; "
              f"predict with: medassist predict {base}/wdbc-mlp --data YOUR.csv --out preds.csv", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(demo)
