"""Case store fixtures: a fresh database per test (SQLite file, or a new schema in the
PostgreSQL named by MEDASSIST_TEST_POSTGRES_URL), keys of its own, and the CDISC pilot read once."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from medassist.privacy.crypto import FieldCipher, IdentifierHasher
from medassist.store.cases import CaseStore
from medassist.store.db import open_database


@pytest.fixture
def case_db_url(database_url) -> str:
    """A fresh case database: SQLite, or a new PostgreSQL schema (``database_url`` of tests/conftest.py)."""
    return database_url


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
