"""Peak memory of ``medassist cases import`` on a large FHIR bulk-data export (NDJSON).

Generates a synthetic export (``synthetic_cases`` → ``write_fhir_ndjson``: Patient, Encounter,
Condition, MedicationRequest, Observation, DocumentReference files, ~6.4 kB per patient) of the
size asked for, then runs ``medassist cases import EXPORT_DIR --json --no-progress`` in a separate
process against a fresh SQLite store and takes that process's peak resident memory from the
kernel (``ru_maxrss`` of that one child, via ``wait4``; ``/proc/PID/status`` VmHWM sampled too). The goal: a 1 GB export under 1.5 GB RSS.
A second import of the same export (idempotency: nothing added) is measured too.

    OMP_NUM_THREADS=1 python benchmarks/fhir_import_memory.py [--size-mb 1024] [--keep DIR]

Writes benchmarks/results/fhir_import_memory.json (one entry per size, merged) and its table in
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "fhir_import_memory.json"
README = HERE / "README.md"
BEGIN, END = "<!-- fhir_import_memory:begin -->", "<!-- fhir_import_memory:end -->"
GOAL_MB_PER_GB = 1536


def generate(folder: Path, size_mb: float) -> dict:
    """Write batches of synthetic cases until the export reaches ``size_mb``."""
    from medassist.data.io.fhir import write_fhir_ndjson
    from medassist.data.synthetic import synthetic_cases

    target, per_case = size_mb * 2**20, 6_400
    n = max(1, int(target / per_case))

    def cases():
        batch = 5_000
        for start in range(0, n, batch):
            yield from synthetic_cases(n_patients=min(batch, n - start), seed=start, start=start)

    t0 = time.perf_counter()
    counts = write_fhir_ndjson(cases(), folder)
    size = sum(f.stat().st_size for f in folder.glob("*.ndjson"))
    return {"patients": n, "resources": sum(counts.values()), "bytes": size, "generate_s": round(time.perf_counter() - t0, 1)}


def _hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run_import(folder: Path, home: Path) -> dict:
    """``medassist cases import`` in a child process; peak RSS: its ru_maxrss from wait4 (and VmHWM samples)."""
    env = {**os.environ, "MEDASSIST_HOME": str(home), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "medassist", "cases", "import", str(folder), "--json", "--no-progress"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, ru = 0, None
    while True:  # wait4: this child's own rusage (ru_maxrss, KiB on Linux), not every child's
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, _hwm_kib(proc.pid) or 0)
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.stdout.read(), proc.stderr.read()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"import failed ({proc.returncode}): {err.strip()[-2000:]}")
    peak = max(peak, ru.ru_maxrss)
    summary = json.loads(out)
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak / 1024, 1), "cases_added": summary["cases_added"],
            "rows_added": summary["rows_added"], "already_imported": summary["already_imported"]}


def write_readme(results: dict) -> None:
    rows = ["| export (NDJSON) | patients | resources | import s | peak RSS | re-import s | re-import peak RSS | goal (≤ 1.5 GB per GB) |",
            "|---|---|---|---|---|---|---|---|"]
    for key in sorted(results["runs"], key=lambda k: results["runs"][k]["input"]["bytes"]):
        r = results["runs"][key]
        gb = r["input"]["bytes"] / 2**30
        met = ("met" if r["import"]["peak_rss_mb"] <= GOAL_MB_PER_GB * gb else "missed") if gb >= 0.99 else "— (set for 1 GB)"
        rows.append(f"| {r['input']['bytes'] / 2**20:,.0f} MB | {r['input']['patients']:,} | {r['input']['resources']:,} | "
                    f"{r['import']['seconds']:.0f} | {r['import']['peak_rss_mb']:,.0f} MB | {r['reimport']['seconds']:.0f} | "
                    f"{r['reimport']['peak_rss_mb']:,.0f} MB | {met} |")
    body = "\n".join([
        BEGIN,
        f"Measured {results['date']} on {results['machine']}: `medassist cases import EXPORT_DIR` in its own process, "
        "fresh SQLite store, peak RSS = that process's ru_maxrss (from wait4). 2 shared cores: other test runs "
        "competed for them, so the seconds are loose. Streaming reader: an index pass into a "
        "temporary SQLite spool, then one case at a time into one import transaction.",
        "",
        *rows,
        END,
    ])
    text = README.read_text()
    section = ("## FHIR import memory (`benchmarks/fhir_import_memory.py`)\n\n```bash\n"
               "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fhir_import_memory.py --size-mb 1024\n```\n\n" + body + "\n")
    if BEGIN in text:
        start, end = text.index(BEGIN), text.index(END) + len(END)
        text = text[:start] + body + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = README.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(README)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=1024.0, help="Size of the generated export in MiB (default 1024).")
    ap.add_argument("--keep", type=Path, default=None, help="Generate into (or reuse) this folder instead of a temporary one.")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fhir-bench-") as d:
        tmp = Path(d)
        folder = args.keep or tmp / "export"
        if args.keep and any(folder.glob("*.ndjson")):
            info = {"patients": sum(1 for _ in (folder / "Patient.ndjson").open()),
                    "resources": sum(sum(1 for _ in f.open()) for f in folder.glob("*.ndjson")),
                    "bytes": sum(f.stat().st_size for f in folder.glob("*.ndjson")), "generate_s": None}
        else:
            info = generate(folder, args.size_mb)
        print(f"export: {info['bytes'] / 2**20:,.0f} MiB, {info['patients']:,} patients, {info['resources']:,} resources", flush=True)
        home = tmp / "home"
        first = run_import(folder, home)
        print(f"import: {first['seconds']} s, peak RSS {first['peak_rss_mb']:,} MB, {first['rows_added']:,} rows", flush=True)
        again = run_import(folder, home)
        print(f"re-import: {again['seconds']} s, peak RSS {again['peak_rss_mb']:,} MB, already imported: "
              f"{again['already_imported']}", flush=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    results.update({"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                    f"Python {platform.python_version()}", "goal": "1 GB export under 1.5 GB peak RSS"})
    results["runs"][f"{round(info['bytes'] / 2**20)}MB"] = {
        "command": " ".join(["python", "benchmarks/fhir_import_memory.py", *(argv if argv is not None else sys.argv[1:])]),
        "input": info, "import": first, "reimport": again}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = RESULTS.with_suffix(".json.tmp")
    tmp_path.write_text(json.dumps(results, indent=1))
    tmp_path.replace(RESULTS)
    write_readme(results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
