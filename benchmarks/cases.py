"""Cases benchmark: the five measurements of issue 6 in one place.

It runs three parts, each its own script so each can be re-run alone:

1. survival C-index / integrated Brier score of the shipped survival model against its peers:
   ``benchmarks/prognosis.py`` (its table; ``cases_survival.py`` part 1 is the older, smaller
   comparison), and (2) similar-case query latency at 10k and 100k cases: ``benchmarks/cases_survival.py``
3. import rows/s (CDISC SDTM, a FHIR bundle, a survival CSV; SQLite and PostgreSQL when
   MEDASSIST_TEST_POSTGRES_URL is set): ``benchmarks/cases_import.py``
4. de-identification recall/precision on notes with planted identifiers, and (5) ICD-10-CM
   suggestion accuracy on labelled notes: ``benchmarks/cases_notes.py``

then merges their results into ``benchmarks/results/cases.json`` and writes the table between the
``cases`` markers in ``benchmarks/README.md``.

    OMP_NUM_THREADS=2 python benchmarks/cases.py              # run all parts, then merge
    python benchmarks/cases.py --merge-only                   # merge the parts' last results
    python benchmarks/cases.py --parts survival notes -- ...  # run some parts only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
PARTS = {"survival": "cases_survival", "import": "cases_import", "notes": "cases_notes"}
START, END = "<!-- cases:start -->", "<!-- cases:end -->"


def run_part(name: str) -> None:
    script = HERE / f"{PARTS[name]}.py"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    print(f"== {script.name}", flush=True)
    subprocess.run([sys.executable, str(script)], check=True, env=env)


def load(stem: str) -> dict | None:
    path = RESULTS / f"{stem}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _f(x: float | None, nd: int = 3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def survival_rows(s: dict) -> list[str]:
    out = ["| data set | n (events) | medassist C | CoxPH C | RSF C | IBS medassist / CoxPH / RSF | goal (C ≥ better peer) |",
           "|---|---|---|---|---|---|---|"]
    for name, d in s["datasets"].items():
        m = d["models"]
        c = {key: f"{m[key]['c_index_mean']:.3f} ± {m[key]['c_index_sd']:.3f}" for key in ("medassist", "coxph", "rsf")}
        ibs = " / ".join(_f(m[k]["ibs_mean"]) for k in ("medassist", "coxph", "rsf"))
        margin = d["margin_to_best_peer"]
        goal = f"met (+{margin:.3f})" if d["goal_met"] else f"missed ({margin:+.3f})"
        out.append(f"| {name} | {d['n']} ({d['events']}) | {c['medassist']} | {c['coxph']} | {c['rsf']} | {ibs} | {goal} |")
    return out


def latency_rows(lat: dict) -> list[str]:
    out = ["| stored cases | p50 ms | p99 ms | index build s |", "|---|---|---|---|"]
    for n, d in lat["by_size"].items():
        out.append(f"| {int(n):,} | {d['p50_ms']:.1f} | {d['p99_ms']:.1f} | {d['index_build_s']:.2f} |")
    return out


def import_rows(imp: dict) -> list[str]:
    backends = list(imp["backends"])
    out = ["| source | rows | " + " | ".join(f"{b} rows/s (end to end)" for b in backends) + " |",
           "|---|---|" + "---|" * len(backends)]
    for src in imp["backends"][backends[0]]:
        cells = []
        for b in backends:
            d = imp["backends"][b].get(src)
            cells.append("–" if d is None else f"{d['import_rows_per_s']:,} ({d['end_to_end_rows_per_s']:,})")
        out.append(f"| {src} | {imp['backends'][backends[0]][src]['rows']:,} | " + " | ".join(cells) + " |")
    return out


def notes_rows(notes: dict) -> list[str]:
    deid = notes["deid"]
    out = [f"De-identification, {deid['notes']} generated notes with {deid['medassist']['planted_spans']:,} planted identifiers:",
           "", "| | token recall | token precision | span recall | ms/note |", "|---|---|---|---|---|"]
    for key, label in (("medassist", "medassist"), ("naive_regex_baseline", "regex baseline (peer)")):
        d = deid[key]
        out.append(f"| {label} | {d['token_recall']:.3f} | {d['token_precision']:.3f} | {d['span_recall']:.3f} | {d['ms_per_note']:.1f} |")
    out += ["", "The note templates and the rules were written by the same team, so this recall is optimistic: "
            "expect lower on real notes (names with no cue at all, cities without a state are missed). "
            "scrubadub and Presidio are not installable offline here, so the peer is a plain regex baseline."]
    icd = notes["icd10"]
    out += ["", "ICD-10-CM suggestions, scored at the 3-character category:", "",
            "| labelled notes | scored | top-1 | top-5 |", "|---|---|---|---|"]
    for key, label in (("drug_reviews", "drug reviews (drugsCom, condition labels)"), ("iu_cxr", "IU chest X-ray reports (MeSH labels)")):
        d = icd.get(key)
        if d:
            out.append(f"| {label} | {d['scored']:,} | {d['top1']:.3f} | {d['top5']:.3f} |")
    cxr = icd.get("iu_cxr")
    if cxr:
        out.append("")
        out.append(f"Negation matters: on the X-ray reports {cxr['precision_negation_aware']:.3f} of affirmed suggestions are labelled findings, "
                   f"against {cxr['precision_negation_blind']:.3f} if negated mentions were suggested too.")
    out.append("Patient drug reviews rarely name the diagnosis (\"birth control\", \"weight loss\"): there we lose badly.")
    return out


def merge() -> dict:
    parts = {name: load(stem) for name, stem in PARTS.items()}
    merged = {"parts": {PARTS[k]: v for k, v in parts.items() if v is not None}}
    RESULTS.mkdir(exist_ok=True)
    tmp = RESULTS / "cases.json.tmp"
    tmp.write_text(json.dumps(merged, indent=2) + "\n")
    tmp.replace(RESULTS / "cases.json")

    lines = [START, "## Cases (issue 6)", "",
             "`OMP_NUM_THREADS=2 python benchmarks/cases.py` runs the three parts below and merges them "
             "into `results/cases.json`; each part's own command is in its results file.", ""]
    surv = parts["survival"]
    prognosis = load("prognosis")
    if prognosis:  # benchmarks/prognosis.py: the shipped survival model against every peer, every bundled set
        from prognosis import table_lines

        lines += ["**(1) Survival** (`benchmarks/prognosis.py`, which replaces part (1) of `cases_survival.py`): the model "
                  "`medassist train --task survival` ships, against its peers in the same run, on the same splits and features:", ""]
        lines += table_lines(prognosis) + [""]
    elif surv:
        lines += ["**(1) Survival**, held-out C-index (Harrell) and integrated Brier score, mean ± sd over "
                  f"{surv['survival']['seeds']} seeds, same splits and features for every model:", ""]
        lines += survival_rows(surv["survival"]) + [""]
    if surv:
        lines += ["**(2) Similar-case queries** (k = 10, exact k-NN over a learned 32-d embedding, with reasons):", ""]
        lines += latency_rows(surv["similar_latency"]) + [""]
    imp = parts["import"]
    if imp:
        lines += ["**(3) Import** (import-only rows/s; in brackets end to end including reading the source):", ""]
        lines += import_rows(imp) + [""]
    notes = parts["notes"]
    if notes:
        lines += ["**(4–5) Notes**", ""] + notes_rows(notes) + [""]
    lines.append(END)
    block = "\n".join(lines)
    text = README.read_text()
    if START in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    README.write_text(text)
    return merged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=sorted(PARTS))
    ap.add_argument("--merge-only", action="store_true", help="Do not run anything; merge the parts' last results.")
    args = ap.parse_args()
    if not args.merge_only:
        for name in args.parts:
            run_part(name)
    merge()
    print(f"wrote {RESULTS / 'cases.json'} and the cases section of {README}")


if __name__ == "__main__":
    main()
