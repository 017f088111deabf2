"""Atomic writes: the target is replaced whole or left as it was, no temporary file stays."""

import os
import stat

import pytest

from medassist.fileio import atomic_path, write_atomic


def test_write_atomic_replaces_whole_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_atomic(target, "one")
    write_atomic(target, b"two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_mode_is_exact_or_the_usual_one(tmp_path):
    secret = write_atomic(tmp_path / "k", "s", mode=0o600, sync_dir=True)
    doc = write_atomic(tmp_path / "r.html", "<p>", mode=0o644)
    plain = write_atomic(tmp_path / "p", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(doc.stat().st_mode) == 0o644
    assert stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_text_options(tmp_path):
    p = write_atomic(tmp_path / "t.csv", "a\nb\n", newline="\r\n")
    assert p.read_bytes() == b"a\r\nb\r\n"
