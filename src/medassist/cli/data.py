"""``medassist data ...``: the bundled data sets and data-quality checks."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from medassist.data.catalog import get_dataset, list_datasets
from medassist.data.io.tables import write_table
from medassist.data.quality import assess_quality
from medassist.data.sources import resolve_table

app = typer.Typer(help="Bundled data sets and data-quality reports.", no_args_is_help=True)
out = Console()


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the bundled real data sets (nothing is downloaded)."""
    infos = list_datasets()
    if as_json:
        typer.echo(json.dumps([i.describe() for i in infos], indent=1))
        return
    table = Table(title="Bundled data sets (read from installed packages, offline)")
    for col in ("name", "assistant", "rows", "target", "positive", "source", "licence"):
        table.add_column(col, overflow="fold")
    for i in infos:
        table.add_row(i.name, i.assistant, str(i.n_rows), i.target, i.positive_class or "", i.source, i.licence)
    out.print(table)


@app.command("check")
def check_cmd(
    file: str = typer.Argument(..., help="CSV file (or bundled data set name) to check."),
    target: str | None = typer.Option(None, "--target", help="Outcome column: adds class balance and leakage checks."),
    id_column: str | None = typer.Option(None, "--id-column", help="Patient ID column."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Data-quality report: types, missingness, duplicates, ranges, ID and leakage suspects, balance."""
    frame, source = resolve_table(file)
    if source.dataset is not None:
        target = target or source.dataset.target
        id_column = id_column or source.dataset.id_column
    if target and target not in frame.columns:
        from medassist.exceptions import SchemaError

        raise SchemaError(f"{source.name}: target column '{target}' not found. The table has: {', '.join(map(str, frame.columns))}.")
    report = assess_quality(frame, target=target, id_columns=[id_column] if id_column else [], source=source.name)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1))
    else:
        report.render(out)
    if report.has_errors:
        raise typer.Exit(1)


@app.command("export")
def export_cmd(
    name: str = typer.Argument(..., help="Bundled data set name."),
    out_path: Path = typer.Argument(..., help="CSV file to write."),
) -> None:
    """Write a bundled data set to CSV (to look at it, or as a template for your own data)."""
    info = get_dataset(name)
    write_table(info.load(), out_path)
    typer.echo(f"wrote {out_path} ({info.n_rows} rows, target '{info.target}', licence: {info.licence})")


@app.command("fetch")
def fetch_cmd(
    kind: str = typer.Argument(..., help="What to fetch: medmnist."),
    name: str = typer.Option(..., "--name", help="MedMNIST data set, e.g. pneumoniamnist, chestmnist, dermamnist."),
    size: int = typer.Option(28, "--size", help="Image size: 28, 64, 128 or 224."),
    dest: Path = typer.Option(None, "--dest", help="Folder to write to (default: MEDASSIST_HOME/data/medmnist)."),
    base_url: str = typer.Option(None, "--base-url", help="Where the files lie (default: the official Zenodo record; or MEDASSIST_MEDMNIST_URL)."),
    md5: str = typer.Option(None, "--md5", help="Expected MD5 (only for a mirror serving a different file; default: the published one)."),
) -> None:
    """Download an official MedMNIST file (MD5-checked, resumable). The only command that downloads data."""
    from medassist.data.fetch import fetch_medmnist
    from medassist.exceptions import ConfigError
    from medassist.settings import Settings

    if kind.strip().lower() != "medmnist":
        raise ConfigError(f"Unknown thing to fetch '{kind}'. Valid: medmnist.")
    dest = dest or Settings().home.expanduser() / "data" / "medmnist"
    path = fetch_medmnist(name, size=size, dest_dir=dest, base_url=base_url, md5=md5)
    typer.echo(f"{path} (MD5 verified)")
