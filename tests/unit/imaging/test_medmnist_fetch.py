"""``data fetch medmnist`` against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
from pathlib import Path

import pytest

from medassist.data.fetch import MEDMNIST_MD5, fetch_medmnist
from medassist.data.io.medmnist import load_medmnist
from medassist.data.synthetic_images import write_medmnist_npz
from medassist.exceptions import ConfigError, DataError


class _Server:
    """Serves one file with HTTP Range support; can cut the first response short."""

    def __init__(self, payload: bytes, *, cut_first_at: int | None = None, honour_range: bool = True):
        self.payload, self.cut, self.honour_range = payload, cut_first_at, honour_range
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                body, status = server.payload, 200
                m = re.match(r"bytes=(\d+)-", rng or "")
                if m and server.honour_range:
                    start = int(m.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    body, status = body[start:], 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut is not None:
                    cut, server.cut = server.cut, None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection drops mid-file
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def npz_bytes(tmp_path) -> bytes:
    return write_medmnist_npz(tmp_path / "src.npz", n=40).read_bytes()


def test_download_is_checked_and_loadable(tmp_path, npz_bytes):
    md5 = hashlib.md5(npz_bytes).hexdigest()
    with _Server(npz_bytes) as srv:
        path = fetch_medmnist("pneumoniamnist", size=28, dest_dir=tmp_path / "d", base_url=srv.url, md5=md5)
    assert path.name == "pneumoniamnist.npz" and path.read_bytes() == npz_bytes
    assert load_medmnist(path).classes == ["normal", "pneumonia"]


def test_broken_download_is_resumed_with_a_range_request(tmp_path, npz_bytes):
    md5 = hashlib.md5(npz_bytes).hexdigest()
    dest = tmp_path / "d"
    with _Server(npz_bytes, cut_first_at=len(npz_bytes) // 3) as srv:
        with pytest.raises(DataError, match="run the same command again to resume"):
            fetch_medmnist("breastmnist", size=64, dest_dir=dest, base_url=srv.url, md5=md5, timeout=5)
        part = dest / "breastmnist_64.npz.part"
        assert 0 < part.stat().st_size < len(npz_bytes)
        path = fetch_medmnist("breastmnist", size=64, dest_dir=dest, base_url=srv.url, md5=md5, timeout=5)
        assert srv.ranges[-1] == f"bytes={len(npz_bytes) // 3}-"
    assert path.read_bytes() == npz_bytes and not part.exists()


def test_server_ignoring_range_restarts_cleanly(tmp_path, npz_bytes):
    md5 = hashlib.md5(npz_bytes).hexdigest()
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "pneumoniamnist.npz.part").write_bytes(b"stale partial bytes")
    with _Server(npz_bytes, honour_range=False) as srv:
        path = fetch_medmnist("pneumoniamnist", dest_dir=dest, base_url=srv.url, md5=md5)
    assert path.read_bytes() == npz_bytes


def test_checksum_mismatch_keeps_nothing(tmp_path, npz_bytes):
    with _Server(npz_bytes) as srv:
        with pytest.raises(DataError, match=f"does not match the published {MEDMNIST_MD5['pneumoniamnist'][28]}"):
            fetch_medmnist("pneumoniamnist", size=28, dest_dir=tmp_path / "d", base_url=srv.url)
    assert list((tmp_path / "d").iterdir()) == []


def test_unknown_name_and_size_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'pneumoniamnist'"):
        fetch_medmnist("pneumonimnist", dest_dir=tmp_path)
    with pytest.raises(ConfigError, match="28, 64, 128, 224"):
        fetch_medmnist("pneumoniamnist", size=32, dest_dir=tmp_path)


def test_cli_fetch_uses_the_configured_base_url(tmp_path, npz_bytes, cli):
    md5 = hashlib.md5(npz_bytes).hexdigest()
    with _Server(npz_bytes) as srv:
        r = cli("data", "fetch", "medmnist", "--name", "pneumoniamnist", "--size", "28", "--dest", str(tmp_path),
                "--md5", md5, env={"MEDASSIST_MEDMNIST_URL": srv.url})
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.split(" (MD5")[0].strip()).read_bytes() == npz_bytes
