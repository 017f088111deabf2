"""Service load benchmark: a real `medassist serve` process, a separate load-generator process
(this script: asyncio with a minimal raw HTTP/1.1 keep-alive client, so the client costs little of
the 2 cores it shares with the server), against the tabular predict route (and the image route).

Side by side, per bundle (a small single MLP and the `large` 5-member ensemble, both on wdbc):
  floor      what a request cannot avoid: one row's featurisation + the forward pass (timed
             in-process, CPU seconds) + a raw HTTP round trip (a bare asyncio server process
             answering a fixed JSON body over a keep-alive connection, 1 client)
  bare peer  the same bundle behind a plain FastAPI endpoint (no auth, no audit, no database,
             no batching; medassist's loader and pandas path) in its own uvicorn process
  medassist  `medassist serve` (bearer token, validation, prediction with micro-batching, the
             hash-chained audit entry + encrypted prediction row committed before the answer)
  baseline   with --baseline-src DIR: the same `medassist serve` from another source tree (the
             code before a change), measured in the same run
Each phase reports req/s, rows/s, p50/p90/p99/max latency, errors, and the server's CPU seconds
per request (utime + stime of the server process over the measured window, /proc/PID/stat).
Phases: 1, 8, 32 clients with explanations off; 1 and 32 clients with integrated-gradients
explanations on; for the large ensemble, --rows-per-request rows per request at 32 clients
(rows/s through batching) and a soak with explanations on (server RSS sampled every second).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_load.py --routes tabular --phase-s 10 --soak-s 120
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_load.py --routes tabular --baseline-src /tmp/old/src
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_load.py --quick                    # smoke run

Writes benchmarks/results/service_load.json; the table in benchmarks/README.md comes from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pydantic import BaseModel  # noqa: E402

from medassist.testing.processes import free_port, stop, wait_until_up  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "service_load.json"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _pids(pid: int) -> list[int]:
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    return pids


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), in MiB."""
    total = 0
    for p in _pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _cpu_s(pid: int) -> float:
    """utime + stime of a process and its children so far, in seconds."""
    total = 0
    for p in _pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


# --------------------------------------------------------------------------------------------
# The peers: the same bundle with no auth, no audit, no database; and a raw HTTP echo.


class BareBody(BaseModel):
    row: dict
    explain: bool = False


def bare_app(bundle: str):
    import pandas as pd
    from fastapi import FastAPI

    from medassist.assistants.diagnosis import DiagnosisAssistant

    assistant = DiagnosisAssistant.load(bundle)
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: BareBody) -> dict:
        out = assistant.predict(pd.DataFrame([body.row]), explain=body.explain)
        return {"prediction": str(out.loc[0, "prediction"]),
                "probabilities": {c: float(out.loc[0, f"prob_{c}"]) for c in assistant.bundle.schema.classes}}

    return app


ECHO = b'{"prediction":"benign","probabilities":{"benign":0.9,"malignant":0.1}}'


async def _echo_server(port: int) -> None:
    """The HTTP floor: reads a request (headers + Content-Length body), answers a fixed body."""
    response = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " + str(len(ECHO)).encode()
                + b"\r\n\r\n" + ECHO)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                writer.write(response)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# --------------------------------------------------------------------------------------------
# Load generation: a minimal HTTP/1.1 keep-alive client (a few microseconds per request, where
# httpx costs about a millisecond of the same 2 cores).


class RawConnection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.writer.write(head + body)
            status_head = await self.reader.readuntil(b"\r\n\r\n")
            lines = status_head.split(b"\r\n")
            status = int(lines[0].split()[1])
            length, close = None, False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
                elif name == b"transfer-encoding":
                    raise RuntimeError("chunked responses are not supported by this client")
            data = await self.reader.readexactly(length or 0)
            if close:
                await self.close()
            return status, data
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _request_head(path: str, headers: dict, length: int) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{extra}"
            f"content-length: {length}\r\n\r\n").encode()


async def _load(url: str, headers: dict, bodies: list[bytes], *, clients: int, seconds: float, sample_pid: int | None,
                warmup_s: float = 2.0, rows_per_request: int = 1, image: bytes | None = None, explain: bool = False) -> dict:
    """Closed loop: each client (its own keep-alive connection) sends its next request when the
    last one returns. Server CPU is read at the start and end of the measured window."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port, path = parts.hostname, parts.port, parts.path
    latencies: list[float] = []
    errors: dict[str, int] = {}
    rss: list[tuple[float, float]] = []
    cpu: dict[str, float] = {}
    if image is not None:  # multipart upload, built once
        boundary = "medassistbench"
        body = (f"--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"scan.png\"\r\n"
                f"content-type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
        path = f"{path}?explain={str(explain).lower()}"
        hdrs = {**headers, "content-type": f"multipart/form-data; boundary={boundary}"}
        extra = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        requests = [((f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{extra}content-length: {len(body)}\r\n\r\n").encode(), body)]
    else:
        requests = [(_request_head(path, headers, len(b)), b) for b in bodies]
    start = time.monotonic()
    measure_from = start + warmup_s
    stop_at = measure_from + seconds
    done_in_window = [0]

    async def worker(k: int) -> None:
        conn = RawConnection(host, port)
        i = k
        try:
            while True:
                t0 = time.monotonic()
                if t0 >= stop_at:
                    return
                try:
                    status, _ = await conn.request(*requests[i % len(requests)])
                    key = None if status == 200 else f"HTTP {status}"
                except (OSError, asyncio.IncompleteReadError, RuntimeError, ValueError) as e:
                    key = type(e).__name__
                t1 = time.monotonic()
                if t1 >= measure_from:  # what completes in the measured window (and the stragglers after it)
                    if key is None:
                        latencies.append(t1 - t0)
                    else:
                        errors[key] = errors.get(key, 0) + 1
                    done_in_window[0] += key is None and t1 <= stop_at
                i += clients
        finally:
            await conn.close()

    async def sampler() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        if sample_pid is not None:
            cpu["start"] = _cpu_s(sample_pid)
        while time.monotonic() < stop_at:
            if sample_pid is not None:
                rss.append((round(time.monotonic() - start, 1), round(_rss_mb(sample_pid), 1)))
            await asyncio.sleep(min(1.0, max(0.0, stop_at - time.monotonic())))
        if sample_pid is not None:
            cpu["end"] = _cpu_s(sample_pid)

    await asyncio.gather(sampler(), *(worker(k) for k in range(clients)))
    lat = sorted(latencies)

    def q(p: float) -> float | None:
        return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None

    n_done = done_in_window[0]
    cpu_ms = (round(1000 * (cpu["end"] - cpu["start"]) / n_done, 2) if n_done and "end" in cpu else None)
    return {"clients": clients, "seconds": seconds, "explain": explain, "rows_per_request": rows_per_request,
            "requests": len(lat), "errors": sum(errors.values()), "error_kinds": errors,
            "throughput_rps": round(len(lat) / seconds, 1), "rows_per_s": round(rows_per_request * len(lat) / seconds, 1),
            "server_cpu_ms_per_request": cpu_ms,
            "server_cpu_share": round((cpu["end"] - cpu["start"]) / seconds, 2) if "end" in cpu else None,
            "p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99), "max_ms": round(1000 * lat[-1], 1) if lat else None,
            "mean_ms": round(1000 * statistics.fmean(lat), 2) if lat else None, "rss_mb": rss}


def _rss_summary(rss: list[tuple[float, float]]) -> dict:
    if len(rss) < 5:
        return {"last_mb": rss[-1][1]} if rss else {}
    ts = [t for t, _ in rss]
    ms = [m for _, m in rss]
    n = len(ms)
    tail = max(1, n // 10)
    t_mean, m_mean = statistics.fmean(ts), statistics.fmean(ms)
    slope = sum((t - t_mean) * (m - m_mean) for t, m in rss) / max(1e-9, sum((t - t_mean) ** 2 for t in ts))
    return {"first_10pct_mb": round(statistics.fmean(ms[:tail]), 1), "last_10pct_mb": round(statistics.fmean(ms[-tail:]), 1),
            "min_mb": min(ms), "max_mb": max(ms), "slope_mb_per_min": round(60 * slope, 3)}


# --------------------------------------------------------------------------------------------
# The floor, in-process: one row's featurisation and the forward pass.


def model_floor(bundle: Path, rows: list[dict], *, reps: int = 300) -> dict:
    """CPU ms per single-row request spent in featurisation (``transform_arrays``) and the forward
    pass + temperature scaling; and rows/s of the forward pass alone at batch 32."""
    import numpy as np
    import torch

    from medassist.assistants.diagnosis import DiagnosisAssistant
    from medassist.evaluation.calibration import TemperatureScaler

    torch.set_num_threads(1)
    a = DiagnosisAssistant.load(bundle)
    fz, model = a.bundle.featurizer, a.bundle.model
    scaler = TemperatureScaler.from_dict(a.bundle.calibration["scaler"])
    numeric = set(fz.numeric_)

    def columns(rs: list[dict]) -> dict:
        return {c: np.asarray([np.nan if r[c] is None else r[c] for r in rs] if c in numeric else [r[c] for r in rs],
                              dtype=float if c in numeric else object) for c in fz.columns_}

    def timed(fn, n: int) -> float:
        fn()
        t0 = time.process_time()
        for _ in range(n):
            fn()
        return 1000 * (time.process_time() - t0) / n

    one = [rows[0]]
    feat_ms = timed(lambda: fz.transform_arrays(columns(one)), reps)
    x1 = torch.from_numpy(fz.transform_arrays(columns(one)).values)
    x32 = torch.from_numpy(fz.transform_arrays(columns(rows[:32])).values)

    def forward(x):
        with torch.no_grad():
            return scaler.transform(model(x).numpy())

    fwd_ms = timed(lambda: forward(x1), reps)
    fwd32_ms = timed(lambda: forward(x32), max(20, reps // 10))
    # The same network on the runtimes the service could use: TorchScript (traced, frozen) and
    # ONNX Runtime (what the service adopts where it reproduces PyTorch; see models/onnx_runtime.py).
    from medassist.models.onnx_runtime import _MemberLogProbabilities, compile_forward, torch_forward

    eager = torch_forward(model)
    traced = torch.jit.freeze(torch.jit.trace(_MemberLogProbabilities(model).eval(), x32))

    def scripted(x):
        with torch.inference_mode():
            return traced(torch.from_numpy(x)).numpy()

    served = compile_forward(model, n_features=x1.shape[1])
    runtimes = {}
    for name, fn in (("torch", eager), ("torchscript", scripted), ("onnxruntime", served.run)):
        a1, a32 = x1.numpy(), x32.numpy()
        runtimes[name] = {"forward_ms": round(timed(lambda fn=fn, a1=a1: fn(a1), reps), 3),
                          "forward_batch32_rows_per_s": round(32 * 1000 / timed(lambda fn=fn, a32=a32: fn(a32), max(20, reps // 10)), 0),
                          "max_abs_diff_p": float(np.abs(np.exp(fn(a32)) - np.exp(eager(a32))).max())}
    from medassist.explain.attributions import integrated_gradients_checked

    ig_ms = timed(lambda: integrated_gradients_checked(model, x1.numpy(), np.array([0])), max(20, reps // 10))
    xs = fz.transform_arrays(columns(rows[:64])).values
    _, delta = integrated_gradients_checked(model, xs, np.ones(len(xs), dtype=int))
    return {"featurise_ms": round(feat_ms, 3), "forward_ms": round(fwd_ms, 3),
            "forward_batch32_rows_per_s": round(32 * 1000 / fwd32_ms, 0), "explain_ms_1row": round(ig_ms, 2),
            "explain_completeness_gap_max": round(float(np.abs(delta).max()), 6),
            "explain_completeness_gap_median": round(float(np.median(np.abs(delta))), 6),
            "runtimes": runtimes, "served_runtime": served.runtime, "served_runtime_reason": served.reason}


# --------------------------------------------------------------------------------------------


def _prepare(work: Path, bundle: str | None, sizes: list[str]) -> tuple[dict[str, Path], list[dict]]:
    """The bundles to serve: the demo's architecture (large) and a small one; plus wdbc rows."""
    from medassist.data.catalog import get_dataset
    from medassist.testing.server import build_tiny_bundle

    bundles: dict[str, Path] = {}
    if bundle is not None:
        bundles["given"] = Path(bundle).resolve()
    else:
        for size, members in (("small", 1), ("large", 5)):
            if size not in sizes:
                continue
            print(f"training a wdbc bundle: mlp {size} x{members}, 2 epochs ...", flush=True)
            t0 = time.monotonic()
            bundles[size] = build_tiny_bundle(work / "bundles" / size / f"wdbc-mlp-{size}", dataset="wdbc", size=size,
                                              n_members=members, epochs=2)
            print(f"  trained in {time.monotonic() - t0:.0f} s", flush=True)
    first = next(iter(bundles.values()))
    columns = json.loads((first / "featurizer.json").read_text())["state"]["columns_"]
    frame = get_dataset("wdbc").load()
    rows = [{c: (None if v != v else float(v)) for c, v in zip(columns, rec)} for rec in frame[columns].itertuples(index=False)]
    return bundles, rows


def _token(home: Path) -> str:
    from medassist.settings import Settings
    from medassist.store.accounts import create_user, get_user, new_api_token
    from medassist.store.db import open_database

    db = open_database(Settings(home=home))
    with db.session(write=True) as s:
        user = get_user(s, "bench") or create_user(s, username="bench", role="clinician", password="load test passphrase 1",
                                                   must_change_password=False)[0]
        token = new_api_token(s, user=user, name="bench", days=1)[1]
    db.dispose()
    return token


def _start_medassist(home: Path, bundle: Path, *, workers: int, src: str | None = None) -> tuple[subprocess.Popen, str, str]:
    token = _token(home)
    env = {**os.environ, "MEDASSIST_HOME": str(home), "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"],
           "MEDASSIST_MAX_ROWS_PER_REQUEST": "1000"}
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    port = free_port()
    log = open(home / "serve.log", "a")  # a file, not a pipe nobody reads: a full pipe blocks the server's logging
    proc = subprocess.Popen([sys.executable, "-m", "medassist", "serve", "--port", str(port), "--bundles", str(bundle.parent),
                             "--workers", str(workers), "--no-access-log"], env=env, stdout=subprocess.DEVNULL,
                            stderr=log, text=True)
    log.close()
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base + "/healthz", proc)
    return proc, base, token


def _start_script(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, *args, "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True)
    base = f"http://127.0.0.1:{port}"
    if "--serve-bare" in args:
        wait_until_up(base + "/healthz", proc)
    else:
        _wait_port(port, proc)
    return proc, base


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited early (see its serve.log)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open in {timeout} s")


def _bodies(rows: list[dict], *, explain: bool, n_rows: int = 1) -> list[bytes]:
    if n_rows == 1:
        return [json.dumps({"row": r, "explain": explain}).encode() for r in rows]
    return [json.dumps({"rows": [rows[(i + j) % len(rows)] for j in range(n_rows)], "explain": explain}).encode()
            for i in range(0, len(rows), n_rows)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="A diagnosis bundle to serve (default: train small and large mlp on wdbc, 2 epochs).")
    ap.add_argument("--sizes", nargs="+", choices=["small", "large"], default=["small", "large"])
    ap.add_argument("--phase-s", type=float, default=10, help="Seconds measured per point.")
    ap.add_argument("--soak-s", type=float, default=120, help="Seconds of the memory soak with explanations on (large; 0: none).")
    ap.add_argument("--rows-per-request", type=int, default=8, help="Rows per request of the large-ensemble rows/s phase.")
    ap.add_argument("--baseline-src", help="Also serve medassist from this source tree (the code before a change), same run.")
    ap.add_argument("--quick", action="store_true", help="3-second phases and a 20-second soak (a smoke run).")
    ap.add_argument("--out", type=Path, default=RESULTS, help="Where to write the figures (JSON).")
    ap.add_argument("--routes", nargs="+", choices=["tabular", "image"], default=["tabular"],
                    help="Routes to measure; figures of routes not measured are kept from --out.")
    ap.add_argument("--serve-bare", metavar="BUNDLE", help=argparse.SUPPRESS)
    ap.add_argument("--serve-echo", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_bare:
        import uvicorn

        uvicorn.run(bare_app(args.serve_bare), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
        return
    if args.serve_echo:
        try:
            asyncio.run(_echo_server(args.port))
        except KeyboardInterrupt:
            pass
        return
    if args.quick:
        args.phase_s, args.soak_s = 3, 20
    started = time.time()
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    results: dict = {"host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                              "omp_num_threads": os.environ["OMP_NUM_THREADS"], "loadavg_before": load_before},
                     "args": " ".join(sys.argv[1:]), "phases": [], "floor": {}}
    import torch

    results["host"]["torch"] = torch.__version__
    with tempfile.TemporaryDirectory(prefix="medassist-load-") as tmp:
        work = Path(tmp)
        bundles, rows = _prepare(work, args.bundle, args.sizes) if "tabular" in args.routes else ({}, [])
        results["bundles"] = {}

        def run(name: str, url: str, headers: dict, pid: int | None, clients: int, seconds: float, explain: bool, bundle: str,
                n_rows: int = 1, image: bytes | None = None) -> dict:
            print(f"{name} [{bundle}]: {clients} clients, {n_rows} row(s)/request, explain={'on' if explain else 'off'}, "
                  f"{seconds:.0f} s ...", flush=True)
            bodies = [] if image is not None else _bodies(rows, explain=explain, n_rows=n_rows)
            r = asyncio.run(_load(url, headers, bodies, clients=clients, seconds=seconds, sample_pid=pid,
                                  rows_per_request=n_rows, image=image, explain=explain))
            r["server"], r["bundle"] = name, bundle
            r["route"] = "image" if image is not None else "tabular"
            rss = r.pop("rss_mb")
            r["rss"] = _rss_summary(rss)
            if name.endswith("soak"):
                r["rss_series"] = rss
            print(f"   {r['throughput_rps']} req/s  {r['rows_per_s']} rows/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  "
                  f"server CPU {r['server_cpu_ms_per_request']} ms/req  errors {r['errors']}  RSS {rss[-1][1] if rss else '?'} MiB  "
                  f"{r['error_kinds'] or ''}", flush=True)
            results["phases"].append(r)
            return r

        echo, echo_url = _start_script("--serve-echo")
        try:
            for n in (1, 32):
                run("raw HTTP echo", echo_url + "/", {}, echo.pid, n, args.phase_s, False, "-")
        finally:
            stop(echo)
        for label, bundle in (bundles.items() if "tabular" in args.routes else ()):
            card = json.loads((bundle / "model_card.json").read_text())
            results["bundles"][label] = {"name": card["name"], "n_parameters": card["model"]["n_parameters"],
                                         "ensemble_members": card["model"].get("ensemble_members", 1)}
            results["floor"][label] = model_floor(bundle, rows)
            print(f"floor [{label}]: {results['floor'][label]}", flush=True)
            bundle_id = json.loads((bundle / "bundle.json").read_text())["files"]["model.safetensors"][:16]
            peer, peer_url = _start_script("--serve-bare", str(bundle))
            try:
                for n in (1, 8, 32):
                    run("bare peer", peer_url + "/predict", {}, peer.pid, n, args.phase_s, False, label)
            finally:
                stop(peer)
            servers = [("medassist", None)] + ([("medassist before", args.baseline_src)] if args.baseline_src else [])
            for name, src in servers:
                home = work / f"home-{label}-{'before' if src else 'after'}"
                proc, base, token = _start_medassist(home, bundle, workers=1, src=src)
                url, headers = f"{base}/api/v1/diagnosis/{bundle_id}/predict", {"authorization": f"Bearer {token}"}
                try:
                    for n in (1, 8, 32):
                        run(name, url, headers, proc.pid, n, args.phase_s, False, label)
                    run(name, url, headers, proc.pid, 1, args.phase_s, True, label)
                    run(name, url, headers, proc.pid, 32, args.phase_s, True, label)
                    if label == "large":
                        run(name, url, headers, proc.pid, 32, args.phase_s, False, label, n_rows=args.rows_per_request)
                        if args.soak_s and src is None:
                            run(name + " soak", url, headers, proc.pid, 32, args.soak_s, True, label)
                finally:
                    stop(proc)
                results.setdefault("audit_chain", {})[f"{label} {name}"] = _verify(home)
        if "image" in args.routes:
            run_image_route(work, work / "home-image", run, results, phase_s=args.phase_s)
    with open("/proc/loadavg") as f:
        results["host"]["loadavg_after"] = f.read().split()[:3]
    keep_from_file(results, args)
    results["wall_s"] = round(time.time() - started, 1)
    results["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results["quick"] = bool(args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(markdown(results))
    print(f"wrote {args.out} ({results['wall_s']:.0f} s)")


def _verify(home: Path) -> dict:
    from medassist.settings import Settings
    from medassist.store.audit import verify_chain
    from medassist.store.db import open_database

    db = open_database(Settings(home=home))
    with db.session() as s:
        check = verify_chain(s)
    db.dispose()
    print(f"audit chain after the run: {check.describe()}", flush=True)
    return {"ok": check.ok, "entries": check.n_entries}


def run_image_route(work: Path, home: Path, run, results: dict, *, phase_s: float) -> None:
    """The image route: a small CNN (MONAI DenseNet, small preset) on 28-pixel synthetic pictures."""
    from medassist.testing.assistants import build_imaging_bundle, example_png

    print("training an image bundle on synthetic pictures (1 epoch) ...", flush=True)
    bundle = build_imaging_bundle(work / "image-bundles" / "synthetic", epochs=1, n=256)
    card = json.loads((bundle / "model_card.json").read_text())
    results["bundles"]["image"] = {"name": card["name"], "n_parameters": card["model"]["n_parameters"]}
    bundle_id = json.loads((bundle / "bundle.json").read_text())["files"]["model.safetensors"][:16]
    png = example_png()
    proc, base, token = _start_medassist(home, bundle, workers=1)
    url, headers = f"{base}/api/v1/imaging/{bundle_id}/predict", {"authorization": f"Bearer {token}"}
    try:
        for n in (1, 8, 32):
            run("medassist", url, headers, proc.pid, n, phase_s, False, "image", image=png)
        run("medassist", url, headers, proc.pid, 8, phase_s, True, "image", image=png)
    finally:
        stop(proc)


def keep_from_file(results: dict, args: argparse.Namespace) -> None:
    """Routes not measured this time keep their figures (and bundles) from the results file."""
    if set(args.routes) == {"tabular", "image"} or not args.out.exists():
        return
    old = json.loads(args.out.read_text())
    kept = [r for r in old.get("phases", []) if r.get("route", "tabular") not in args.routes]
    if not kept:
        return
    results["phases"] = kept + results["phases"]
    for label, info in old.get("bundles", {}).items():
        results["bundles"].setdefault(label, info)
    results["kept_from_earlier_run"] = {"routes": sorted({r.get("route", "tabular") for r in kept}),
                                        "measured": old.get("measured")}


def markdown(results: dict) -> str:
    lines = ["| bundle | server | clients | rows/req | explain | req/s | rows/s | p50 ms | p99 ms | max ms | server CPU ms/req | errors | RSS first→last 10% (MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["phases"]:
        rss = r.get("rss") or {}
        mem = f"{rss.get('first_10pct_mb', '?')} → {rss.get('last_10pct_mb', '?')}" if "first_10pct_mb" in rss else ""
        lines.append(f"| {r['bundle']} | {r['server']} | {r['clients']} | {r.get('rows_per_request', 1)} | "
                     f"{'on' if r['explain'] else 'off'} | {r['throughput_rps']} | {r.get('rows_per_s', '')} | "
                     f"{r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r.get('server_cpu_ms_per_request')} | {r['errors']} | {mem} |")
    floor = results.get("floor") or {}
    if floor:
        lines += ["", "| bundle | featurise ms | forward ms | forward rows/s at batch 32 | explain ms (1 row) | IG completeness gap max / median |",
                  "|---|---|---|---|---|---|"]
        for label, f in floor.items():
            lines.append(f"| {label} | {f['featurise_ms']} | {f['forward_ms']} | {f['forward_batch32_rows_per_s']:.0f} | "
                         f"{f['explain_ms_1row']} | {f['explain_completeness_gap_max']} / {f['explain_completeness_gap_median']} |")
        if any("runtimes" in f for f in floor.values()):
            lines += ["", "The same network's forward pass (member log-probabilities, one thread) on each runtime; "
                      "`served` is what `medassist serve` adopted for the bundle (ONNX Runtime only where its probabilities "
                      "agree with PyTorch's within 1e-5 on a probe batch):", "",
                      "| bundle | runtime | forward ms (1 row) | rows/s at batch 32 | max abs difference in p vs PyTorch | served |",
                      "|---|---|---|---|---|---|"]
            for label, f in floor.items():
                for name, r in (f.get("runtimes") or {}).items():
                    lines.append(f"| {label} | {name} | {r['forward_ms']} | {r['forward_batch32_rows_per_s']:.0f} | "
                                 f"{r['max_abs_diff_p']:.1e} | {'yes' if name == f.get('served_runtime') else ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
