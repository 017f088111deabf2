"""Checks shared by medassist's tests (and by anyone testing a medassist deployment)."""

from __future__ import annotations

import subprocess


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """Assert a CLI run failed the way the house rules say: non-zero exit, no traceback, and
    exactly one ``error:`` line on stderr; return that line."""
    if proc.returncode == 0:
        raise AssertionError(f"expected a failure, got exit code 0:\n{proc.stdout}{proc.stderr}")
    if "Traceback" in proc.stderr:
        raise AssertionError(f"a traceback reached the user:\n{proc.stderr}")
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    if len(errors) != 1:
        raise AssertionError(f"expected exactly one 'error:' line, got {len(errors)}:\n{proc.stderr}")
    return errors[0]
