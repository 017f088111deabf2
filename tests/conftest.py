from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medassist.data.synthetic import messy_clinical_table


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets an empty MEDASSIST_HOME, so nothing touches ~/.medassist."""
    home = tmp_path_factory.mktemp("medassist_home")
    monkeypatch.setenv("MEDASSIST_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def messy_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "hospital_export.csv"
    messy_clinical_table(n_patients=160, seed=3).to_csv(path, index=False)
    return path


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m medassist ARGS`` in a real subprocess (as a user would)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "medassist", *map(str, args)], capture_output=True, text=True, env=full_env, timeout=timeout
    )


@pytest.fixture(scope="session")
def cli():
    """The CLI runner: ``cli("train", "--data", ...)`` → CompletedProcess."""
    return run_cli
