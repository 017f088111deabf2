"""Field encryption keys (file 0600 or environment, rotation) and the PHI log filter."""

from __future__ import annotations

import logging
import os
import stat

import pytest
from cryptography.fernet import Fernet

from medassist.exceptions import ConfigError, DataError
from medassist.privacy.crypto import FieldCipher, PHIFilter, redact
from medassist.settings import Settings


def test_the_key_file_is_created_private_and_reused(tmp_path):
    settings = Settings(home=tmp_path / "h")
    a = FieldCipher.from_settings(settings)
    key = settings.encryption_key_path
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    b = FieldCipher.from_settings(settings)
    assert b.decrypt(a.encrypt("Jane Roe, born 1961-03-04")) == "Jane Roe, born 1961-03-04"


def test_a_key_file_others_can_read_is_refused(tmp_path):
    settings = Settings(home=tmp_path / "h")
    FieldCipher.from_settings(settings)
    os.chmod(settings.encryption_key_path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        FieldCipher.from_settings(settings)


def test_keys_from_the_environment_rotate(tmp_path, monkeypatch):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = FieldCipher(keys=[old.encode()]).encrypt("MRN 12345678")
    monkeypatch.setenv("MEDASSIST_ENCRYPTION_KEY", f"{new},{old}")
    cipher = FieldCipher.from_settings(Settings(home=tmp_path / "h"))
    assert cipher.decrypt(token) == "MRN 12345678"  # old data still readable
    assert FieldCipher(keys=[new.encode()]).decrypt(cipher.encrypt("x")) == "x"  # new data under the new key
    assert not (tmp_path / "h" / "keys").exists()
    with pytest.raises(DataError, match="cannot be decrypted"):
        FieldCipher(keys=[Fernet.generate_key()]).decrypt(token)
    with pytest.raises(ConfigError, match="not a Fernet key"):
        FieldCipher(keys=[b"not-a-key"])


def test_redaction_of_identifiers_dates_contacts_and_query_strings():
    line = ("GET /diagnosis/abc?mrn=99812345&name=Jane HTTP/1.1 patient jane.roe@example.org "
            "born 1961-03-04 or 04/03/1961, tel +44 20 7946 0958, SSN 123-45-6789, MRN 99812345")
    out = redact(line)
    for secret in ("99812345", "Jane", "jane.roe@example.org", "1961-03-04", "04/03/1961", "7946", "123-45-6789"):
        assert secret not in out, secret
    assert out.startswith("GET /diagnosis/abc?")


def test_the_log_filter_keeps_phi_out_of_messages_and_tracebacks(caplog):
    logger = logging.getLogger("medassist.test.phi")
    handler = logging.StreamHandler()
    handler.addFilter(PHIFilter())
    records = []
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        logger.warning("prediction for MRN %s", "99812345")
        value = "Jane Roe, " + "1961-03-04"
        try:
            raise ValueError(f"row 3: {value!r} is not a number")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    assert "99812345" not in text and "Jane Roe" not in text and "1961-03-04" not in text
    assert "ValueError: [message withheld]" in text and "Traceback" in text
