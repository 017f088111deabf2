"""The test toolkit that ships with medassist (used by its tests and benchmarks, and by anyone
testing a medassist deployment; never by the demo's real-data paths):

* this module: checks shared by the tests (:func:`one_line_error`);
* :mod:`medassist.testing.server`: a tiny trained bundle, users with known passwords and a real
  uvicorn server on 127.0.0.1;
* :mod:`medassist.testing.assistants`: tiny imaging, treatment and screening bundles and valid
  inputs for each;
* :mod:`medassist.testing.processes`: a server in its own process (a free port, waiting until it
  answers, stopping it), for the benchmarks.

Importing this package loads neither torch nor the service; the submodules do.
"""

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
