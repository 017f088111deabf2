"""What makes the audit chain verifiable without trusting the database: the HMAC keyring and the
signed checkpoint, both kept on the file system, outside the database.

The keyring (``MEDASSIST_HOME/keys/audit_hmac.keys``, mode 0600, or ``MEDASSIST_AUDIT_KEY_FILE``)
holds one key per line, ``KEY_ID BASE64URL_KEY``; the first line signs new entries, every line
verifies old ones. ``medassist audit rotate-key`` puts a new key first and keeps the others.

The checkpoint (``MEDASSIST_HOME/audit_checkpoint.json`` or ``MEDASSIST_AUDIT_CHECKPOINT_FILE``)
is one JSON object: how many entries the log had, the id and MAC of the newest one, how many
leading entries are legacy (unkeyed), when, and an HMAC over all that by the audit key. It is
replaced atomically (temp file, fsync, rename) and never by one that counts fewer entries, so
deleting the newest rows of the log is found by ``medassist audit verify``.

Example:
    >>> ring = AuditKeyring.load_or_create(Settings().audit_key_path)
    >>> ring.sign(b"...") == ring.mac(ring.active_id, b"...")
    True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medassist.exceptions import ConfigError
from medassist.fileio import write_atomic
from medassist.privacy.crypto import _read_private_file, load_or_create_secret

log = logging.getLogger("medassist.audit")

CHECKPOINT_FORMAT = "medassist-audit-checkpoint/1"
_HEADER = "# medassist audit HMAC keys: the first line signs, every line verifies. Back this file up; never edit it by hand."


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _new_key_line() -> str:
    return f"{secrets.token_hex(4)} {base64.urlsafe_b64encode(secrets.token_bytes(32)).decode('ascii')}"


class AuditKeyMissing(ConfigError):
    """The audit keyring is not where the settings say, although the log needs it."""


@dataclass(frozen=True)
class AuditKeyring:
    """The audit HMAC keys by id, in file order (the first one signs)."""

    path: Path
    keys: dict[str, bytes]

    @property
    def active_id(self) -> str:
        return next(iter(self.keys))

    def mac(self, key_id: str, message: bytes) -> str | None:
        """HMAC-SHA256 (hex) of ``message`` under key ``key_id``, or ``None`` for an unknown id."""
        key = self.keys.get(key_id)
        return None if key is None else hmac.new(key, message, hashlib.sha256).hexdigest()

    def sign(self, message: bytes) -> str:
        return hmac.new(self.keys[self.active_id], message, hashlib.sha256).hexdigest()

    @classmethod
    def parse(cls, path: Path, text: str) -> AuditKeyring:
        keys: dict[str, bytes] = {}
        for n, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            try:
                if len(parts) != 2 or not 1 <= len(parts[0]) <= 16 or parts[0] in keys:
                    raise ValueError
                key = base64.urlsafe_b64decode(parts[1].encode("ascii"))
                if len(key) < 16:
                    raise ValueError
            except (ValueError, UnicodeEncodeError):
                raise ConfigError(f"{path}, line {n}: expected 'KEY_ID BASE64_KEY' (a unique id of at most 16 characters "
                                  "and a key of at least 16 bytes); the audit keyring is damaged, restore it from backup.") from None
            keys[parts[0]] = key
        if not keys:
            raise ConfigError(f"{path}: the audit keyring holds no key; restore it from backup.")
        return cls(path=path, keys=keys)

    @classmethod
    def load(cls, path: Path) -> AuditKeyring:
        """Read the keyring; :class:`AuditKeyMissing` if it is not there."""
        if not path.exists():
            raise AuditKeyMissing(
                f"{path}: the audit key file is missing, so the keyed audit entries cannot be verified or continued. "
                "Restore it from your backup (it is never recreated silently); see 'What an operator must keep where' in the README."
            )
        return cls.parse(path, _read_private_file(path, what="audit key file").decode("utf-8", "replace"))

    @classmethod
    def load_or_create(cls, path: Path) -> AuditKeyring:
        """Read the keyring, or create it (0600, directory 0700) with one new key."""
        raw = load_or_create_secret(path, what="audit key file", make=lambda: f"{_HEADER}\n{_new_key_line()}".encode())
        return cls.parse(path, raw.decode("utf-8", "replace"))

    def rotated(self) -> AuditKeyring:
        """Write a new first key, keeping every old one, atomically; the new keyring."""
        line = _new_key_line()
        body = "\n".join([_HEADER, line, *(f"{k} {base64.urlsafe_b64encode(v).decode('ascii')}" for k, v in self.keys.items())])
        write_atomic(self.path, (body + "\n").encode("utf-8"), mode=0o600, sync_dir=True)
        return AuditKeyring.load(self.path)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of the log's length and head at one time."""

    entries: int
    last_id: int
    head: str
    legacy_entries: int
    at: str
    key_id: str

    def body(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "entries": self.entries, "last_id": self.last_id, "head": self.head,
                "legacy_entries": self.legacy_entries, "at": self.at, "key_id": self.key_id}

    def describe(self) -> str:
        return f"signed checkpoint of {self.at}: {self.entries} entries up to #{self.last_id}"


class CheckpointInvalid(ConfigError):
    """The checkpoint file is there but unreadable, or its signature does not check out."""


def read_checkpoint(path: Path, ring: AuditKeyring | None) -> Checkpoint | None:
    """The checkpoint at ``path`` with its signature checked; ``None`` if there is none.

    Raises:
        CheckpointInvalid: the file is damaged, or not signed by a key of ``ring``.
        AuditKeyMissing: there is a checkpoint but no keyring to check it with.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
        if doc.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}")
        cp = Checkpoint(entries=int(doc["entries"]), last_id=int(doc["last_id"]), head=str(doc["head"]),
                        legacy_entries=int(doc["legacy_entries"]), at=str(doc["at"]), key_id=str(doc["key_id"]))
        mac = str(doc["mac"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointInvalid(f"{path}: not a medassist audit checkpoint ({e}); it was damaged or replaced.") from None
    if ring is None:
        raise AuditKeyMissing(f"{path}: there is a signed audit checkpoint but no audit key file to check it with; "
                              "restore the key file from backup.")
    expected = ring.mac(cp.key_id, _canonical(cp.body()))
    if expected is None:
        raise CheckpointInvalid(f"{path}: signed with audit key {cp.key_id!r}, which is not in {ring.path} "
                                "(was the key file replaced instead of rotated?).")
    if not hmac.compare_digest(expected, mac):
        raise CheckpointInvalid(f"{path}: its signature does not match its contents; the checkpoint was altered.")
    return cp


def write_checkpoint(path: Path, ring: AuditKeyring, *, entries: int, last_id: int, head: str, legacy_entries: int) -> bool:
    """Sign and write a checkpoint unless the one there already counts as many entries or more.

    Writers in several processes take turns through an exclusive lock on ``PATH.lock``; a
    checkpoint is never replaced by one that counts fewer entries (that would hide a truncation).
    Returns whether a new checkpoint was written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            import fcntl

            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: the rename is still atomic, only concurrent writers may race
            pass
        try:
            current = read_checkpoint(path, ring)
        except ConfigError as e:
            log.error("audit checkpoint not replaced: %s", e)
            return False
        if current is not None and current.entries >= entries:
            return False
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        cp = Checkpoint(entries=entries, last_id=last_id, head=head, legacy_entries=legacy_entries, at=at, key_id=ring.active_id)
        doc = {**cp.body(), "mac": ring.sign(_canonical(cp.body()))}
        write_atomic(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8"), mode=0o600, sync_dir=True)
        return True
    finally:
        os.close(lock_fd)  # closing releases the lock


class AuditFiles:
    """The keyring and checkpoint paths of one installation, with the keyring cached until its
    file changes (a ``rotate-key`` in another process is picked up by the next append).

    Args:
        key_path: the keyring file.
        checkpoint_path: the checkpoint file.
        every: write a checkpoint after this many new entries.
    """

    def __init__(self, *, key_path: Path, checkpoint_path: Path, every: int) -> None:
        self.key_path = Path(key_path)
        self.checkpoint_path = Path(checkpoint_path)
        self.every = every
        self._ring: tuple[tuple[int, int, int], AuditKeyring] | None = None
        self._cp: tuple[tuple[int, int, int], Checkpoint | None] | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> AuditFiles:
        return cls(key_path=settings.audit_key_path, checkpoint_path=settings.audit_checkpoint_path,
                   every=settings.audit_checkpoint_every)

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int, int] | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def keyring(self, *, create: bool = False) -> AuditKeyring:
        """The keyring; created when ``create`` and absent, else :class:`AuditKeyMissing`."""
        stamp = self._stamp(self.key_path)
        if stamp is not None and self._ring is not None and self._ring[0] == stamp:
            return self._ring[1]
        ring = AuditKeyring.load_or_create(self.key_path) if create else AuditKeyring.load(self.key_path)
        self._ring = (self._stamp(self.key_path) or (0, 0, 0), ring)
        return ring

    def has_keyring(self) -> bool:
        return self.key_path.exists()

    def checkpoint_due(self, last_id: int) -> bool:
        """Whether the entry ``last_id`` just appended calls for a new checkpoint: there is none
        yet, or ``every`` ids have passed since the last one. A damaged checkpoint is left for
        ``audit verify`` to report (not rewritten on every append)."""
        stamp = self._stamp(self.checkpoint_path)
        if stamp is None:
            return True
        if self._cp is None or self._cp[0] != stamp:
            try:
                cp = read_checkpoint(self.checkpoint_path, self.keyring())
            except ConfigError:
                cp = None
                self._cp = (stamp, None)
                return False
            self._cp = (stamp, cp)
        cp = self._cp[1]
        return cp is not None and last_id - cp.last_id >= self.every
