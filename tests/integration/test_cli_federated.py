"""``medassist federated``: a Flower simulation of two hospitals, and a real federation of one
server and two client processes on 127.0.0.1, each ending in a bundle medassist can use."""

import json
import os
import socket
import subprocess
import sys
import time

from medassist.testing import one_line_error


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, server: subprocess.Popen, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and server.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)


def test_simulated_federation_of_two_hospitals_beats_chance_and_writes_a_usable_bundle(cli, tmp_path):
    out = tmp_path / "fed"
    proc = cli("federated", "simulate", "--data", "heart_disease", "--sites", "2", "--strategy", "fedprox", "--mu", "0.01",
               "--rounds", "3", "--local-epochs", "1", "--out", out, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pooled held-out AUC" in proc.stderr and "Cleveland" in proc.stderr and "Hungary" in proc.stderr
    card = json.loads((out / "model_card.json").read_text())
    assert card["training"]["federated"] is True and card["training"]["strategy"] == "fedprox" and card["training"]["rounds"] == 3
    assert set(card["data"]["sites"]) == {"Cleveland", "Hungary"} and "Rows never leave a site" in card["privacy"]["federated"]
    assert "dataset" not in card["data"]["features"] and "id" not in card["data"]["features"]
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    assert metrics["n"] > 60 and metrics["metrics"]["auc"]["value"] > 0.7  # pooled held-out, both sites
    assert all(site["auc"] > 0.6 for site in metrics["per_site"].values())
    ev = cli("evaluate", out, "--data", "heart_disease", "--n-boot", "20", "--json")
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["metrics"]["auc"]["value"] > 0.7
    # a data set without a site column needs --sites; the error says so on one line
    line = one_line_error(cli("federated", "simulate", "--data", "wdbc", "--out", tmp_path / "w"))
    assert "pass --sites N" in line and not (tmp_path / "w").exists()


def test_real_federation_server_and_two_client_processes(tmp_path):
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "medassist", "federated"]
    out = tmp_path / "fed"
    procs, logs = [], []

    def start(name, args):
        log = open(tmp_path / f"{name}.log", "w")  # files, not pipes: a full pipe would stall a process
        logs.append(log)
        procs.append(subprocess.Popen([*base, *args], env=env, stdout=log, stderr=subprocess.STDOUT, text=True))
        return procs[-1]

    try:
        server = start("server", ["server", "--rounds", "2", "--min-clients", "2", "--address", f"127.0.0.1:{port}",
                                  "--out", str(out), "--local-epochs", "1", "--timeout", "120"])
        _wait_for_port(port, server)  # clients that start early back off before retrying
        for site in ("Cleveland", "Hungary"):  # each client keeps only its own hospital's rows
            start(site, ["client", "--server", f"127.0.0.1:{port}", "--data", "heart_disease", "--site", site, "--wait", "120"])
        server.wait(timeout=240)
        for p in procs[1:]:
            p.wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        for log in logs:
            log.close()
    text = {name: (tmp_path / f"{name}.log").read_text() for name in ("server", "Cleveland", "Hungary")}
    assert [p.returncode for p in procs] == [0, 0, 0], {k: v[-2000:] for k, v in text.items()}
    assert f"bundle: {out}" in text["server"] and "site Hungary: done" in text["Hungary"]
    card = json.loads((out / "model_card.json").read_text())
    assert card["training"]["mode"].startswith("separate processes") and set(card["data"]["sites"]) == {"Cleveland", "Hungary"}
    from medassist.registry.bundle import load_bundle

    bundle = load_bundle(out)
    assert bundle.schema.classes == ["absent", "present"] and bundle.meta["federated"] is True
