"""A server in its own process, for the benchmarks that time one as a user starts it: a free
port, waiting until it answers, and stopping it as Ctrl-C would. Only the standard library
(and httpx, when waiting) is imported: a benchmark's light peers load neither torch nor the service.

Example:
    >>> port = free_port()
    >>> proc = subprocess.Popen([sys.executable, "-m", "medassist", "serve", "--port", str(port)])
    >>> wait_until_up(f"http://127.0.0.1:{port}/healthz", proc)
    >>> stop(proc)
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, *, timeout: float = 120) -> None:
    """Poll ``url`` until it answers 200.

    Raises:
        RuntimeError: ``proc`` exited first (the message holds its stderr when that is a pipe), or
            ``url`` did not answer within ``timeout`` seconds.
    """
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"the server exited early: {err}" if err else "the server exited early (see its log)")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout:g} s")


def stop(proc: subprocess.Popen) -> None:
    """SIGINT (a clean shutdown, as Ctrl-C), then a kill after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
