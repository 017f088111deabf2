"""Case store fixtures: a fresh database per test (SQLite file, or a new schema in the
PostgreSQL named by MEDASSIST_TEST_POSTGRES_URL), keys of its own, and the CDISC pilot read once."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from medassist.privacy.crypto import FieldCipher, IdentifierHasher
from medassist.store.cases import CaseStore
from medassist.store.db import normalize_url, open_database

PG_URL = os.environ.get("MEDASSIST_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def case_db_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cases.db'}"
        return
    if not PG_URL:
        pytest.skip("MEDASSIST_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL and sets it)")
    import sqlalchemy as sa

    schema = f"c_{uuid.uuid4().hex[:12]}"
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


@pytest.fixture
def case_store(case_db_url) -> Iterator[CaseStore]:
    db = open_database(url=case_db_url)
    store = CaseStore(db=db, cipher=FieldCipher(keys=[Fernet.generate_key()]),
                      hasher=IdentifierHasher(key=base64.urlsafe_b64encode(os.urandom(32))))
    try:
        yield store
    finally:
        db.dispose()


@pytest.fixture(scope="session")
def cdisc():
    """The CDISC pilot SDTM + ADTTE as case records (read once: ~4 s)."""
    from medassist.data.io.sdtm import read_sdtm

    return read_sdtm()
