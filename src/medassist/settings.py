"""Typed settings (pydantic-settings, ``MEDASSIST_`` prefix).

Everything medassist keeps (model bundles, database, keys, logs) lives under ``home``
(``MEDASSIST_HOME``, default ``~/.medassist``), so a user or a test can point it at an empty
directory. Nothing is read from the environment at import time: call ``Settings()``.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Profile(StrEnum):
    """``dev``: loopback only, cookies without ``Secure``, a generated secret key is fine.
    ``prod``: an explicit strong secret key, ``Secure`` cookies, no debug on a public host."""

    DEV = "dev"
    PROD = "prod"


#: Secret keys refused outside the dev profile (defaults and placeholders people copy).
WEAK_SECRETS = frozenset({"", "changethis", "change-me", "changeme", "secret", "dev", "development", "medassist"})


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
    #: Total ε that differentially private training runs may spend on one data set (privacy ledger).
    privacy_budget_epsilon: float = Field(default=10.0, gt=0)

    # -- the web app and REST API (``medassist serve``) -------------------------------------
    profile: Profile = Profile.DEV
    #: Signs the pre-login CSRF cookie. Dev: generated once into keys/session_secret (0600).
    secret_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    debug: bool = False
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=1024**3)
    max_rows_per_request: int = Field(default=1000, ge=1, le=100_000)
    session_lifetime_s: int = Field(default=8 * 3600, ge=60, le=30 * 86400)
    session_idle_s: int = Field(default=30 * 60, ge=60, le=30 * 86400)
    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_lockout_s: int = Field(default=15 * 60, ge=1, le=7 * 86400)
    login_rate_per_minute: int = Field(default=20, ge=1, le=10_000)
    api_token_days: int = Field(default=90, ge=1, le=3650)
    #: Fernet key(s) for PHI columns, comma-separated (first encrypts, all decrypt). Else the key file.
    encryption_key: SecretStr | None = None
    encryption_key_file: Path | None = None
    #: Extra directories whose model bundles the service offers (besides bundles/ and demo/).
    bundle_dirs: list[Path] = Field(default_factory=list)

    # -- the audit log (HMAC-keyed chain, signed checkpoints outside the database) ----------
    #: The audit HMAC keyring (first key signs, all verify). Default keys/audit_hmac.keys (0600).
    audit_key_file: Path | None = None
    #: The signed checkpoint (entry count + head MAC). Default audit_checkpoint.json under home;
    #: point it at storage the database's administrators cannot write.
    audit_checkpoint_file: Path | None = None
    #: A checkpoint is written after this many new entries (and when the service stops).
    audit_checkpoint_every: int = Field(default=100, ge=1, le=1_000_000)

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

    @model_validator(mode="after")
    def _safe_to_serve(self) -> Settings:
        loopback = _is_loopback(self.host)
        if self.profile is Profile.DEV:
            if not loopback:
                raise ValueError(
                    f"host {self.host!r} is not a loopback address; the dev profile serves on 127.0.0.1/localhost only "
                    "(insecure cookies, generated secret). Set MEDASSIST_PROFILE=prod with a strong MEDASSIST_SECRET_KEY."
                )
            return self
        secret = self.secret_key.get_secret_value() if self.secret_key is not None else ""
        if secret.strip().lower() in WEAK_SECRETS or len(secret) < 32:
            raise ValueError(
                "secret_key: the prod profile needs MEDASSIST_SECRET_KEY of at least 32 characters that is not a "
                "default or placeholder (generate one: python -c 'import secrets; print(secrets.token_urlsafe(48))')."
            )
        if self.debug and not loopback:
            raise ValueError(f"debug is on and host {self.host!r} is not loopback; debug output must not reach a network.")
        return self

    @property
    def cookie_secure(self) -> bool:
        """Cookies carry ``Secure`` outside the dev profile (serve behind TLS there)."""
        return self.profile is not Profile.DEV

    @property
    def encryption_key_path(self) -> Path:
        return self.encryption_key_file or self.keys_dir / "fernet.key"

    @property
    def audit_key_path(self) -> Path:
        return self.audit_key_file or self.keys_dir / "audit_hmac.keys"

    @property
    def audit_checkpoint_path(self) -> Path:
        return self.audit_checkpoint_file or self.home / "audit_checkpoint.json"

    @property
    def bundles_dir(self) -> Path:
        return self.home / "bundles"

    @property
    def privacy_ledger_path(self) -> Path:
        return self.home / "privacy_ledger.json"

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


def _is_loopback(host: str) -> bool:
    if host.strip().lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
