"""``medassist screen --ray`` on a real 2-node Ray cluster on 127.0.0.1 (a head and a second
node, one CPU each, on free ports and their own temp dir): the hits and skipped-molecule files
are byte for byte those of a local run, also when a worker process is SIGKILLed mid-run (its
shard re-runs on a fresh worker, no molecule lost or counted twice); and an address where no
cluster answers is refused in one line. The cluster's processes are killed by process group in
teardown, and the test checks none is left."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from medassist.data.catalog import get_dataset

RAY = Path(sys.executable).with_name("ray")
pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(not RAY.exists(), reason="Ray's command line (installed with flwr[simulation]) is not in this environment")]
ARGS = ["--top", "20", "--filters", "lipinski,pains", "--batch-size", "40", "--no-progress", "--json"]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _own_ports() -> list[str]:
    """Every port a node would otherwise take from a fixed default (busy if another cluster runs)."""
    names = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
             "--runtime-env-agent-port", "--metrics-export-port"]
    return [f"{n}={p}" for n, p in zip(names, _free_ports(len(names)))]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    with log.open("w") as fh:
        # its own session: every process of the node (raylet, GCS, workers) is in this group
        return subprocess.Popen([str(RAY), "start", "--block", "--num-cpus=1", "--node-ip-address=127.0.0.1", *args],
                                stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait_started(proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if "Ray runtime started" in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"ray start did not come up in {timeout} s:\n{log.read_text(errors='replace')[-2000:]}")


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies, which nobody may reap here, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each node's process group (``ray start --block`` stops its node), SIGKILL what is left."""
    for p in procs:
        if _group_alive(p.pid):
            os.killpg(p.pid, signal.SIGTERM)
    end = time.monotonic() + 20
    while time.monotonic() < end and any(_group_alive(p.pid) for p in procs):
        time.sleep(0.2)
    for p in procs:
        if _group_alive(p.pid):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                found.append(f"{d.name}: {cmd[:120]}")
    return found


class LocalCluster:
    """A head and a second node on 127.0.0.1, one CPU each; the head boots while other fixtures
    run, and ``address()`` waits until both nodes are up."""

    def __init__(self) -> None:
        self.temp = tempfile.mkdtemp(prefix="mray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.procs: list[subprocess.Popen] = []
        self._address: str | None = None
        self._boot_head(0)

    def _boot_head(self, attempt: int) -> None:
        gcs, client, dashboard = _free_ports(3)
        self._gcs, self._head_log = gcs, Path(self.temp) / f"head{attempt}.log"
        self._head = _start(["--head", f"--port={gcs}", f"--ray-client-server-port={client}", "--include-dashboard=false",
                             f"--dashboard-port={dashboard}", f"--temp-dir={self.temp}", *_own_ports()], self._head_log)
        self.procs.append(self._head)

    def address(self) -> str:
        if self._address is None:
            try:
                _wait_started(self._head, self._head_log)
            except RuntimeError:  # a free port taken by someone else in between: once more
                _stop([self._head])
                self._boot_head(1)
                _wait_started(self._head, self._head_log)
            node_log = Path(self.temp) / "node.log"
            node = _start([f"--address=127.0.0.1:{self._gcs}", f"--temp-dir={self.temp}", *_own_ports()], node_log)
            self.procs.append(node)
            _wait_started(node, node_log)
            self._address = f"127.0.0.1:{self._gcs}"
        return self._address

    def stop(self) -> list[str]:
        """Stop every node; the processes still left (none, or the test fails)."""
        _stop(self.procs)
        left = _processes_mentioning(self.temp)
        shutil.rmtree(self.temp, ignore_errors=True)
        return left


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster()
    try:
        yield c
    finally:
        left = c.stop()
        assert not left, f"Ray processes left behind: {left}"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from medassist.data.sources import DataSource
    from medassist.pipeline.molecules import ScreeningSpec, train_screening
    from medassist.training import TrainConfig

    df = get_dataset("b3db_regression").load().iloc[:100]
    spec = ScreeningSpec(targets=("logBB",), smiles_column="SMILES", model="fpmlp", descriptors=None, n_members=2,
                         train=TrainConfig(epochs=2, batch_size=32), n_boot=10, overrides={"hidden": 32})
    out = tmp_path_factory.mktemp("rb") / "m"
    train_screening(df, spec=spec, source=DataSource(name="t"), out_dir=out)
    return out


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """400 molecules with names, an unreadable line, exact repeated lines (one of them of the bad
    line) and a structure repeated under another spelling."""
    smiles = get_dataset("b3db_classification").load()["SMILES"].iloc[:400].tolist()
    lines = [f"{s} CPD{i:04d}" for i, s in enumerate(smiles)]
    lines[50] = "C1CC(N BAD1"
    lines += [lines[3], lines[50], lines[120], f"{smiles[7]}.Cl SALT7"]
    path = tmp_path_factory.mktemp("rl") / "library.smi"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def local_run(bundle, library, tmp_path_factory):
    """What ``medassist screen ARGS --workers 1`` writes, run in this process."""
    from medassist.assistants.screening import ScreeningAssistant

    out = tmp_path_factory.mktemp("local")
    result = ScreeningAssistant.load(bundle).screen(library, top=20, filters=["lipinski", "pains"], batch_size=40, workers=1)
    result.write(out / "hits.csv", skipped_out=out / "skipped.csv")
    return out, result.summary.to_dict()


def _same_output(local: Path, ray_dir: Path) -> None:
    for name in ("hits.csv", "skipped.csv"):
        assert (ray_dir / name).read_bytes() == (local / name).read_bytes(), name


def test_screen_on_a_two_node_ray_cluster_writes_what_a_local_run_writes(cluster, bundle, library, local_run, cli, tmp_path):
    local, local_summary = local_run
    proc = cli("screen", bundle, "--library", library, "--out", tmp_path / "hits.csv", "--skipped-out", tmp_path / "skipped.csv",
               "--ray", cluster.address(), "--workers", "2", *ARGS)
    assert proc.returncode == 0, proc.stderr
    _same_output(local, tmp_path)
    summary = json.loads(proc.stdout)
    assert summary["workers"] == 2 and summary["worker_restarts"] == 0
    for key in ("read", "scored", "duplicates", "skipped", "skipped_by_reason", "failed_filters", "hits"):
        assert summary[key] == local_summary[key], key
    assert summary["read"] == 404 and summary["skipped_by_reason"] == {"invalid SMILES": 2, "duplicate": 3}
    skipped = pd.read_csv(tmp_path / "skipped.csv")
    assert skipped["row"].tolist() == [51, 402, 401, 403, 404]  # per batch: unreadable rows first, as a local run


def test_a_worker_killed_mid_run_costs_only_a_rerun_of_its_shard(cluster, bundle, library, local_run, cli, tmp_path):
    local, local_summary = local_run
    marker = tmp_path / "killed.pid"
    proc = cli("screen", bundle, "--library", library, "--out", tmp_path / "hits.csv", "--skipped-out", tmp_path / "skipped.csv",
               "--ray", cluster.address(), "--workers", "2", *ARGS, env={"MEDASSIST_SCREEN_RAY_FAULT": f"4:{marker}"})
    assert proc.returncode == 0, proc.stderr
    killed = int(marker.read_text())  # the worker scoring shard 4 SIGKILLed itself once
    assert not Path(f"/proc/{killed}").exists()
    summary = json.loads(proc.stdout)
    assert summary["worker_restarts"] == 1 and "died mid-run" in proc.stderr
    _same_output(local, tmp_path)  # nothing lost, nothing counted twice
    assert summary["read"] == local_summary["read"] == 404 and summary["scored"] == local_summary["scored"]


def test_an_address_without_a_cluster_is_refused_before_the_library_is_read(bundle, library, tmp_path):
    """(In-process: the CLI prints this ConfigError as its one ``error:`` line.)"""
    from medassist.assistants.screening import ScreeningAssistant
    from medassist.exceptions import ConfigError

    (port,) = _free_ports(1)
    assistant = ScreeningAssistant.load(bundle)
    with pytest.raises(ConfigError, match=rf"^--ray 127.0.0.1:{port}: cannot connect to a Ray cluster there .*ray start --head"):
        assistant.screen(library, ray_address=f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        assistant.screen(library, ray_address="localhost")
