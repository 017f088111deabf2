"""``medassist audit ...``: check and read the hash-chained audit log."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="The audit log (append-only, hash-chained).", no_args_is_help=True)


def _db():
    from medassist.settings import Settings
    from medassist.store.db import open_database

    return open_database(Settings())


@app.command("verify")
def verify() -> None:
    """Recompute the hash chain; exits 1 naming the first broken entry."""
    from medassist.store.audit import verify_chain

    with _db().session() as s:
        check = verify_chain(s)
    if check.ok:
        typer.echo(check.describe())
        typer.echo("Keep the count and head hash elsewhere: a later run that shows fewer entries means the newest were removed.")
        return
    typer.echo(f"error: {check.describe()}", err=True)
    raise typer.Exit(1)


@app.command("tail")
def tail(limit: int = typer.Option(20, "--limit", min=1, max=10_000, help="How many of the newest entries."),
         as_json: bool = typer.Option(False, "--json", help="One JSON object per line.")) -> None:
    """Print the newest entries (no PHI: inputs appear as SHA-256)."""
    from sqlalchemy import select

    from medassist.store.audit import decode_detail
    from medassist.store.models import AuditEntry

    with _db().session() as s:
        entries = list(reversed(s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)).all()))
    for e in entries:
        if as_json:
            typer.echo(json.dumps({"id": e.id, "at": e.at, "user": e.username, "role": e.role, "action": e.action,
                                   "bundle_id": e.bundle_id, "input_sha256": e.input_sha256, "detail": decode_detail(e),
                                   "entry_hash": e.entry_hash}))
        else:
            typer.echo(f"#{e.id} {e.at} {e.username} ({e.role}) {e.action} bundle={e.bundle_id or '-'} "
                       f"input={(e.input_sha256 or '-')[:16]}")
