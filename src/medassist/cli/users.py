"""``medassist users ...``: accounts for the web app and API (admins can also use /admin/users)."""

from __future__ import annotations

import getpass
import sys

import typer
from rich.console import Console
from rich.table import Table

from medassist.exceptions import ConfigError

app = typer.Typer(help="Users, roles, passwords and API tokens.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
ROLES = "admin | clinician | researcher | auditor"


def _db():
    from medassist.settings import Settings
    from medassist.store.db import open_database

    return open_database(Settings())


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli"


def _get(s, name: str):
    from medassist.store.accounts import get_user

    user = get_user(s, name)
    if user is None:
        raise ConfigError(f"No user named '{name.strip().lower()}'. See: medassist users list")
    return user


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Username: lower-case letters, digits, '.', '_' or '-'."),
    role: str = typer.Option(..., "--role", help=ROLES),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input instead of generating a one-time one."),
    reset_existing: bool = typer.Option(False, "--reset-existing", help="If the user exists, give them a new one-time password (role unchanged)."),
) -> None:
    """Add a user; prints a one-time password they must change at first sign-in."""
    from medassist.store.accounts import create_user, generate_password, get_user, set_password
    from medassist.store.audit import append_entry

    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise ConfigError("--password-stdin: no password on standard input.")
    db = _db()
    with db.session(write=True) as s:
        existing = get_user(s, name)
        if existing is not None and reset_existing:
            password = password or generate_password()
            set_password(existing, password, one_time=not password_stdin)
            append_entry(s, user=None, username=_actor(), action="user.reset-password", detail={"user": existing.username})
            user, created = existing, False
        else:
            user, password = create_user(s, username=name, role=role, password=password, must_change_password=not password_stdin)
            append_entry(s, user=None, username=_actor(), action="user.create", detail={"user": user.username, "role": user.role})
            created = True
        username, user_role = user.username, user.role
    verb = "added" if created else "exists; new password set"
    if password_stdin:
        typer.echo(f"user '{username}' ({user_role}) {verb}.")
    else:
        typer.echo(f"user '{username}' ({user_role}) {verb}. One-time password (shown once; to be changed at first sign-in):")
        typer.echo(password)


@app.command("list")
def list_users() -> None:
    """List users, roles and whether they are locked."""
    from sqlalchemy import select

    from medassist.store.accounts import is_locked
    from medassist.store.models import User

    db = _db()
    with db.session() as s:
        users = s.scalars(select(User).order_by(User.username)).all()
    table = Table(title="medassist users")
    for col in ("user", "role", "status", "created"):
        table.add_column(col)
    for u in users:
        status = "deactivated" if not u.is_active else "locked" if is_locked(u) else "one-time password" if u.must_change_password else "active"
        table.add_row(u.username, u.role, status, u.created_at.strftime("%Y-%m-%d"))
    out.print(table)


@app.command("token")
def token(
    name: str = typer.Argument(..., help="The user the token acts as."),
    label: str = typer.Option("cli", "--name", help="A name for the token."),
    days: int = typer.Option(None, "--days", min=1, max=3650, help="Validity (default: MEDASSIST_API_TOKEN_DAYS)."),
) -> None:
    """Issue an API bearer token for a user; prints it once."""
    from medassist.settings import Settings
    from medassist.store.accounts import new_api_token
    from medassist.store.audit import append_entry

    db = _db()
    with db.session(write=True) as s:
        user = _get(s, name)
        if not user.is_active:
            raise ConfigError(f"User '{user.username}' is deactivated.")
        tok, plaintext = new_api_token(s, user=user, name=label, days=days or Settings().api_token_days)
        append_entry(s, user=None, username=_actor(), action="token.create", detail={"user": user.username, "token_id": tok.id})
    typer.echo(plaintext)


def _simple(name: str, action: str) -> None:
    from sqlalchemy import delete, update

    from medassist.store.accounts import generate_password, set_password
    from medassist.store.audit import append_entry
    from medassist.store.models import ApiToken, WebSession, utcnow

    db = _db()
    password = None
    with db.session(write=True) as s:
        user = _get(s, name)
        if action == "unlock":
            user.failed_logins, user.locked_until = 0, None
        elif action == "reset-password":
            password = generate_password()
            set_password(user, password, one_time=True)
            s.execute(delete(WebSession).where(WebSession.user_id == user.id))
        elif action == "deactivate":
            user.is_active = False
            s.execute(delete(WebSession).where(WebSession.user_id == user.id))
            s.execute(update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow()))
        append_entry(s, user=None, username=_actor(), action=f"user.{action}", detail={"user": user.username})
        username = user.username
    typer.echo(f"{action}: '{username}' done.")
    if password:
        typer.echo("One-time password (shown once):")
        typer.echo(password)


@app.command("unlock")
def unlock(name: str = typer.Argument(...)) -> None:
    """Lift a sign-in lockout."""
    _simple(name, "unlock")


@app.command("reset-password")
def reset_password(name: str = typer.Argument(...)) -> None:
    """Give a user a new one-time password (their sessions end)."""
    _simple(name, "reset-password")


@app.command("deactivate")
def deactivate(name: str = typer.Argument(...)) -> None:
    """Stop a user from signing in; ends their sessions and revokes their API tokens."""
    _simple(name, "deactivate")
