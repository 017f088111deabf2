"""Accounts: roles, argon2 password hashes, API tokens and web sessions (stored as SHA-256).

Example:
    >>> with db.session(write=True) as s:
    ...     user, password = create_user(s, username="ada", role="clinician")  # one-time password
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from medassist.exceptions import ConfigError
from medassist.options import look_up_option
from medassist.store.models import ApiToken, User, WebSession, utcnow


class Role(StrEnum):
    ADMIN = "admin"            # users and settings
    CLINICIAN = "clinician"    # the assistants, cases with identifiers
    RESEARCHER = "researcher"  # train/evaluate, de-identified cases only
    AUDITOR = "auditor"        # the audit log only


USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 12
TOKEN_PREFIX = "mat_"
_hasher = PasswordHasher()  # argon2id with the library's current recommended cost
#: A valid hash of a random password: verified against when the user does not exist, so a
#: wrong username costs the same time as a wrong password.
_DUMMY_HASH: str | None = None  # made on first use, not at import


def digest(token: str) -> str:
    """SHA-256 of a bearer or session token (what the tables store)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def burn_verify(password: str) -> None:
    """Spend the time of one verification (for unknown usernames)."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
    verify_password(_DUMMY_HASH, password)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def generate_password() -> str:
    """A one-time password: 96 random bits, url-safe."""
    return secrets.token_urlsafe(12)


def check_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME.fullmatch(name):
        raise ConfigError(
            f"Username {username!r} is not valid: 2-64 characters, lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def check_new_password(password: str, *, username: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"The password must have at least {MIN_PASSWORD} characters; it has {len(password)}.")
    if len(password) > 1024:
        raise ConfigError("The password must have at most 1024 characters.")
    if username.lower() in password.lower():
        raise ConfigError("The password must not contain the username.")
    if len(set(password)) < 5:
        raise ConfigError("The password must use at least 5 different characters.")


def get_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username.strip().lower()))


def create_user(
    session: Session, *, username: str, role: str | Role, password: str | None = None, must_change_password: bool = True
) -> tuple[User, str]:
    """Add a user; returns the user and the password (generated when not given)."""
    name = check_username(username)
    role = look_up_option(role, Role, name="role")
    if get_user(session, name) is not None:
        raise ConfigError(f"A user named '{name}' already exists.")
    if password is None:
        password = generate_password()
    else:
        check_new_password(password, username=name)
    user = User(username=name, role=role.value, password_hash=hash_password(password), must_change_password=must_change_password,
                is_active=True, failed_logins=0)
    session.add(user)
    session.flush()
    return user, password


def set_password(user: User, password: str, *, one_time: bool) -> None:
    if not one_time:
        check_new_password(password, username=user.username)
    user.password_hash = hash_password(password)
    user.must_change_password = one_time
    user.password_changed_at = utcnow()
    user.failed_logins, user.locked_until = 0, None


def is_locked(user: User, *, now: datetime | None = None) -> bool:
    return user.locked_until is not None and user.locked_until > (now or utcnow())


def new_api_token(session: Session, *, user: User, name: str, days: int) -> tuple[ApiToken, str]:
    """Issue a bearer token; the plaintext is returned once and never stored."""
    label = name.strip()[:64] or "token"
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=label, token_hash=digest(plaintext), prefix=plaintext[:12],
                     expires_at=utcnow() + timedelta(days=days))
    session.add(token)
    session.flush()
    return token, plaintext


def find_api_token(session: Session, plaintext: str, *, now: datetime | None = None) -> tuple[ApiToken, User] | None:
    if not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 128:
        return None
    row = session.execute(
        select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(ApiToken.token_hash == digest(plaintext))
    ).first()
    if row is None:
        return None
    token, user = row
    now = now or utcnow()
    if token.revoked_at is not None or token.expires_at <= now or not user.is_active:
        return None
    return token, user


def new_web_session(session: Session, *, user: User, lifetime_s: int) -> tuple[WebSession, str]:
    plaintext = secrets.token_urlsafe(32)
    now = utcnow()
    ws = WebSession(token_hash=digest(plaintext), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                    created_at=now, last_seen_at=now, expires_at=now + timedelta(seconds=lifetime_s))
    session.add(ws)
    session.flush()
    return ws, plaintext


def find_web_session(session: Session, plaintext: str, *, idle_s: int, now: datetime | None = None) -> tuple[WebSession, User] | None:
    if not plaintext or len(plaintext) > 128:
        return None
    row = session.execute(
        select(WebSession, User).join(User, User.id == WebSession.user_id).where(WebSession.token_hash == digest(plaintext))
    ).first()
    if row is None:
        return None
    ws, user = row
    now = now or utcnow()
    if ws.expires_at <= now or ws.last_seen_at + timedelta(seconds=idle_s) <= now or not user.is_active:
        return None
    return ws, user
