"""Encryption of PHI fields at rest (Fernet) and a logging filter that keeps PHI out of logs.

The key comes from ``MEDASSIST_ENCRYPTION_KEY`` (one or more comma-separated Fernet keys: the
first encrypts, every one decrypts, so keys can be rotated) or from a key file under
``MEDASSIST_HOME/keys`` created on first use with mode 0600 in a 0700 directory. A key file that
others can read is refused. Lose the key and the encrypted columns are gone: back it up.

Example:
    >>> cipher = FieldCipher.from_settings(Settings())
    >>> token = cipher.encrypt('{"age": 61}')
    >>> cipher.decrypt(token)
    '{"age": 61}'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import traceback
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from medassist.exceptions import ConfigError, DataError
from medassist.settings import Settings


def _read_private_file(path: Path, *, what: str) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path}: the {what} is readable by other users (mode {stat.S_IMODE(mode):04o}); run 'chmod 600 {path}'."
        )
    return path.read_bytes().strip()


def load_or_create_secret(path: Path, *, what: str, make: Callable[[], bytes]) -> bytes:
    """Read a private key file, or create it atomically with mode 0600 (directory 0700)."""
    if path.exists():
        return _read_private_file(path, what=what)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    value = make()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return _read_private_file(path, what=what)
    with os.fdopen(fd, "wb") as fh:
        fh.write(value + b"\n")
    return value


def _fernet(key: bytes, *, where: str) -> Fernet:
    try:
        return Fernet(key)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: not a Fernet key (expected 32 url-safe base64-encoded bytes).") from e


class FieldCipher:
    """Encrypts and decrypts text fields; tokens are url-safe base64 strings.

    Args:
        keys: Fernet keys, the first one encrypts; all of them decrypt.
    """

    def __init__(self, *, keys: list[bytes]) -> None:
        if not keys:
            raise ConfigError("FieldCipher needs at least one Fernet key.")
        self.keys = keys
        self._fernet = MultiFernet([_fernet(k, where=f"encryption key #{i + 1}") for i, k in enumerate(keys)])

    @classmethod
    def from_settings(cls, settings: Settings) -> FieldCipher:
        if settings.encryption_key is not None:
            raw = settings.encryption_key.get_secret_value()
            return cls(keys=[k.strip().encode() for k in raw.split(",") if k.strip()])
        key = load_or_create_secret(settings.encryption_key_path, what="encryption key", make=Fernet.generate_key)
        return cls(keys=[key])

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken as e:
            raise DataError("An encrypted field cannot be decrypted with the configured key(s); was the key changed?") from e


class IdentifierHasher:
    """Keyed hashes (HMAC-SHA256, hex) of identifiers such as MRNs and source ids, so a record
    can be looked up by its identifier without the identifier being stored in plain text.

    The key lives in ``MEDASSIST_HOME/keys/lookup_hmac.key`` (created on first use, 0600);
    unlike the Fernet key it cannot be rotated without re-hashing every stored identifier.

    Example:
        >>> h = IdentifierHasher(key=b"k" * 32)
        >>> h.hash("MRN-001") == h.hash(" MRN-001 ")
        True
    """

    def __init__(self, *, key: bytes) -> None:
        if len(key) < 16:
            raise ConfigError("IdentifierHasher needs a key of at least 16 bytes.")
        self.key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> IdentifierHasher:
        raw = load_or_create_secret(settings.keys_dir / "lookup_hmac.key", what="identifier hashing key",
                                    make=lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)))
        return cls(key=raw)

    def hash(self, *parts: str) -> str:
        """HMAC-SHA256 of the parts (each stripped), joined by a separator that cannot occur in them."""
        message = "\x1f".join(str(p).strip() for p in parts).encode("utf-8")
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------
# Logging

_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?<=\?)[^\s\"']*"), "[query]"),  # query strings may carry identifiers
    # A case reference in a path (/cases/MRN-1, /api/v1/cases/veteran:6/similar): MRN, source id or
    # USUBJID. The access log already writes route templates; this catches a path quoted elsewhere.
    (re.compile(r"(?<=/cases/)(?!(?:search|cohort|code)(?![^\s/\"'?#]))[^\s/\"'?#{}\[\]]+"), "{case_ref}"),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[email]"),
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "[ssn]"),
    (re.compile(r"\b(19|20)\d{2}[-/.](0[1-9]|1[0-2])[-/.](0[1-9]|[12]\d|3[01])\b"), "[date]"),
    (re.compile(r"\b(0[1-9]|[12]\d|3[01])[-/.](0[1-9]|1[0-2])[-/.](19|20)\d{2}\b"), "[date]"),
    (re.compile(r"\+?\(?\d{2,4}\)?[ -]\d{3,4}[ -]\d{3,4}\b"), "[phone]"),
    (re.compile(r"\b\d{6,}\b"), "[number]"),  # MRNs, NHS numbers, long identifiers
]


def redact(text: str) -> str:
    """``text`` with the PHI-looking parts (identifiers, dates, contacts, query strings) replaced."""
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)
    return text


_LITERAL_SEGMENT = re.compile(r"[a-z]+(?:-[a-z]+)*")
_VERSION_SEGMENT = re.compile(r"v\d{1,2}")


def coarse_path(path: str, *, placeholder: str = "[path]") -> str:
    """A request path cut to what cannot identify anyone: the query dropped, then the first
    segment if it is a plain lower-case word (``/api``, ``/cases``), ``/v1`` after it, and
    ``placeholder`` for whatever followed. For logs that cannot know the matched route.

    Example:
        >>> coarse_path("/api/v1/cases/MRN-0001/similar?k=5"), coarse_path("/cases/veteran:6")
        ('/api/v1/[path]', '/cases/[path]')
    """
    segments = [s for s in path.split("?", 1)[0].split("/") if s]
    kept: list[str] = []
    if segments and _LITERAL_SEGMENT.fullmatch(segments[0]) and len(segments[0]) <= 24:
        kept.append(segments[0])
        if len(segments) > 1 and _VERSION_SEGMENT.fullmatch(segments[1]):
            kept.append(segments[1])
    head = "/" + "/".join(kept)
    return head if len(kept) == len(segments) else head.rstrip("/") + "/" + placeholder


class PHIFilter(logging.Filter):
    """Rewrites each record's message with :func:`redact` and drops its arguments and traceback
    locals, so a log line never carries a patient's identifiers. Attach it to handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) >= 3:
            # uvicorn's access line (client, method, path, version, status) quotes the concrete path;
            # ``medassist serve`` turns it off for its own, but anyone may run uvicorn directly.
            record.args = (*record.args[:2], coarse_path(str(record.args[2])), *record.args[3:])
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            # Exception messages quote input values (a DataError names the bad cell): keep the type only.
            _, exc, tb = record.exc_info
            frames = "".join(traceback.format_tb(tb))
            record.exc_text = f"Traceback (most recent call last):\n{frames}{type(exc).__module__}.{type(exc).__name__}: [message withheld]"
            record.exc_info = None
        return True


def install_phi_filter(*loggers: str) -> PHIFilter:
    """Attach one :class:`PHIFilter` to every handler of the root logger and the named loggers."""
    flt = PHIFilter()
    for name in ("", *loggers):
        for handler in logging.getLogger(name or None).handlers:
            if not any(isinstance(f, PHIFilter) for f in handler.filters):
                handler.addFilter(flt)
    return flt
