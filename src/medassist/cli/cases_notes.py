"""``medassist cases`` commands: notes part.

    medassist cases deid NOTE.txt|- [--out FILE]
    medassist cases deid NOTES.csv --text-column note --out REDACTED.csv
    medassist cases code NOTE.txt|- [--top 10] [--json]
    medassist cases code NOTES.csv --text-column note --json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from medassist.exceptions import ConfigError, DataError, DataFileNotFoundError, EmptyDataError
from medassist.fileio import write_atomic

if TYPE_CHECKING:
    import pandas as pd


def _read_notes(source: str, text_column: str | None) -> tuple[list[str], list[str], pd.DataFrame | None]:
    """(labels, texts, frame-or-None): one note from .txt/stdin, or one per row of a CSV."""
    if source == "-":
        text = sys.stdin.read()
        if not text.strip():
            raise EmptyDataError("stdin: no note text was given (expected the note on standard input).")
        return ["stdin"], [text], None
    path = Path(source)
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: file not found (expected a .txt note or a .csv with --text-column).")
    if path.is_dir():
        raise DataError(f"{path}: is a directory (expected a .txt note or a .csv with --text-column).")
    if path.suffix.lower() in (".csv", ".tsv"):
        from medassist.data.io.tables import read_table

        frame = read_table(path)
        if text_column is None:
            raise ConfigError(f"{path}: a CSV of notes needs --text-column (columns: {', '.join(map(str, frame.columns))}).")
        if text_column not in frame.columns:
            raise DataError(f"{path}: no column '{text_column}' (columns: {', '.join(map(str, frame.columns))}).")
        texts = ["" if v != v or v is None else str(v) for v in frame[text_column].tolist()]  # NaN → empty note
        return [f"row {i + 2}" for i in range(len(texts))], texts, frame
    if text_column is not None:
        raise ConfigError(f"{path}: --text-column is for CSV files; a .txt file is one note.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save the note as UTF-8.") from e
    if not text.strip():
        raise EmptyDataError(f"{path}: the note is empty.")
    return [path.name], [text], None


def deid(
    source: str = typer.Argument(..., metavar="FILE|-", help="A .txt note, a .csv of notes (with --text-column), or - for stdin."),
    out: Path | None = typer.Option(None, "--out", help="Where to write the redacted note (.txt) or table (.csv); stdout if omitted."),
    text_column: str | None = typer.Option(None, "--text-column", help="The column holding the note text (CSV input)."),
    known_names: list[str] = typer.Option([], "--name", help="A name known to be in the note(s) (repeatable)."),
) -> None:
    """De-identify clinical notes: names, dates, phones, addresses, IDs, ages over 89, e-mails, URLs."""
    from medassist.assistants.coding import deidentify_note

    labels, texts, frame = _read_notes(source, text_column)
    results = [deidentify_note(t, known_names=known_names) for t in texts]
    counts: dict[str, int] = {}
    for r in results:
        for k, v in r.counts.items():
            counts[k] = counts.get(k, 0) + v
    if frame is not None:
        from medassist.data.io.tables import table_to_csv

        red = frame.copy()
        red[text_column] = [r.text for r in results]
        if out is None:
            typer.echo(table_to_csv(red), nl=False)
        else:
            write_atomic(out, table_to_csv(red))
    elif out is None:
        typer.echo(results[0].text, nl=not results[0].text.endswith("\n"))
    else:
        write_atomic(out, results[0].text)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none found"
    typer.echo(f"de-identified {len(texts)} note(s); replaced: {summary}" + (f"; wrote {out}" if out else ""), err=True)


def code(
    source: str = typer.Argument(..., metavar="FILE|-", help="A .txt note, a .csv of notes (with --text-column), or - for stdin."),
    top: int = typer.Option(10, "--top", min=1, help="How many suggestions per note."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (one object per note) instead of a table."),
    text_column: str | None = typer.Option(None, "--text-column", help="The column holding the note text (CSV input)."),
    no_deid: bool = typer.Option(False, "--no-deid", help="Code the note as written (evidence may then contain PHI)."),
) -> None:
    """Suggest ICD-10-CM codes for clinical notes (negation, history and family aware)."""
    from medassist.assistants.coding import suggest_codes

    labels, texts, _ = _read_notes(source, text_column)
    docs: list[dict[str, Any]] = []
    for label, text in zip(labels, texts):
        sugg = suggest_codes(text, top=top, deidentify_first=not no_deid) if text.strip() else []
        docs.append({"note": label, "suggestions": [s.to_dict() for s in sugg]})
    if as_json:
        typer.echo(json.dumps(docs if len(docs) > 1 or frame_like(source) else docs[0], indent=1))
        return
    for d in docs:
        typer.echo(f"# {d['note']}")
        if not d["suggestions"]:
            typer.echo("  (no codes found)")
        for s in d["suggestions"]:
            ev = "; ".join(e["text"] for e in s["evidence"])
            via = f" (for {s['source_code']})" if s["source_code"] and s["source_code"] != s["code"] else ""
            flags = f" [{', '.join(s['flags'])}]" if s["flags"] else ""
            typer.echo(f"  {s['status']:<9} {s['code']:<8} {s['score']:6.2f}  {s['description']}{via}{flags}  <- \"{ev}\"")


def frame_like(source: str) -> bool:
    return Path(source).suffix.lower() in (".csv", ".tsv")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``cases`` sub-app."""
    app.command(name="deid")(deid)
    app.command(name="code")(code)
