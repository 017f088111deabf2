"""``medassist users``, ``medassist serve`` and ``medassist audit`` as a user runs them."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time

import httpx

from medassist.testing.server import login_token_of


def _env(home) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MEDASSIST_HOME": str(home)}


def _cli(home, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """A real ``python -m medassist`` process (slow to start: used where the process matters)."""
    return subprocess.run([sys.executable, "-m", "medassist", *args], capture_output=True, text=True, input=stdin,
                          env=_env(home), timeout=120)


def _run(monkeypatch, capsys, home, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """The same entry point in this process (``medassist.cli.main.run``): exit code, stdout, stderr."""
    from medassist.cli.main import run

    monkeypatch.setenv("MEDASSIST_HOME", str(home))
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        run(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_users_add_serve_sign_in_and_audit(tmp_path, tiny_bundle, monkeypatch, capsys):
    home = tmp_path / "home"
    code, out, _ = _run(monkeypatch, capsys, home, "users", "add", "Ada", "--role", "clinician")
    assert code == 0
    password = out.strip().splitlines()[-1]
    assert "One-time password" in out and len(password) >= 12
    code, _, err = _run(monkeypatch, capsys, home, "users", "add", "ada", "--role", "clinician")
    assert code == 2 and "already exists" in err
    code, _, err = _run(monkeypatch, capsys, home, "users", "add", "bob", "--role", "clinican")
    assert code == 2 and "did you mean 'clinician'" in err
    code, out, _ = _run(monkeypatch, capsys, home, "users", "add", "carol", "--role", "auditor", "--password-stdin",
                        stdin="her own long passphrase\n")
    assert code == 0 and "passphrase" not in out
    code, out, _ = _run(monkeypatch, capsys, home, "users", "token", "carol")
    token = out.strip()
    assert token.startswith("mat_")

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "medassist", "serve", "--port", str(port), "--bundles", str(tiny_bundle.parent)],
                            env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("medassist serve did not come up")
        client = httpx.Client(base_url=base, timeout=30)
        page = client.get("/login")
        r = client.post("/login", data={"username": "ada", "password": password, "login_token": login_token_of(page.text), "next": "/"})
        assert r.status_code == 303 and r.headers["location"] == "/account?first=1"
        r = httpx.get(base + "/api/v1/audit", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and {e["action"] for e in r.json()["entries"]} >= {"user.create", "login", "token.create"}
        r = httpx.get(base + "/api/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403  # auditors see the audit log only
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert f"medassist web app and API: http://127.0.0.1:{port}" in out
    assert "ada" not in err or "password" not in err  # nothing sensitive in the server log
    code, out, _ = _run(monkeypatch, capsys, home, "audit", "verify")
    assert code == 0 and "intact" in out


def test_serve_refuses_a_public_address_in_the_dev_profile(tmp_path):
    r = _cli(tmp_path, "serve", "--host", "0.0.0.0")
    assert r.returncode == 2 and "loopback" in r.stderr and "MEDASSIST_PROFILE=prod" in r.stderr
