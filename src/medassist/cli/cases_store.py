"""``medassist cases import | list | show``: the case store.

``import`` takes a FHIR R4 bundle (``.json``), a FHIR bulk-data export (an ``.ndjson`` file or a
folder of them; both read as streams in bounded memory), a folder of CDISC SDTM domains, a survival CSV
(``--time-column --event-column [--id-column]``) or a bundled data set name (whas500, veteran,
flchain, gbsg2, colon, pbc, cdisc_pilot). ``list`` and ``show`` print the researcher's
de-identified view unless ``--identified`` is given (names, MRN, source ids, dates; audited).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import re
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console

from medassist.exceptions import ConfigError

err = Console(stderr=True)


class SourceKind(StrEnum):
    FHIR = "fhir"
    SDTM = "sdtm"
    CSV = "csv"


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli"


def _store():
    from medassist.settings import Settings
    from medassist.store.cases import CaseStore

    return CaseStore.from_settings(Settings())


def _audit(store, action: str, detail: dict) -> None:
    from medassist.store.audit import append_entry

    with store.db.session(write=True) as s:
        append_entry(s, user=None, username=_actor(), action=action, detail=detail)


def _dataset_name(path: Path) -> str:
    name = re.sub(r"[^a-z0-9_.-]+", "_", path.stem.lower()).strip("_.-") or "cases"
    return name[:64]


def read_source(target: str, *, kind: str | None, id_column: str | None, time_column: str | None,
                event_column: str | None):
    """(ReadResult, dataset name, source kind) for a file, folder or bundled data set name; for
    FHIR (a Bundle, an NDJSON file or an export folder) an unopened ``FhirSource`` instead of the
    ReadResult, so the import streams it."""
    from medassist.data.datasets.cases import CASE_SOURCES, load_cases
    from medassist.exceptions import DataFileNotFoundError
    from medassist.options import look_up_option, unknown_name_error

    path = Path(target)
    if not path.exists() and kind is None:
        if target.strip().lower() in CASE_SOURCES:
            name = target.strip().lower()
            return load_cases(name), name, CASE_SOURCES[name].kind
        if path.suffix:
            raise DataFileNotFoundError(f"{path}: file not found (expected a FHIR bundle, an SDTM folder or a CSV file).")
        raise unknown_name_error(target, list(CASE_SOURCES), kind="case data set (or file)")
    from medassist.data.io.fhir_stream import is_fhir_path, open_fhir

    kind_ = (look_up_option(kind, SourceKind, name="source kind") if kind is not None else
             SourceKind.FHIR if is_fhir_path(path) else SourceKind.SDTM if path.is_dir() else
             SourceKind.CSV if path.suffix.lower() in (".csv", ".tsv", ".txt") else None)
    if kind_ is None:
        raise ConfigError(f"{path}: cannot tell the format from the name; give --source-kind fhir, sdtm or csv.")
    if kind_ is SourceKind.FHIR:  # read as a stream: the caller enters it (``with``) and iterates its cases()
        return open_fhir(path), _dataset_name(path), "fhir"
    if kind_ is SourceKind.SDTM:
        from medassist.data.io.sdtm import read_sdtm

        return read_sdtm(path), _dataset_name(path if path.is_dir() else path.parent), "sdtm"
    if not time_column or not event_column:
        raise ConfigError(f"{path}: a CSV import needs --time-column and --event-column (and usually --id-column).")
    import hashlib

    from medassist.data.io.case_tables import read_case_csv

    result = read_case_csv(path, id_column=id_column, time_column=time_column, event_column=event_column)
    from dataclasses import replace

    return replace(result, sha256=hashlib.sha256(path.read_bytes()).hexdigest()), _dataset_name(path), "csv"


def import_cases(
    target: str = typer.Argument(..., help="A FHIR bundle (.json), a FHIR NDJSON export (.ndjson or a folder of them), "
                                           "an SDTM folder, a CSV file, or a bundled data set name."),
    source_kind: str = typer.Option(None, "--source-kind", help="fhir | sdtm | csv (default: from the file name)."),
    dataset: str = typer.Option(None, "--dataset", help="Data set name for the cases (default: the file or data set name)."),
    id_column: str = typer.Option(None, "--id-column", help="CSV: the patient ID column (default: row numbers)."),
    time_column: str = typer.Option(None, "--time-column", help="CSV: time to event or censoring, in days."),
    event_column: str = typer.Option(None, "--event-column", help="CSV: event indicator (1 event, 0 censored)."),
    as_json: bool = typer.Option(False, "--json", help="Print the import summary as JSON."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Import cases (idempotent: what is already stored is not added again)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from medassist.data.io.fhir_stream import FhirSource

    result, name, kind = read_source(target, kind=source_kind, id_column=id_column, time_column=time_column,
                                     event_column=event_column)
    store = _store()
    with contextlib.ExitStack() as stack:
        if isinstance(result, FhirSource):
            stack.enter_context(result)  # the index pass: references resolved, patients counted
            cases, total = result.cases(), result.n_cases
        else:
            cases, total = result.cases, len(result.cases)
        bar = stack.enter_context(Progress(TextColumn("importing {task.description}"), BarColumn(), MofNCompleteColumn(),
                                           TimeElapsedColumn(), console=err, disable=no_progress, transient=True))
        task = bar.add_task(dataset or name, total=total)
        summary = store.import_records(cases, source=dataset or name, source_kind=kind, total=total,
                                       file_sha256=result.sha256, skipped=result.skipped,
                                       progress=lambda done, total: bar.update(task, completed=done))
    _audit(store, "cases.import", {"dataset": summary.dataset, "kind": kind, "cases_added": summary.n_added,
                                   "rows_added": summary.n_rows, "already_imported": summary.already_imported})
    if as_json:
        typer.echo(json.dumps(summary.to_dict()))
        return
    if summary.already_imported:
        typer.echo(f"{summary.dataset}: this content was imported before (import #{summary.import_id}); nothing added.")
        return
    added = ", ".join(f"{k} {v}" for k, v in summary.added.items()) or "nothing"
    typer.echo(f"{summary.dataset}: {summary.n_cases} cases read, {summary.n_added} added, {summary.n_existing} already "
               f"stored; rows added: {added} ({summary.n_rows} rows in {summary.seconds:.2f} s, "
               f"{summary.rows_per_s:,.0f} rows/s).")
    if summary.skipped:
        typer.echo("skipped: " + ", ".join(f"{k} {v}" for k, v in summary.skipped.items()))


def list_cases(
    dataset: str = typer.Option(None, "--dataset", help="Only this data set."),
    limit: int = typer.Option(50, "--limit", min=1, max=100_000, help="How many cases."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many first."),
    as_json: bool = typer.Option(False, "--json", help="JSON (one array)."),
    identified: bool = typer.Option(False, "--identified", help="Show names, MRN and source ids (clinicians; audited)."),
) -> None:
    """List stored cases (de-identified unless --identified)."""
    store = _store()
    rows = store.list_cases(dataset=dataset, limit=limit, offset=offset, deidentified=not identified)
    if identified:
        _audit(store, "cases.list-identified", {"dataset": dataset, "n_cases": len(rows)})
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no cases stored" + (f" in data set '{dataset}'" if dataset else "") + ". See: medassist cases import")
        return
    typer.echo(f"{store.count(dataset=dataset)} cases stored" + (f" in {dataset}" if dataset else "")
               + f"; showing {offset + 1}-{offset + len(rows)}")
    head = ["case", "dataset", *(["source_id", "mrn", "name"] if identified else []), "sex", "age", "outcome",
            "time_d", "event", "obs", "cond", "meds", "aes"]
    lines = [head]
    for r in rows:
        o = r["outcome"]
        n = r["counts"]
        ident = [str(r.get("source_id") or "-"), str(r.get("mrn") or "-"), str(r.get("name") or "-")] if identified else []
        lines.append([r["case_id"], r["dataset"], *ident, r["sex"], "-" if r["age"] is None else f"{r['age']:.0f}",
                      "-" if o is None else o["name"], "-" if o is None else f"{o['time_days']:g}",
                      "-" if o is None else str(o["event"]), str(n["observations"]), str(n["conditions"]),
                      str(n["medications"]), str(n["adverse_events"])])
    widths = [max(len(line[j]) for line in lines) for j in range(len(head))]
    for line in lines:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def show_case(
    identifier: str = typer.Argument(..., help="Case id, MRN, FHIR Patient.id, USUBJID, a CSV's ID, or DATASET:ID."),
    as_json: bool = typer.Option(False, "--json", help="The whole case as JSON."),
    identified: bool = typer.Option(False, "--identified", help="Names, MRN, source ids and dates (clinicians; audited)."),
) -> None:
    """Show one case (any of its identifiers is accepted)."""
    store = _store()
    case = store.get_case(identifier, deidentified=not identified)
    if identified:
        _audit(store, "cases.show-identified", {"case_id": case["case_id"]})
    if as_json:
        typer.echo(json.dumps(case, default=str))
        return
    head = f"case {case['case_id']} ({case['dataset']}): {case['sex']}, age {case['age'] if case['age'] is not None else '-'}"
    typer.echo(head)
    if identified:
        typer.echo(f"  source {case['source_system']} id {case['source_id']}; MRN {case['mrn'] or '-'}; "
                   f"name {case['name'] or '-'}; born {case['birth_date'] or '-'}; index date {case['index_date'] or '-'}")
    for o in case["outcomes"]:
        typer.echo(f"  outcome{' (primary)' if o['primary'] else ''}: {o['name']}: "
                   f"{'event' if o['event'] else 'censored'} at {o['time_days']:g} days"
                   + (f" ({o['description']})" if o.get("description") else ""))
    if case["conditions"]:
        typer.echo("  conditions: " + "; ".join(
            f"{c['code'] or '-'} {c['text'] or ''}".strip() for c in case["conditions"][:30])
            + (" ..." if len(case["conditions"]) > 30 else ""))
    if case["medications"]:
        typer.echo("  medications: " + "; ".join(sorted({m["name"] for m in case["medications"]}))[:2000])
    latest: dict[str, dict] = {}
    for ob in case["observations"]:
        latest[ob["code"]] = ob
    if latest:
        typer.echo(f"  observations ({len(case['observations'])}; latest per code):")
        for code, ob in list(latest.items())[:60]:
            val = f"{ob['value']:g}" if ob["value"] is not None else ob["text"]
            when = f" (day {ob['day']:.0f})" if ob["day"] is not None else ""
            typer.echo(f"    {code}: {val}{' ' + ob['unit'] if ob['unit'] else ''}{when}")
    for a in case["adverse_events"][:30]:
        typer.echo(f"  adverse event: {a['term']} ({a['severity'] or '-'}{', serious' if a['serious'] else ''})")
    for n in case["notes"]:
        typer.echo(f"  note ({n['kind']}): {n['text'][:500]}")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``cases`` sub-app."""
    app.command("import")(import_cases)
    app.command("list")(list_cases)
    app.command("show")(show_case)
