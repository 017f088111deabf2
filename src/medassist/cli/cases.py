"""``medassist cases ...``: the case store (import, list, show), case analysis (similar cases,
cohort survival, key factors) and clinical notes (de-identification, ICD-10-CM suggestions).

Each part registers its own commands on this sub-app, so they live in small modules:
``cases_store.py``, ``cases_analysis.py`` and ``cases_notes.py``.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Case store and case analysis: import records, find similar cases, cohort survival, notes.",
    no_args_is_help=True,
)


def register(root: typer.Typer) -> None:
    from medassist.cli import cases_analysis, cases_notes, cases_store

    cases_store.register(app)
    cases_analysis.register(app)
    cases_notes.register(app)
    root.add_typer(app, name="cases")
