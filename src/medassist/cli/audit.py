"""``medassist audit ...``: check and read the HMAC-keyed, checkpointed audit log; rotate its key."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="The audit log (append-only, HMAC-chained, with signed checkpoints).", no_args_is_help=True)


def _db():
    from medassist.settings import Settings
    from medassist.store.db import open_database

    return open_database(Settings())


@app.command("verify")
def verify() -> None:
    """Recompute the keyed chain and check the signed checkpoint; exits 1 naming the first bad entry."""
    from medassist.store.audit import verify_chain

    db = _db()
    with db.session() as s:
        check = verify_chain(s)
    if check.ok:
        typer.echo(check.describe())
        typer.echo(f"Keys: {db.audit_files.key_path}; checkpoint: {db.audit_files.checkpoint_path}. Entries appended "
                   "after the last checkpoint are not covered by it: keep copies of the checkpoint elsewhere.")
        return
    typer.echo(f"error: {check.describe()}", err=True)
    raise typer.Exit(1)


@app.command("rotate-key")
def rotate_key() -> None:
    """Start signing with a new audit key; old keys stay in the key file to verify old entries."""
    from medassist.store.audit import append_entry, checkpoint_now, verify_chain

    db = _db()
    files = db.audit_files
    with db.session() as s:
        check = verify_chain(s)
    if not check.ok:  # a new key must not bless a log that is already broken
        typer.echo(f"error: not rotating: {check.describe()}", err=True)
        raise typer.Exit(1)
    old = files.keyring(create=True)
    new = old.rotated()
    with db.session(write=True) as s:
        append_entry(s, user=None, username="cli:audit", action="audit.key-rotate",
                     detail={"key_id": new.active_id, "previous_key_id": old.active_id})
    checkpoint_now(db)
    typer.echo(f"audit key rotated: new entries are signed with key {new.active_id}; {len(new.keys) - 1} older key(s) kept "
               f"in {files.key_path} to verify older entries. Back that file up now.")


@app.command("checkpoint")
def checkpoint() -> None:
    """Write a signed checkpoint of the log as it is now (after checking it)."""
    from medassist.store.audit import checkpoint_now, verify_chain

    db = _db()
    with db.session() as s:
        check = verify_chain(s)
    missing_only = not check.ok and "no signed checkpoint" in check.reason
    if not check.ok and not missing_only:
        typer.echo(f"error: not writing a checkpoint over a broken log: {check.describe()}", err=True)
        raise typer.Exit(1)
    wrote = checkpoint_now(db)
    typer.echo(f"audit checkpoint {'written' if wrote else 'already current'}: {db.audit_files.checkpoint_path} "
               f"({check.n_entries} entries)")


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
