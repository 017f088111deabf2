"""De-identification recall and precision on held-out notes the rules were not written from.

Two sets of short clinical notes under ``tests/unit/privacy/``, every PHI span annotated by hand
(names in any case and position, MRNs and other IDs, dates, phones, addresses, ages over 89,
e-mails, facilities):

- ``heldout``: ``deid_heldout_notes.jsonl`` (47 notes), written before the rules were revised;
  the revision then looked at its misses, so its "after" figure is optimistic;
- ``fresh``: ``deid_fresh_notes.jsonl`` (27 notes), written after the revision and never used to
  change a rule: its "after" figure is the honest one.

No annotated public corpus ships in an installed package (i2b2/n2c2 need a data use agreement),
so the sets are small: read the figures with their counts.

Token level: a token is a run of letters and digits. A PHI token is *found* when one predicted
span covers its PHI part whole (``[NAME]P1`` leaves ``P1``: a miss; ``96`` of ``96F`` is enough); recall per gold kind counts a token
found whatever kind the rules gave it (what matters for privacy). A predicted token is *right*
when it lies in a gold span of any kind; precision per predicted kind.

The peer is the same module at an earlier commit (``--baseline-rev``, loaded from ``git show``),
run side by side on the same notes, so "before" and "after" are measured by one script.

    OMP_NUM_THREADS=1 python benchmarks/deid_recall.py [--baseline-rev 9601463]

Writes benchmarks/results/deid_recall.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from medassist.privacy.deid import deidentify

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOTE_SETS = {"heldout": ROOT / "tests" / "unit" / "privacy" / "deid_heldout_notes.jsonl",
             "fresh": ROOT / "tests" / "unit" / "privacy" / "deid_fresh_notes.jsonl"}
RESULTS = HERE / "results" / "deid_recall.json"
TOKEN = re.compile(r"[A-Za-z0-9]+")
#: The commit whose rules were measured as "before" (the rules the held-out notes were written against).
BASELINE_REV = "9601463"


def load_notes(path: Path = NOTE_SETS["heldout"]) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def score(notes: list[dict], deid) -> dict:
    """Token recall per gold kind and precision per predicted kind (see the module docstring)."""
    gold_n, gold_hit, pred_n, pred_ok = Counter(), Counter(), Counter(), Counter()
    missed: list[str] = []
    for note in notes:
        text, gold = note["text"], note["phi"]
        spans = deid(text).spans
        for m in TOKEN.finditer(text):
            a, b = m.span()
            hit = next(((max(a, s), min(b, e), k) for s, e, k in gold if s < b and a < e), None)
            g = hit[2] if hit else None
            # the PHI part of the token ("96" of "96F") must be covered whole
            covered = hit is not None and any(s <= hit[0] and hit[1] <= e for s, e, _ in spans)
            p = next((k for s, e, k in spans if s < b and a < e), None)
            if g is not None:
                gold_n[g] += 1
                gold_n["all"] += 1
                if covered:
                    gold_hit[g] += 1
                    gold_hit["all"] += 1
                else:
                    missed.append(f"{note['id']}:{g}:{m.group()}")
            if p is not None:
                pred_n[p] += 1
                pred_n["all"] += 1
                if g is not None:
                    pred_ok[p] += 1
                    pred_ok["all"] += 1
    kinds = sorted(set(gold_n) | set(pred_n), key=lambda k: (k == "all", k))
    return {
        "per_kind": {k: {"gold_tokens": gold_n[k], "recall": round(gold_hit[k] / gold_n[k], 4) if gold_n[k] else None,
                         "predicted_tokens": pred_n[k], "precision": round(pred_ok[k] / pred_n[k], 4) if pred_n[k] else None}
                     for k in kinds},
        "missed_tokens": len(missed),
        "false_positive_tokens": pred_n["all"] - pred_ok["all"],
    }


def load_baseline(rev: str):
    """``deidentify`` of ``src/medassist/privacy/deid.py`` at ``rev``, or None without git."""
    try:
        source = subprocess.run(["git", "show", f"{rev}:src/medassist/privacy/deid.py"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"baseline {rev}: not available ({type(e).__name__}); measuring the current rules only", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "deid_baseline.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("deid_baseline", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return module.deidentify


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision of the rules to compare against")
    args = ap.parse_args()
    baseline = load_baseline(args.baseline_rev)
    out = {"baseline_rev": args.baseline_rev, "sets": {}, "python": platform.python_version(), "machine": platform.machine()}
    for set_name, path in NOTE_SETS.items():
        notes = load_notes(path)
        runs = {}
        for name, fn in (("before", baseline), ("after", deidentify)):
            if fn is None:
                continue
            t0 = time.perf_counter()
            runs[name] = score(notes, fn)
            runs[name]["ms_per_note"] = round((time.perf_counter() - t0) * 1000 / len(notes), 2)
        out["sets"][set_name] = {"notes": len(notes), "file": str(path.relative_to(ROOT)),
                                 "gold_spans": dict(Counter(k for n in notes for *_, k in n["phi"])), "runs": runs}
        for name, run in runs.items():
            print(f"\n{set_name} {name}: {len(notes)} notes, missed {run['missed_tokens']} PHI tokens, "
                  f"{run['false_positive_tokens']} false-positive tokens")
            print(f"{'kind':10} {'gold':>5} {'recall':>7} {'pred':>5} {'precision':>9}")
            for kind, r in run["per_kind"].items():
                rec = "-" if r["recall"] is None else f"{r['recall']:.3f}"
                pre = "-" if r["precision"] is None else f"{r['precision']:.3f}"
                print(f"{kind:10} {r['gold_tokens']:>5} {rec:>7} {r['predicted_tokens']:>5} {pre:>9}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(RESULTS)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
