from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from medassist.data.synthetic import messy_clinical_table

PG_URL = os.environ.get("MEDASSIST_TEST_POSTGRES_URL")


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


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A heart-disease MLP (small, 3 epochs), trained once per session (~15 s on 2 cores)."""
    from medassist.testing.server import shared_tiny_bundle  # imported here: most tests need no model

    return shared_tiny_bundle(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def assistant_bundles(tmp_path_factory) -> dict[str, Path]:
    """Tiny imaging, treatment and screening bundles, trained once per session (~15 s on 2 cores)."""
    from medassist.testing.assistants import shared_assistant_bundles

    return shared_assistant_bundles(tmp_path_factory.getbasetemp())


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new schema in MEDASSIST_TEST_POSTGRES_URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if not PG_URL:
        pytest.skip("MEDASSIST_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL and sets it)")
    import sqlalchemy as sa

    from medassist.store.db import normalize_url

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(normalize_url(PG_URL))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
