"""Engine and sessions from settings; the schema is brought to the newest Alembic revision.

SQLite (the default, ``MEDASSIST_HOME/medassist.db``, created 0600) runs in WAL mode with a busy
timeout; a transaction that reads and then writes (the audit chain, sign-in counters) opens with
``BEGIN IMMEDIATE`` through ``db.session(write=True)`` so concurrent writers queue instead of
failing. PostgreSQL is used when ``MEDASSIST_DATABASE_URL`` says so (``postgresql://`` URLs get the
psycopg 3 driver).

Example:
    >>> db = open_database(Settings())
    >>> with db.session() as s:
    ...     s.scalar(select(func.count(User.id)))
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from medassist.exceptions import ConfigError
from medassist.settings import Settings

if TYPE_CHECKING:
    from medassist.store.audit_keys import AuditFiles

MIGRATIONS = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` mean psycopg 3 (the driver medassist installs)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except Exception as e:  # sqlalchemy.exc.ArgumentError
        raise ConfigError(f"database_url {url.split('@')[-1]!r} is not a database URL ({e}).") from e
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database)
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():  # the file holds hashed secrets and encrypted PHI: owner only
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("medassist_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(f"database_url: backend {parsed.get_backend_name()!r} is not supported (use sqlite or postgresql).")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


@dataclass(kw_only=True)
class Database:
    """An engine with two session factories: plain, and write (``BEGIN IMMEDIATE`` on SQLite).

    ``settings`` name the audit key file and checkpoint (``Settings()`` from the environment when
    not given); sessions carry the database in ``session.info`` so ``append_entry`` finds them,
    and write the audit checkpoint after a commit that made one due.
    """

    engine: Engine
    settings: Settings | None = None
    _plain: sessionmaker[Session] = field(init=False, repr=False)
    _write: sessionmaker[Session] = field(init=False, repr=False)
    _audit_files: AuditFiles | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._plain = sessionmaker(self.engine, expire_on_commit=False, info={"medassist_db": self})
        self._write = sessionmaker(self.engine.execution_options(medassist_write=True), expire_on_commit=False,
                                   info={"medassist_db": self})
        for maker in (self._plain, self._write):
            event.listen(maker, "after_commit", self._after_commit)

    @property
    def audit_files(self) -> AuditFiles:
        """The audit keyring and checkpoint files (:class:`~medassist.store.audit_keys.AuditFiles`)."""
        if self._audit_files is None:
            from medassist.store.audit_keys import AuditFiles

            self._audit_files = AuditFiles.from_settings(self.settings or Settings())
        return self._audit_files

    def _after_commit(self, session: Session) -> None:
        if session.info.get("medassist_audit_checkpoint_due"):
            from medassist.store.audit import checkpoint_after_commit

            checkpoint_after_commit(self, session)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        with (self._write if write else self._plain)() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def _alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        """Apply every migration up to ``revision`` (idempotent)."""
        cfg = self._alembic_config()
        with self.engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head(self) -> str | None:
        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(settings: Settings | None = None, *, url: str | None = None, upgrade: bool = True) -> Database:
    """The database named by ``url`` or the settings, migrated to the newest schema."""
    if url is None:
        settings = settings or Settings()
        if settings.database_url is None and not settings.home.exists():
            settings.home.mkdir(parents=True, mode=0o700)  # database, keys and PHI: owner only
        url = settings.resolved_database_url
    db = Database(engine=make_engine(url), settings=settings)
    if upgrade:
        db.upgrade()
    return db
