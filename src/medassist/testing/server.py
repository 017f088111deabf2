"""Test toolkit for the service (ships with the package; used by tests and the load benchmark,
never by the demo): a small bundle trained in seconds, a user with a known password, and a
real uvicorn server on 127.0.0.1 in a background thread.

Example:
    >>> bundle = build_tiny_bundle(tmp / "bundles" / "heart")
    >>> with running_server(create_app(settings)) as base_url:
    ...     httpx.get(base_url + "/healthz")
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from medassist.data.catalog import get_dataset
from medassist.data.sources import DataSource
from medassist.options import ModelSize, look_up_option
from medassist.pipeline import TabularSpec, train_tabular
from medassist.store.accounts import create_user
from medassist.store.db import Database
from medassist.training import TrainConfig

#: The password ``add_user`` callers in tests use (long enough for the password rules).
PASSWORD = "a long test password 42"


def build_tiny_bundle(out_dir: Path, *, dataset: str = "heart_disease", epochs: int = 3, size: str = "small",
                      n_members: int = 1, seed: int = 0) -> Path:
    """Train a small model on a bundled data set (seconds on a CPU) and write its bundle."""
    info = get_dataset(dataset)
    spec = TabularSpec(
        target=info.target, model="mlp", size=look_up_option(size, ModelSize, name="model size"), seed=seed, id_column=info.id_column, positive_class=info.positive_class,
        train=TrainConfig(epochs=epochs, patience=epochs, seed=seed), n_members=n_members, n_boot=50,
    )
    source = DataSource(name=info.name, provenance=info.source, licence=info.licence, site_column=info.site_column, dataset=info)
    return train_tabular(info.load(), spec=spec, source=source, out_dir=Path(out_dir), overwrite=True, progress=False).bundle_dir


def shared_tiny_bundle(base: Path) -> Path:
    """``build_tiny_bundle`` once per test session: reused when ``base`` already holds it."""
    out = Path(base) / "shared-bundles" / "heart-tiny"
    if not (out / "bundle.json").is_file():
        build_tiny_bundle(out)
    return out


def add_user(db: Database, username: str, role: str, password: str, *, must_change_password: bool = False) -> int:
    with db.session(write=True) as s:
        user, _ = create_user(s, username=username, role=role, password=password, must_change_password=must_change_password)
        return user.id


@contextmanager
def running_server(app, *, host: str = "127.0.0.1", log_level: str = "warning") -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of ``host``; yields the base URL."""
    import uvicorn

    # IPPROTO_TCP, not protocol 0: asyncio only sets TCP_NODELAY on sockets whose ``proto`` says
    # TCP, and without it every response (headers and body written separately) waits on Nagle plus
    # the peer's 40 ms delayed ACK. Set it here too, so accepted sockets inherit it on Linux.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off", server_header=False,
                                                timeout_keep_alive=15))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if not m:
        raise AssertionError("no CSRF field on the page")
    return m.group(1)


def login_token_of(html: str) -> str:
    m = re.search(r'name="login_token" value="([^"]+)"', html)
    if not m:
        raise AssertionError("no login token on the sign-in page")
    return m.group(1)


def sign_in(base_url: str, username: str, password: str = PASSWORD):
    """An httpx client signed in through the real sign-in form (cookies kept)."""
    import httpx

    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
    page = client.get("/login")
    r = client.post("/login", data={"username": username, "password": password, "login_token": login_token_of(page.text), "next": "/"})
    if r.status_code != 303:
        raise AssertionError(f"sign-in as {username!r} failed: {r.status_code} {r.text[:300]}")
    return client


def example_row(bundle: Path) -> dict:
    """A valid input row for a bundle: training medians and each column's first category."""
    state = json.loads((bundle / "featurizer.json").read_text())["state"]
    row = {}
    for c in state["columns_"]:
        if c in state["numeric_"]:
            row[c] = state["median_"][c]
        else:
            row[c] = next(v for v in state["categories_"][c] if not v.startswith("__"))
    return row


def example_csv(bundle: Path, n: int = 3) -> bytes:
    row = example_row(bundle)
    frame = pd.DataFrame([row] * n)
    frame.insert(0, "id", [f"P{i:03d}" for i in range(n)])
    return frame.to_csv(index=False).encode()
