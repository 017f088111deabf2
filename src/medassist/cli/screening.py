"""Screening handlers for ``medassist train | evaluate | predict`` and the ``screen`` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from medassist.cli.commands import EvaluateRequest, PredictRequest, TrainRequest, emit_evaluation, err, out, train_options
from medassist.exceptions import ConfigError, DataError
from medassist.fileio import write_atomic

if TYPE_CHECKING:
    from medassist.pipeline.screen import ScreenChunk


def _fmt(v: dict) -> str:
    if not v or v.get("value") is None:
        return "n/a"
    ci = "" if v.get("ci_low") is None else f" [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
    return f"{v['value']:.3f}{ci}"


def train_molecules(req: TrainRequest) -> None:
    from medassist.assistants.screening import ScreeningTrainOptions, train_screening_model

    opts = train_options(req, ScreeningTrainOptions)
    outcome = train_screening_model(
        req.data, out=req.out, target=opts.target, smiles_column=opts.smiles_column, model=opts.model, size=opts.size,
        seed=opts.seed, epochs=opts.epochs, ensemble=opts.ensemble, id_column=opts.id_column, positive_class=opts.positive_class,
        overwrite=req.overwrite, progress=req.progress, console=err,
    )
    for note in outcome.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)
    key = ("rmse", "r2", "spearman") if outcome.kind == "regression" else ("auc", "accuracy", "ece")
    for target, m in outcome.metrics.items():
        ms = m.get("metrics", {})
        err.print(f"test {target}: " + "  ".join(f"{k.upper() if k != 'spearman' else 'Spearman'} {_fmt(ms.get(k, {}))}" for k in key)
                  + f"  (n = {m.get('n')})", highlight=False, soft_wrap=True)
    members = f"{outcome.n_members} members, " if outcome.n_members > 1 else ""
    err.print(f"({members}{outcome.n_parameters:,} parameters, best epoch {outcome.result.best_epoch}, {outcome.seconds:.1f} CPU s)",
              highlight=False, soft_wrap=True)
    out.print(f"bundle: {outcome.bundle_dir}\nreport: {outcome.bundle_dir / 'report.html'}", highlight=False, soft_wrap=True)


def evaluate_molecules(req: EvaluateRequest) -> None:
    from medassist.assistants.screening import ScreeningAssistant

    if req.report is not None:
        raise ConfigError("--report is not available for screening models yet; the bundle's report.html covers the test split.")
    result = ScreeningAssistant.load(req.bundle).evaluate(req.data, n_boot=req.n_boot)
    for line in result["skipped"]:
        err.print(f"note: skipped {line}", highlight=False, soft_wrap=True)
    emit_evaluation(req, result)


#: Atom attributions cost ~32 forward passes per molecule; above this many rows predict skips
#: them (and says so) unless --explain asks for pictures.
MAX_EXPLAINED_ROWS = 2000


def predict_molecules(req: PredictRequest) -> None:
    from medassist.assistants.screening import ScreeningAssistant
    from medassist.data.io.tables import write_table

    if req.data is None or req.out is None:
        raise ConfigError("A screening model predicts from molecules: pass --data FILE (.csv/.smi/.sdf) and --out PREDICTIONS.csv.")
    assistant = ScreeningAssistant.load(req.bundle)
    from medassist.assistants.screening import load_molecules

    frame, source, col, blocks = load_molecules(req.data)
    n = len(blocks) if blocks is not None else len(frame)
    explain = req.explain and n <= MAX_EXPLAINED_ROWS
    if req.explain and not explain:
        err.print(f"note: {n} rows; atom attributions (top_atoms) are only computed for up to {MAX_EXPLAINED_ROWS} rows.", highlight=False, soft_wrap=True)
    from medassist.pipeline.molecules import predict_frame

    preds, skipped = predict_frame(assistant.bundle, frame, smiles_column=col, source=source.name, molblocks=blocks,
                                   explain=explain, top_k=req.top_k)
    if req.explain_path is not None:
        _write_maps(assistant, preds, req.explain_path)
    write_table(preds, req.out)
    if skipped:
        from medassist.data.io.molecules import summarize_skipped

        err.print(f"note: {len(skipped)} molecule(s) could not be scored (status column says why): "
                  + "; ".join(summarize_skipped(skipped)), highlight=False, soft_wrap=True)
    err.print(f"wrote {len(preds)} predictions to {req.out}", highlight=False, soft_wrap=True)


def _write_maps(assistant, preds, path: Path) -> None:
    """One similarity map: ``path`` ending in .png draws the first usable row; otherwise ``path``
    is a directory with one PNG per usable row (at most 100)."""
    from rdkit import Chem

    from medassist.explain.molecules import atom_attributions, similarity_map_png

    ok = preds.index[preds["status"] == "ok"].tolist()
    if not ok:
        raise ConfigError("No molecule could be scored, so there is nothing to explain.")
    path = Path(path)
    single = path.suffix.lower() == ".png"
    rows = ok[:1] if single else ok[:100]
    if not single:
        path.mkdir(parents=True, exist_ok=True)
    for r in rows:
        mol = Chem.MolFromSmiles(preds.loc[r, "smiles_canonical"])
        png = similarity_map_png(mol, atom_attributions(assistant.bundle, mol), legend=f"row {r + 1}")
        target = path if single else path / f"row_{r + 1:06d}.png"
        write_atomic(target, png)
    where = path if single else f"{path}/ ({len(rows)} files)"
    err.print(f"wrote atom-attribution map(s) to {where}", highlight=False, soft_wrap=True)


def screen(
    bundle: Path = typer.Argument(..., help="Screening model bundle directory."),
    library: str = typer.Option(..., "--library", help="Molecules to screen: .smi, .sdf or .csv (or a bundled library, e.g. chembl_drugs)."),
    out_path: Path = typer.Option(..., "--out", help="CSV file for the ranked hits."),
    top: int = typer.Option(100, "--top", help="How many molecules to keep."),
    filters: str = typer.Option("", "--filters", help="Comma-separated: lipinski,veber,pains,brenk (pass/fail and the alert per hit)."),
    exclude_failing: bool = typer.Option(False, "--exclude-failing", help="Leave molecules that fail a filter out of the hits."),
    rank: str = typer.Option("highest", "--rank", help="highest | lowest score first."),
    smiles_column: str = typer.Option(None, "--smiles-column", help="CSV libraries: the SMILES column (default: one named like 'smiles')."),
    batch_size: int = typer.Option(2048, "--batch-size", help="Molecules per batch (memory stays bounded by it)."),
    workers: int = typer.Option(0, "--workers", help="Featurization processes (0: every core; 1: in this process); with --ray, Ray actors (0: one per cluster CPU)."),
    ray_address: str = typer.Option(None, "--ray", metavar="ADDRESS", help="Score on a Ray cluster: 'auto' or the head's HOST:PORT (same output as a local run)."),
    keep_duplicates: bool = typer.Option(False, "--keep-duplicates", help="Score repeated structures again."),
    skipped_out: Path = typer.Option(None, "--skipped-out", help="Also write every skipped molecule with its reason to this CSV."),
    explain_dir: Path = typer.Option(None, "--explain-dir", help="Write atom-attribution maps (PNG) of the best hits here."),
    explain_top: int = typer.Option(10, "--explain-top", help="How many hits --explain-dir draws."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Screen a library with a screening model: ranked hits with score, uncertainty, applicability domain, QED and filters."""
    from medassist.assistants.screening import ScreeningAssistant
    from medassist.pipeline.screen import parse_filters

    names = parse_filters(filters)  # fail on a typo before loading anything
    lib_path = Path(library)
    if not lib_path.exists():
        from medassist.data.catalog import is_dataset_name
        from medassist.exceptions import DataFileNotFoundError

        if not is_dataset_name(library):
            raise DataFileNotFoundError(f"{library}: file not found (expected a .smi, .sdf or .csv file of molecules, or a bundled library such as chembl_drugs).")
    if out_path.is_dir():
        raise DataError(f"{out_path}: is a directory; expected a CSV file name for the hits.")
    assistant = ScreeningAssistant.load(bundle)
    with ScreenProgressBar(console=err, enabled=not no_progress) as bar:
        result = assistant.screen(
            library, top=top, filters=names, exclude_failing=exclude_failing, rank=rank, smiles_column=smiles_column,
            batch_size=batch_size, workers=workers or None, keep_duplicates=keep_duplicates, keep_skipped=skipped_out is not None,
            explain_top=explain_top if explain_dir else 0, on_progress=bar.update, ray_address=ray_address or None,
        )
    result.write(out_path, skipped_out=skipped_out, explain_dir=explain_dir)
    summary = result.summary
    for cat, n in sorted(summary.skipped_by_reason.items(), key=lambda kv: -kv[1]):
        err.print(f"skipped {n:,} × {cat} (e.g. {summary.skipped_examples.get(cat, [''])[0]})", highlight=False, soft_wrap=True)
    if summary.worker_restarts:
        err.print(f"note: {summary.worker_restarts} Ray worker(s) died mid-run; their shards were re-run on fresh workers "
                  "(each shard counted once)", highlight=False, soft_wrap=True)
    if summary.n_failed_filters:
        err.print(f"{summary.n_failed_filters:,} high-scoring molecule(s) failed a filter and were left out", highlight=False, soft_wrap=True)
    err.print(f"read {summary.n_read:,} molecules, scored {summary.n_scored:,}, skipped {summary.n_skipped:,} "
              f"in {summary.seconds:.1f} s ({summary.throughput:,.0f} molecules/s, {summary.workers} {'Ray ' if ray_address else ''}worker(s))", highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=1))
    else:
        out.print(f"hits: {summary.out} ({summary.n_hits} molecules)", highlight=False, soft_wrap=True)


class ScreenProgressBar:
    """The screen's progress line: molecules read, molecules per second, skipped, elapsed time."""

    def __init__(self, *, console: Console, enabled: bool) -> None:
        self._bar = Progress(SpinnerColumn(), TextColumn("[bold]screen"), TextColumn("{task.completed:,.0f} molecules"),
                             TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[skipped]}"), TimeElapsedColumn(),
                             console=console, disable=not enabled, transient=False)
        self._task = self._bar.add_task("screen", total=None, rate="", skipped="")
        self._started = False

    def __enter__(self) -> ScreenProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._bar.stop()

    def update(self, chunk: ScreenChunk) -> None:
        if not self._started:  # from the first batch on: a refused option draws no bar
            self._bar.start()
            self._started = True
        rate = f"{chunk.n_read / chunk.seconds:,.0f} mol/s" if chunk.seconds > 0 else ""
        self._bar.update(self._task, completed=chunk.n_read, rate=rate, skipped=f"{chunk.n_skipped:,} skipped")


def register(app: typer.Typer) -> None:
    app.command()(screen)
