"""Alembic migrations of the medassist schema (run by ``Database.upgrade``)."""
