"""``medassist cases`` commands: analysis part (filled in by its owner)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``cases`` sub-app."""
