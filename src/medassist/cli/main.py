"""``medassist`` command line: parse input, call assistants, render output.

Errors medassist raises on purpose print as one line (``error: ...``) with exit code 2; pass
``--debug`` for the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import typer
from rich.console import Console

from medassist import __version__
from medassist.exceptions import MedassistError

app = typer.Typer(
    name="medassist", help="medassist: clinical AI workbench (decision support, not a medical device).",
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
)
err = Console(stderr=True)


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: MEDASSIST_NUM_THREADS or torch's default)."),
) -> None:
    from medassist.settings import Settings

    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    n = threads or settings.num_threads
    if n:
        import torch

        torch.set_num_threads(n)
    if "RANK" in os.environ:  # launched by torchrun: join the process group
        from medassist.training.distributed import init_from_env

        init_from_env()


@app.command()
def version() -> None:
    """Print medassist's version."""
    typer.echo(__version__)


def _register() -> None:
    from medassist.cli import audit, cases, commands, data, demo, federated, screening, serve, treatment, users

    commands.register(app)
    app.add_typer(data.app, name="data")
    demo.register(app)
    screening.register(app)
    app.command(name="advise")(treatment.advise)
    serve.register(app)
    app.add_typer(users.app, name="users")
    app.add_typer(audit.app, name="audit")
    cases.register(app)
    app.add_typer(federated.app, name="federated")


_PACKAGE = str(Path(__file__).resolve().parents[1])


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 (warnings' signature)
    """A warning medassist's own code raises is a message for the user (a temperature clamped on
    perfectly separated validation rows, a metric undefined on one class): one line, no source
    path and code line. A library's warning keeps Python's format, which names the library."""
    if str(filename).startswith(_PACKAGE):
        err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
    else:
        (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))


def run(argv: list[str] | None = None) -> None:
    """Entry point of the ``medassist`` script and ``python -m medassist``."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("MEDASSIST_DEBUG") == "1"
    if not debug:  # --debug: where each warning comes from, as Python prints it
        warnings.showwarning = _show_warning
    _register()
    try:
        app(args=args, prog_name="medassist")  # usage errors and --help exit here
    except KeyboardInterrupt:
        err.print("aborted.")
        sys.exit(130)
    except MedassistError as e:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as e:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {e.filename or ''}: {e.strerror or e}", highlight=False, soft_wrap=True)
        sys.exit(2)
