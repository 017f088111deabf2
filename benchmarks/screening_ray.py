"""Screening on Ray, 1 → 2 workers: ``medassist screen`` locally (1 and 2 worker processes) and
with ``--ray`` on a 2-node Ray cluster started on 127.0.0.1 (a head and a second node, one CPU
each; 1 and 2 Ray actors), on the same library, checking that every run writes the same hits.

The library repeats the unique SMILES of every bundled molecule set (ChEMBL approved drugs,
B3DB, Huuskonen solubility, FreeSolv: ~12,000) up to the size asked (``build_library`` of
benchmarks/screening.py) and is screened with ``--keep-duplicates`` so every line is parsed,
featurised and scored. The bundles are 3-member ensembles trained on the solubility set.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/screening_ray.py                      # fpmlp:20000 dmpnn:6000
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/screening_ray.py --runs fpmlp:20000 --no-write

Writes benchmarks/results/screening_ray.json and its table in benchmarks/README.md's screening
section. Wall-clock figures on shared cores: the load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from screening import build_library  # noqa: E402

from medassist.assistants.screening import default_train_config, parse_model  # noqa: E402
from medassist.data.catalog import get_dataset  # noqa: E402
from medassist.data.sources import DataSource  # noqa: E402
from medassist.pipeline.molecules import ScreeningSpec, train_screening  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "screening_ray.json"
README = HERE / "README.md"
BEGIN, END = "<!-- screening-ray:begin -->", "<!-- screening-ray:end -->"
RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ports() -> list[str]:
    names = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
             "--runtime-env-agent-port", "--metrics-export-port"]
    return [f"{n}={_free_port()}" for n in names]


def _start_node(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with log.open("w") as fh:
        proc = subprocess.Popen([str(RAY), "start", "--block", "--num-cpus=1", "--node-ip-address=127.0.0.1", *args],
                                stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    end = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"ray start failed:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    return proc


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def _bundle(model: str, work: Path) -> Path:
    family, desc = parse_model(model)
    out = work / f"bundle_{model.replace('+', '_')}"
    if not out.exists():
        spec = ScreeningSpec(targets=("SOL",), smiles_column="smiles", model=family, descriptors=desc, n_members=3,
                             train=default_train_config(family, epochs=5), n_boot=0)
        train_screening(get_dataset("solubility").load(), spec=spec, source=DataSource(name="solubility"), out_dir=out)
    return out


def _screen(bundle: Path, lib: Path, out: Path, extra: list[str], batch_size: int) -> dict:
    cmd = [sys.executable, "-m", "medassist", "screen", str(bundle), "--library", str(lib), "--out", str(out), "--top", "100",
           "--filters", "lipinski,pains", "--keep-duplicates", "--batch-size", str(batch_size), "--no-progress", "--json", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    return {"mol_per_s": summary["molecules_per_second"], "end_to_end_mol_per_s": round(summary["read"] / wall, 1),
            "seconds": summary["seconds"], "wall_seconds": round(wall, 1), "read": summary["read"],
            "hits_sha_equal": None, "_hits": out.read_bytes()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=["fpmlp:20000", "dmpnn:6000"], help="MODEL:LIBRARY_SIZE pairs")
    ap.add_argument("--batch-size", type=int, default=500, help="molecules per shard (enough shards to keep 2 workers busy)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--readme-only", action="store_true", help="Rewrite the README table from the results file.")
    args = ap.parse_args(argv)
    if args.readme_only:
        write_readme(json.loads(RESULTS.read_text()))
        return
    work = Path(tempfile.mkdtemp(prefix="msray", dir="/tmp"))
    load_start = os.getloadavg()
    procs: list[subprocess.Popen] = []
    rows = []
    try:
        gcs = _free_port()
        procs.append(_start_node(["--head", f"--port={gcs}", f"--ray-client-server-port={_free_port()}", "--include-dashboard=false",
                                  f"--temp-dir={work / 'ray'}", *_ports()], work / "head.log"))
        procs.append(_start_node([f"--address=127.0.0.1:{gcs}", f"--temp-dir={work / 'ray'}", *_ports()], work / "node.log"))
        address = f"127.0.0.1:{gcs}"
        for spec in args.runs:
            model, n = spec.split(":")
            bundle = _bundle(model, work)
            lib = work / f"library_{n}.smi"
            n_unique = build_library(lib, int(n))
            runs = {"local, 1 process": ["--workers", "1"], "local, 2 processes": ["--workers", "2"],
                    "Ray, 1 actor": ["--ray", address, "--workers", "1"], "Ray, 2 actors (2 nodes)": ["--ray", address, "--workers", "2"]}
            ref = None
            for name, extra in runs.items():
                r = _screen(bundle, lib, work / "hits.csv", extra, args.batch_size)
                hits = r.pop("_hits")
                ref = hits if ref is None else ref
                r["hits_sha_equal"] = hits == ref
                row = {"model": model, "ensemble_members": 3, "library_size": int(n), "unique_smiles": min(int(n), n_unique), "run": name, **r}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        _stop(procs)
        shutil.rmtree(work, ignore_errors=True)
    results = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
               "omp_num_threads": os.environ["OMP_NUM_THREADS"], "load_average_at_start": load_start,
               "load_average_at_end": os.getloadavg(), "runs": rows,
               "batch_size": args.batch_size,
               "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/screening_ray.py " + " ".join(["--runs", *args.runs])}
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        write_readme(results)


def write_readme(results: dict) -> None:
    lines = [BEGIN, "", "Screening on Ray, 1 → 2 workers (`benchmarks/screening_ray.py`): the same library through "
             "`medassist screen` locally and with `--ray` on a 2-node cluster on 127.0.0.1 (head + second node, 1 CPU each), "
             "`--keep-duplicates` so every line is scored, top 100, Lipinski + PAINS, "
             f"{results.get('batch_size', 1024)} molecules per shard. "
             f"Measured {results['date']} on {results['machine']}, OMP_NUM_THREADS={results['omp_num_threads']}; "
             f"load average {results['load_average_at_start'][0]:.1f} at the start, {results['load_average_at_end'][0]:.1f} at the end "
             "(the two cores were shared with other work, and the Ray driver, GCS and raylets run on the same two cores as the "
             "workers, so these are lower bounds on what 2 real nodes give). \"mol/s (screen)\" is the screen's own clock, which "
             "for Ray starts once the actors have loaded the bundle; \"end to end\" is the whole command, Python and Ray "
             "start-up included. \"Same hits\": the hits CSV is byte for byte the local 1-process run's.", "",
             f"```\n{results['command']}\n```", "",
             "| model (3 members) | library | run | mol/s (screen) | mol/s (end to end, incl. start-up) | same hits as local |",
             "|---|---|---|---|---|---|"]
    for r in results["runs"]:
        lines.append(f"| {r['model']} | {r['library_size']:,} SMILES ({r['unique_smiles']:,} unique) | {r['run']} | "
                     f"{r['mol_per_s']:,.0f} | {r['end_to_end_mol_per_s']:,.0f} | {'yes' if r['hits_sha_equal'] else 'NO'} |")
    lines += ["", END]
    block = "\n".join(lines)
    text = README.read_text()
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        anchor = "<!-- screening:end -->"
        at = text.index(anchor) + len(anchor) if anchor in text else len(text)
        text = text[:at] + "\n\n" + block + text[at:]
    README.write_text(text)


if __name__ == "__main__":
    main()
