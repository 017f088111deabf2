"""``medassist data fetch medmnist``: download an official MedMNIST file, explicitly, once.

The only code in medassist that downloads data; tests and the demo never call it against the
internet. The file is written to ``<dest>/<name>[_<size>].npz.part`` and renamed only after its
MD5 matches the published checksum (MedMNIST ``INFO``, Zenodo record 10519652). A broken
download is resumed with an HTTP Range request; a server that ignores Range restarts it.
The base URL is configurable (``--base-url`` or ``MEDASSIST_MEDMNIST_URL``), e.g. for a mirror
or a local test server.

Example:
    >>> fetch_medmnist("pneumoniamnist", size=28, dest_dir=Path("~/.medassist/data/medmnist"))
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from http.client import HTTPResponse
from pathlib import Path

from medassist.exceptions import ConfigError, DataError
from medassist.options import unknown_name_error

DEFAULT_BASE_URL = "https://zenodo.org/records/10519652/files"
CHUNK = 1 << 16

#: Published MD5 per (data set, size), from MedMNIST's ``INFO`` (v3, Zenodo record 10519652).
MEDMNIST_MD5: dict[str, dict[int, str]] = {
    "pathmnist": {28: "a8b06965200029087d5bd730944a56c1", 64: "55aa9c1e0525abe5a6b9d8343a507616",
                  128: "ac42d08fb904d92c244187169d1fd1d9", 224: "2c51a510bcdc9cf8ddb2af93af1eadec"},
    "chestmnist": {28: "02c8a6516a18b556561a56cbdd36c4a8", 64: "9de6cd0b934ebb5b7426cfba5efbae16",
                   128: "db107e5590b27930b62dbaf558aebee3", 224: "45bd33e6f06c3e8cdb481c74a89152aa"},
    "dermamnist": {28: "0744692d530f8e62ec473284d019b0c7", 64: "b70a2f5635c6199aeaa28c31d7202e1f",
                   128: "2defd784463fa5243564e855ed717de1", 224: "8974907d8e169bef5f5b96bc506ae45d"},
    "octmnist": {28: "c68d92d5b585d8d81f7112f81e2d0842", 64: "e229e9440236b774d9f0dfef9d07bdaf",
                 128: "0a97e76651ace45c5d943ee3f65b63ae", 224: "abc493b6d529d5de7569faaef2773ba3"},
    "pneumoniamnist": {28: "28209eda62fecd6e6a2d98b1501bb15f", 64: "8f4eceb4ccffa70c672198ea285246c6",
                       128: "05b46931834c231683c68f40c47b2971", 224: "d6a3c71de1b945ea11211b03746c1fe1"},
    "retinamnist": {28: "bd4c0672f1bba3e3a89f0e4e876791e4", 64: "afda852cc34dcda56f86ad2b2457dbcc",
                    128: "e48e916a24454daf90583d4e6efb1a18", 224: "eae7e3b6f3fcbda4ae613ebdcbe35348"},
    "breastmnist": {28: "750601b1f35ba3300ea97c75c52ff8f6", 64: "742edef2a1fd1524b2efff4bd7ba9364",
                    128: "363e4b3f8d712e9b5de15470a2aaadf1", 224: "b56378a6eefa9fed602bb16d192d4c8b"},
    "bloodmnist": {28: "7053d0359d879ad8a5505303e11de1dc", 64: "2b94928a2ae4916078ca51e05b6b800b",
                   128: "adace1e0ed228fccda1f39692059dd4c", 224: "b718ff6835fcbdb22ba9eacccd7b2601"},
    "tissuemnist": {28: "ebe78ee8b05294063de985d821c1c34b", 64: "123ece2eba09d0aa5d698fda57103344",
                    128: "61b955355d7425a89687b06cca3ce0c2", 224: "b077128c4a949f0a4eb01517f9037b9c"},
    "organamnist": {28: "68e3f8846a6bd62f0c9bf841c0d9eacc", 64: "2dcccc29b88e6da5a01161ef20cda288",
                    128: "eeae80d0a227a8d099027e1b3cfd3b60", 224: "50747347e05c87dd3aaf92c49f9f3170"},
}


def medmnist_file_name(name: str, size: int) -> str:
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _open(url: str, start: int, timeout: float) -> HTTPResponse:
    req = urllib.request.Request(url, headers={"User-Agent": "medassist-data-fetch", **({"Range": f"bytes={start}-"} if start else {})})
    resp: HTTPResponse = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http(s) URL built from a configured base)
    return resp


def download(url: str, dest: Path, *, md5: str, timeout: float = 60.0, on_progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part`` with resume and an MD5 check; return ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    try:
        try:
            resp = _open(url, start, timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and start:  # nothing left to send: the partial file may be complete
                resp = None
            else:
                raise
        if resp is not None:
            with resp:
                if start and resp.status != 206:
                    start = 0  # the server ignored Range: start again
                length = resp.headers.get("Content-Length")
                total = start + int(length) if length is not None else None
                with part.open("ab" if start else "wb") as fh:
                    done = start
                    while chunk := resp.read(CHUNK):
                        fh.write(chunk)
                        done += len(chunk)
                        if on_progress:
                            on_progress(done, total)
                if total is not None and done < total:  # the connection closed early: keep the part to resume
                    raise ConnectionError(f"connection closed after {done:,} of {total:,} bytes")
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
        kept = part.stat().st_size if part.exists() else 0
        raise DataError(f"{url}: download failed ({e}); {kept:,} bytes kept in {part}; run the same command again to resume.") from e
    got = md5_of(part)
    if got != md5:
        part.unlink(missing_ok=True)
        raise DataError(f"{url}: MD5 {got} does not match the published {md5}; the download was deleted (nothing was kept). Try again.")
    os.replace(part, dest)
    return dest


def fetch_medmnist(name: str, *, size: int = 28, dest_dir: Path, base_url: str | None = None, md5: str | None = None,
                   timeout: float = 60.0, on_progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Fetch an official MedMNIST 2D file (skipped when a verified copy is already there).

    Args:
        name: e.g. "pneumoniamnist".
        size: 28, 64, 128 or 224.
        base_url: where the files lie (default Zenodo; also ``MEDASSIST_MEDMNIST_URL``).
        md5: expected checksum; only for a mirror of a different file (default: the published one).
    """
    key = str(name).strip().lower()
    if key not in MEDMNIST_MD5:
        raise unknown_name_error(name, sorted(MEDMNIST_MD5), kind="MedMNIST data set")
    if size not in MEDMNIST_MD5[key]:
        raise ConfigError(f"The 'size' of a MedMNIST file must be one of 28, 64, 128, 224. Got {size!r} instead.")
    expected = md5 or MEDMNIST_MD5[key][size]
    fname = medmnist_file_name(key, size)
    dest = Path(dest_dir).expanduser() / fname
    if dest.exists() and md5_of(dest) == expected:
        return dest
    base = (base_url or os.environ.get("MEDASSIST_MEDMNIST_URL") or DEFAULT_BASE_URL).rstrip("/")
    return download(f"{base}/{fname}?download=1", dest, md5=expected, timeout=timeout, on_progress=on_progress)
