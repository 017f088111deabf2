"""Storage: SQLAlchemy 2 tables and sessions (users, API tokens, web sessions, login attempts,
the hash-chained audit log, predictions, and the case store's tables in ``case_models``). SQLite under ``MEDASSIST_HOME`` by default,
PostgreSQL through ``MEDASSIST_DATABASE_URL``; the schema is created and upgraded by Alembic
migrations (``medassist/store/migrations``), never by ``create_all``."""

from medassist.store import case_models  # noqa: F401  (registers the case tables on Base.metadata)
from medassist.store.db import Database, open_database
from medassist.store.models import ApiToken, AuditEntry, Base, LoginAttempt, Prediction, User, WebSession

__all__ = ["ApiToken", "AuditEntry", "Base", "Database", "LoginAttempt", "Prediction", "User", "WebSession", "open_database"]
