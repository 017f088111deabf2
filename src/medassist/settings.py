"""Typed settings (pydantic-settings, ``MEDASSIST_`` prefix).

Everything medassist keeps (model bundles, database, keys, logs) lives under ``home``
(``MEDASSIST_HOME``, default ``~/.medassist``), so a user or a test can point it at an empty
directory. Nothing is read from the environment at import time: call ``Settings()``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """medassist's settings, read from ``MEDASSIST_*`` environment variables.

    Example:
        >>> Settings(home="/tmp/ma").bundles_dir
        PosixPath('/tmp/ma/bundles')
    """

    model_config = SettingsConfigDict(env_prefix="MEDASSIST_", extra="forbid", frozen=True)

    home: Path = Field(default_factory=lambda: Path("~/.medassist"))
    database_url: str | None = None
    log_level: str = "WARNING"
    num_threads: int | None = Field(default=None, ge=1)

    @field_validator("home")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return Path(v).expanduser().resolve()

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.upper()
        if v not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL; got {v!r}")
        return v

    @property
    def bundles_dir(self) -> Path:
        return self.home / "bundles"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'medassist.db'}"

    def ensure_dirs(self) -> None:
        """Create the state directories (called by commands that write, never at import)."""
        for d in (self.home, self.bundles_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
