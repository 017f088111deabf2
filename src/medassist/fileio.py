"""Atomic file writes: nothing half-written is ever left behind.

Every file medassist writes for a user (reports, tables, plots, evaluations, checkpoints,
keyrings, ledgers) goes through here: the content is written to a hidden temporary file in the
same folder (so the rename cannot cross file systems), flushed and fsynced, then renamed over the
target with :func:`os.replace`. A reader sees the old file or the new one, never a mix; when
writing fails, the temporary file is removed and the target is untouched.

Example:
    >>> write_atomic(Path("out/report.html"), html)
    >>> with atomic_path(Path("model.safetensors")) as tmp:
    ...     save_file(tensors, str(tmp))   # any writer that takes a path
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


def _temp_sibling(path: Path, mode: int | None) -> Path:
    """Create an empty hidden file beside ``path``: permissions ``mode`` if given, else those an
    ordinary new file gets (0666 less the umask)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
        except FileExistsError:
            continue
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
        finally:
            os.close(fd)
        return tmp


@contextlib.contextmanager
def atomic_path(path: str | Path, *, mode: int | None = None, sync_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error, the file
    written there is fsynced and renamed to ``path``; otherwise it is removed.

    Args:
        path: the file to create or replace; its folder is created if missing.
        mode: permissions of the new file (e.g. ``0o600`` for secrets); None gives the usual
            ones for a new file (0666 less the umask).
        sync_dir: also fsync the folder after the rename, so the rename itself survives a crash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path, mode)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        _fsync_dir(path.parent)


def write_atomic(path: str | Path, data: str | bytes, *, mode: int | None = None, encoding: str | None = "utf-8",
                 newline: str | None = None, sync_dir: bool = False) -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically; returns ``path``.

    ``encoding`` (None: the locale's) and ``newline`` apply to text as in :func:`open`; ``mode``
    and ``sync_dir`` as in :func:`atomic_path`.
    """
    path = Path(path)
    with atomic_path(path, mode=mode, sync_dir=sync_dir) as tmp:
        if isinstance(data, bytes):
            with open(tmp, "wb") as fh:
                fh.write(data)
        else:
            with open(tmp, "w", encoding=encoding, newline=newline) as fh:
                fh.write(data)
    return path
