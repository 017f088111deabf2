"""De-identification on annotated notes the rules were not written from (token-level recall and
precision; benchmarks/deid_recall.py reports the same figures per kind, before and after).

``deid_heldout_notes.jsonl`` was written before the rules were last revised (the revision looked
at its misses); ``deid_fresh_notes.jsonl`` after, and no rule was changed for it. The floors sit a
little under what the current rules measure, so a regression fails and noise does not."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medassist.privacy.deid import deidentify

HERE = Path(__file__).parent
TOKEN = re.compile(r"[A-Za-z0-9]+")


def _scores(path: Path, kind: str | None = None) -> tuple[float, float]:
    """(recall of the PHI tokens [of one gold kind], precision of all redacted tokens)."""
    gold_n = gold_hit = pred_n = pred_ok = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        note = json.loads(line)
        text, gold, spans = note["text"], note["phi"], deidentify(note["text"]).spans
        for m in TOKEN.finditer(text):
            a, b = m.span()
            hit = next(((max(a, s), min(b, e), k) for s, e, k in gold if s < b and a < e), None)
            if hit and (kind is None or hit[2] == kind):
                gold_n += 1
                gold_hit += any(s <= hit[0] and hit[1] <= e for s, e, _ in spans)
            if any(s < b and a < e for s, e, _ in spans):
                pred_n += 1
                pred_ok += hit is not None
    return gold_hit / gold_n, pred_ok / pred_n


@pytest.mark.parametrize(("name", "kind", "recall_floor", "precision_floor"), [
    ("deid_heldout_notes.jsonl", None, 0.97, 0.97),   # measured 1.000 / 1.000 (optimistic: see the docstring)
    ("deid_heldout_notes.jsonl", "NAME", 0.95, 0.97),  # 1.000 (was 0.516)
    ("deid_fresh_notes.jsonl", None, 0.82, 0.95),     # measured 0.846 / 1.000 (was 0.747 / 0.986)
    ("deid_fresh_notes.jsonl", "NAME", 0.65, 0.95),   # 0.683 (was 0.463)
])
def test_recall_and_precision_on_unseen_notes(name, kind, recall_floor, precision_floor):
    recall, precision = _scores(HERE / name, kind)
    assert recall >= recall_floor, f"{name} {kind or 'all'}: recall {recall:.3f} < {recall_floor}"
    assert precision >= precision_floor, f"{name}: precision {precision:.3f} < {precision_floor}"


def test_the_annotations_point_at_text():
    for name in ("deid_heldout_notes.jsonl", "deid_fresh_notes.jsonl"):
        notes = [json.loads(line) for line in (HERE / name).read_text(encoding="utf-8").splitlines()]
        assert len(notes) >= 25
        for note in notes:
            for s, e, _ in note["phi"]:
                assert note["text"][s:e].strip() == note["text"][s:e] != "", (name, note["id"])


@pytest.mark.parametrize(("text", "expected"), [
    ("pt jane doe seen in clinic today for f/u of HTN.", "pt [NAME] seen in clinic today for f/u of HTN."),
    ("ZebulonP1 QuagmiresonP is a 67 y/o M with COPD.", "[NAME] is a 67 y/o M with COPD."),
    ("Pt ZebulonP1 QuagmiresonP reports dyspnea; ZebulonP1 agrees.", "Pt [NAME] reports dyspnea; [NAME] agrees."),
    ("Discussed with dr patel from nephrology.", "Discussed with dr [NAME] from nephrology."),
    ("Spoke with tomas reyes (patient) by phone.", "Spoke with [NAME] (patient) by phone."),
    ("Okonkwo, Chidi — 72M — post-op day 2.", "[NAME] — 72M — post-op day 2."),
    ("Fatima Al-Rashid and her mother Noor came in. Fatima has asthma.", "[NAME] and her mother [NAME] came in. [NAME] has asthma."),
    ("Referred by Dr. Lee and Ruiz for AFib.", "Referred by Dr. [NAME] and [NAME] for AFib."),
    ("Pharmacy called re: mrs gallagher's apixaban dose.", "Pharmacy called re: mrs [NAME]'s apixaban dose."),
])
def test_names_in_lower_case_with_suffixes_and_beside_names(text, expected):
    assert deidentify(text).text == expected


@pytest.mark.parametrize("text", [
    "pt feels well today, no complaints.", "patient tolerated procedure well.", "pt ambulating in hallway with walker.",
    "echo: mild mr and trace tr, ef 55%.", "hx of ms, on ocrelizumab, last flare in 2019.", "pt education provided regarding insulin.",
    "pt and family agree with plan.", "spoke with pharmacy about dosing.", "discussed with family at bedside.",
    "pt is a poor historian.", "dr aware of results.", "pt states pain is better controlled.", "pt unable to void, straight cath performed.",
    "Patient ID verified with two identifiers.", "Mild MR and TR on echo.", "seen by cardiology fellow overnight.",
])
def test_lower_case_clinical_text_is_kept(text):
    assert deidentify(text).text == text
