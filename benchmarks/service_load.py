"""Service load benchmark: N concurrent clients on 127.0.0.1 against the tabular predict route
and the image route.

medassist's full route (bearer token → validation → prediction → audit entry + encrypted
prediction row, SQLite in WAL mode) runs side by side with a bare peer: the same bundle behind a
plain FastAPI endpoint with no auth, no audit and no database (the cost of the model alone).
Both run under uvicorn in their own process; the load generator (asyncio + httpx) shares the
same 2 cores, which is counted against us, not subtracted.

Phases (each bounded; the whole run stops by itself):
  for each bundle (the demo's architecture: mlp large, 5-member ensemble, 11.9 M parameters;
  and a small single mlp):
  peer    the bare endpoint with 1 and 32 clients
  sweep   medassist with 1, 8, 32 clients, explanations off, --phase-s seconds each
  explain 32 clients with integrated-gradients explanations on (what the web form does)
  paced   32 clients each sending one explained request a second (32 busy clinicians)
  soak    (large) 32 clients for --soak-s seconds, server RSS sampled every second
  workers (large) 32 clients with `medassist serve --workers 2`
  image   the image route (PNG upload → calibrated probabilities) with 1, 8, 32 clients, Grad-CAM
          off, and 8 clients with Grad-CAM on; a small image CNN trained on synthetic pictures

    --routes image           measures only the image route and keeps the tabular figures on file

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_load.py            # ~18 min on 2 cores
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_load.py --quick    # ~2 min smoke run

Writes benchmarks/results/service_load.json; the table in benchmarks/README.md comes from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pydantic import BaseModel  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "service_load.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), in MiB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------------------
# The peer: the same bundle, no auth, no audit, no database.


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


# --------------------------------------------------------------------------------------------
# Load generation


async def _load(url: str, headers: dict, rows: list[dict], *, clients: int, seconds: float, explain: bool,
                sample_pid: int | None, warmup_s: float = 3.0, interval_s: float = 0.0, image: bytes | None = None) -> dict:
    """Closed loop: each client sends its next request when the last one returns, after
    ``interval_s`` minus the time it took (0: no pause at all). With ``image``, each request
    uploads that PNG to the image route instead of posting a table row."""
    import httpx

    async def send(client: httpx.AsyncClient, i: int) -> httpx.Response:
        if image is not None:
            return await client.post(url, params={"explain": str(explain).lower()},
                                     files={"file": ("scan.png", image, "image/png")})
        return await client.post(url, json={"row": rows[i % len(rows)], "explain": explain})

    latencies: list[float] = []
    errors: dict[str, int] = {}
    rss: list[tuple[float, float]] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
        start = time.monotonic()
        measure_from = start + warmup_s
        stop_at = measure_from + seconds

        async def worker(k: int) -> None:
            i = k
            while True:
                t0 = time.monotonic()
                if t0 >= stop_at:
                    return
                try:
                    r = await send(client, i)
                    ok = r.status_code == 200
                    key = None if ok else f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    key = type(e).__name__
                t1 = time.monotonic()
                if t0 >= measure_from:
                    if key is None:
                        latencies.append(t1 - t0)
                    else:
                        errors[key] = errors.get(key, 0) + 1
                i += clients
                if interval_s:
                    await asyncio.sleep(max(0.0, interval_s - (t1 - t0)))

        async def sampler() -> None:
            while time.monotonic() < stop_at:
                if sample_pid is not None:
                    rss.append((round(time.monotonic() - start, 1), round(_rss_mb(sample_pid), 1)))
                await asyncio.sleep(1.0)

        await asyncio.gather(sampler(), *(worker(k) for k in range(clients)))
    lat = sorted(latencies)

    def q(p: float) -> float | None:
        return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None

    return {"clients": clients, "seconds": seconds, "explain": explain, "interval_s": interval_s, "requests": len(lat),
            "errors": sum(errors.values()), "error_kinds": errors, "throughput_rps": round(len(lat) / seconds, 1),
            "p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99), "max_ms": round(1000 * lat[-1], 1) if lat else None,
            "mean_ms": round(1000 * statistics.fmean(lat), 1) if lat else None, "rss_mb": rss}


def _rss_summary(rss: list[tuple[float, float]]) -> dict:
    if len(rss) < 10:
        return {}
    ts = [t for t, _ in rss]
    ms = [m for _, m in rss]
    n = len(ms)
    tail = max(1, n // 10)
    t_mean, m_mean = statistics.fmean(ts), statistics.fmean(ms)
    slope = sum((t - t_mean) * (m - m_mean) for t, m in rss) / max(1e-9, sum((t - t_mean) ** 2 for t in ts))
    return {"first_10pct_mb": round(statistics.fmean(ms[:tail]), 1), "last_10pct_mb": round(statistics.fmean(ms[-tail:]), 1),
            "min_mb": min(ms), "max_mb": max(ms), "slope_mb_per_min": round(60 * slope, 3)}


# --------------------------------------------------------------------------------------------


def _prepare(work: Path, bundle: str | None) -> tuple[dict[str, Path], list[dict]]:
    """The bundles to serve: the demo's architecture (large) and a small one; plus wdbc rows."""
    from medassist.data.catalog import get_dataset
    from medassist.service.testing import build_tiny_bundle

    bundles: dict[str, Path] = {}
    if bundle is not None:
        bundles["given"] = Path(bundle).resolve()
    else:
        for size, members in (("large", 5), ("small", 1)):
            print(f"training a wdbc bundle: mlp {size} x{members}, 2 epochs ...", flush=True)
            t0 = time.monotonic()
            bundles[size] = build_tiny_bundle(work / "bundles" / f"wdbc-mlp-{size}", dataset="wdbc", size=size,
                                              n_members=members, epochs=2)
            print(f"  trained in {time.monotonic() - t0:.0f} s", flush=True)
    first = next(iter(bundles.values()))
    columns = json.loads((first / "featurizer.json").read_text())["state"]["columns_"]
    frame = get_dataset("wdbc").load()
    rows = [{c: (None if v != v else float(v)) for c, v in zip(columns, rec)} for rec in frame[columns].itertuples(index=False)]
    return bundles, rows


def _start_medassist(home: Path, bundle: Path, *, workers: int) -> tuple[subprocess.Popen, str, str]:
    from medassist.settings import Settings
    from medassist.store.accounts import create_user, new_api_token
    from medassist.store.db import open_database

    env = {**os.environ, "MEDASSIST_HOME": str(home), "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"],
           "MEDASSIST_MAX_ROWS_PER_REQUEST": "1000"}
    db = open_database(Settings(home=home))
    with db.session(write=True) as s:
        from medassist.store.accounts import get_user

        user = get_user(s, "bench") or create_user(s, username="bench", role="clinician", password="load test passphrase 1",
                                                   must_change_password=False)[0]
        token = new_api_token(s, user=user, name="bench", days=1)[1]
    db.dispose()
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "medassist", "serve", "--port", str(port), "--bundles", str(bundle.parent),
                             "--workers", str(workers), "--no-access-log"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    _wait_up(base + "/healthz", proc)
    return proc, base, token


def _start_bare(bundle: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(bundle), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    _wait_up(base + "/healthz", proc)
    return proc, base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="A diagnosis bundle to serve (default: train the demo architecture on wdbc, 2 epochs).")
    ap.add_argument("--phase-s", type=float, default=30, help="Seconds measured per sweep point.")
    ap.add_argument("--soak-s", type=float, default=600, help="Seconds of the memory soak.")
    ap.add_argument("--quick", action="store_true", help="5-second phases and a 30-second soak (a smoke run).")
    ap.add_argument("--out", type=Path, default=RESULTS, help="Where to write the figures (JSON).")
    ap.add_argument("--routes", nargs="+", choices=["tabular", "image"], default=["tabular", "image"],
                    help="Routes to measure; figures of routes not measured are kept from --out.")
    ap.add_argument("--serve-bare", metavar="BUNDLE", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_bare:
        import uvicorn

        uvicorn.run(bare_app(args.serve_bare), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
        return
    if args.quick:
        args.phase_s, args.soak_s = 5, 30
    started = time.time()
    results: dict = {"host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                              "omp_num_threads": os.environ["OMP_NUM_THREADS"]}, "phases": []}
    import torch

    results["host"]["torch"] = torch.__version__
    with tempfile.TemporaryDirectory(prefix="medassist-load-") as tmp:
        work = Path(tmp)
        bundles, rows = _prepare(work, args.bundle) if "tabular" in args.routes else ({}, [])
        results["bundles"] = {}

        def run(name: str, url: str, headers: dict, pid: int, clients: int, seconds: float, explain: bool, bundle: str,
                interval_s: float = 0.0, image: bytes | None = None) -> dict:
            pace = f", one request per {interval_s:g} s each" if interval_s else ""
            print(f"{name} [{bundle}]: {clients} clients{pace}, explain={'on' if explain else 'off'}, {seconds:.0f} s ...", flush=True)
            r = asyncio.run(_load(url, headers, rows, clients=clients, seconds=seconds, explain=explain, sample_pid=pid,
                                  interval_s=interval_s, image=image))
            r["server"], r["bundle"] = name, bundle
            r["route"] = "image" if image is not None else "tabular"
            rss = r.pop("rss_mb")
            r["rss"] = _rss_summary(rss)
            if name.endswith("soak"):
                r["rss_series"] = rss
            print(f"   {r['throughput_rps']} req/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  errors {r['errors']}  "
                  f"RSS {rss[-1][1] if rss else '?'} MiB  {r['error_kinds'] or ''}", flush=True)
            results["phases"].append(r)
            return r

        home = work / "home"
        for label, bundle in (bundles.items() if "tabular" in args.routes else ()):
            card = json.loads((bundle / "model_card.json").read_text())
            results["bundles"][label] = {"name": card["name"], "n_parameters": card["model"]["n_parameters"],
                                         "ensemble_members": card["model"].get("ensemble_members", 1)}
            bundle_id = json.loads((bundle / "bundle.json").read_text())["files"]["model.safetensors"][:16]
            peer, peer_url = _start_bare(bundle)
            try:
                for n in (1, 32):
                    run("bare peer", peer_url + "/predict", {}, peer.pid, n, args.phase_s, False, label)
            finally:
                _stop(peer)
            proc, base, token = _start_medassist(home, bundle, workers=1)
            url, headers = f"{base}/api/v1/diagnosis/{bundle_id}/predict", {"Authorization": f"Bearer {token}"}
            try:
                for n in (1, 8, 32):
                    run("medassist", url, headers, proc.pid, n, args.phase_s, False, label)
                run("medassist", url, headers, proc.pid, 32, args.phase_s, True, label)
                run("medassist paced", url, headers, proc.pid, 32, args.phase_s, True, label, interval_s=1.0)
                if label != "small":
                    run("medassist soak", url, headers, proc.pid, 32, args.soak_s, False, label)
            finally:
                _stop(proc)
            if label != "small":
                proc, base, token = _start_medassist(home, bundle, workers=2)
                url, headers = f"{base}/api/v1/diagnosis/{bundle_id}/predict", {"Authorization": f"Bearer {token}"}
                try:
                    run("medassist --workers 2", url, headers, proc.pid, 32, args.phase_s, False, label)
                finally:
                    _stop(proc)
        if "image" in args.routes:
            run_image_route(work, home, run, results, phase_s=args.phase_s)
        from medassist.settings import Settings
        from medassist.store.audit import verify_chain
        from medassist.store.db import open_database

        db = open_database(Settings(home=home))
        with db.session() as s:
            check = verify_chain(s)
        results["audit_chain"] = {"ok": check.ok, "entries": check.n_entries}
        print(f"audit chain after the run: {check.describe()}", flush=True)
    keep_from_file(results, args)
    results["wall_s"] = round(time.time() - started, 1)
    results["measured"] = time.strftime("%Y-%m-%d")
    results["quick"] = bool(args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(markdown(results))
    print(f"wrote {args.out} ({results['wall_s']:.0f} s)")


def run_image_route(work: Path, home: Path, run, results: dict, *, phase_s: float) -> None:
    """The image route: a small CNN (MONAI DenseNet, small preset) on 28-pixel synthetic pictures."""
    from medassist.service.assistant_testing import build_imaging_bundle, example_png

    print("training an image bundle on synthetic pictures (1 epoch) ...", flush=True)
    bundle = build_imaging_bundle(work / "image-bundles" / "synthetic", epochs=1, n=256)
    card = json.loads((bundle / "model_card.json").read_text())
    results["bundles"]["image"] = {"name": card["name"], "n_parameters": card["model"]["n_parameters"]}
    bundle_id = json.loads((bundle / "bundle.json").read_text())["files"]["model.safetensors"][:16]
    png = example_png()
    proc, base, token = _start_medassist(home, bundle, workers=1)
    url, headers = f"{base}/api/v1/imaging/{bundle_id}/predict", {"Authorization": f"Bearer {token}"}
    try:
        for n in (1, 8, 32):
            run("medassist", url, headers, proc.pid, n, phase_s, False, "image", image=png)
        run("medassist", url, headers, proc.pid, 8, phase_s, True, "image", image=png)
    finally:
        _stop(proc)


def keep_from_file(results: dict, args: argparse.Namespace) -> None:
    """Routes not measured this time keep their figures (and bundles) from the results file."""
    if set(args.routes) == {"tabular", "image"} or not args.out.exists():
        return
    old = json.loads(args.out.read_text())
    kept = [r for r in old.get("phases", []) if r.get("route", "tabular") not in args.routes]
    results["phases"] = kept + results["phases"]
    for label, info in old.get("bundles", {}).items():
        results["bundles"].setdefault(label, info)
    results["kept_from_earlier_run"] = {"routes": sorted({r.get("route", "tabular") for r in kept}),
                                        "measured": old.get("measured")}


def markdown(results: dict) -> str:
    lines = ["| bundle | server | clients | pace | explain | req/s | p50 ms | p99 ms | max ms | errors | RSS first→last 10% (MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["phases"]:
        rss = r.get("rss") or {}
        mem = f"{rss.get('first_10pct_mb', '?')} → {rss.get('last_10pct_mb', '?')}" if rss else ""
        pace = f"1 per {r['interval_s']:g} s" if r.get("interval_s") else "flat out"
        lines.append(f"| {r['bundle']} | {r['server']} | {r['clients']} | {pace} | {'on' if r['explain'] else 'off'} | {r['throughput_rps']} | "
                     f"{r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['errors']} | {mem} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
