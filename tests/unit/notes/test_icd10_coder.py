"""ICD-10-CM suggestions over simple_icd_10_cm: specificity, abbreviations, negation, history, family."""

import pytest

from medassist.assistants.coding import deidentify_note, suggest_codes
from medassist.exceptions import ConfigError
from medassist.models.icd10 import ICD10Coder, get_index


@pytest.fixture(scope="module")
def coder():
    return ICD10Coder(index=get_index())


def by_code(suggestions):
    return {s.code: s for s in suggestions}


def test_combination_code_is_top(coder):
    s = coder.suggest("Type 2 diabetes mellitus with diabetic chronic kidney disease.")
    assert s[0].code == "E11.22" and s[0].status == "suggested" and s[0].billable
    assert "E11.9" not in by_code(s) and "E11" not in by_code(s)  # the less specific code of the same category is pruned


def test_negated_mention_is_not_suggested(coder):
    s = coder.suggest("No evidence of pneumonia.")
    assert not [x for x in s if x.status == "suggested"]
    assert by_code(s)["J18.9"].status == "excluded" and "negated" in by_code(s)["J18.9"].flags
    assert not suggest_codes("No evidence of pneumonia.", include=("suggested",))


def test_history_is_flagged_and_mapped(coder):
    s = by_code(coder.suggest("History of MI."))
    assert s["I25.2"].status == "suggested" and "historical" in s["I25.2"].flags
    s = by_code(coder.suggest("Past history of pulmonary embolism."))
    assert any(c.startswith("Z86") for c in s), s


def test_family_maps_to_family_history_codes(coder):
    s = by_code(coder.suggest("Mother had breast cancer."))
    assert "Z80.3" in s and s["Z80.3"].source_code.startswith("C50") and "family" in s["Z80.3"].flags


@pytest.mark.parametrize("text, code", [
    ("CHF exacerbation.", "I50.9"), ("COPD.", "J44.9"), ("T2DM, well controlled.", "E11.9"), ("HTN.", "I10"),
    ("AFib on apixaban.", "I48.91"), ("CKD stage 3.", "N18.30"), ("UTI.", "N39.0"), ("Acute MI.", "I21.9"),
    ("Community acquired pneumonia.", "J18.9"), ("Left leg DVT.", "I82.409"),
])
def test_abbreviations(coder, text, code):
    s = [x for x in coder.suggest(text) if x.status == "suggested"]
    assert s and s[0].code == code, [(x.code, x.score) for x in s]


def test_uncertain_is_flagged_and_evidence_points_at_text(coder):
    text = "Rule out PE. Chest pain."
    s = by_code(coder.suggest(text))
    assert s["I26.99"].status == "flagged"
    ev = s["R07.9"].evidence[0]
    assert text[ev.start:ev.end] == ev.text == "Chest pain"


def test_abbreviations_are_not_combined_in_part(coder):
    codes = by_code(coder.suggest("CHF, CKD."))
    assert "N19" not in codes and "I51.9" not in codes  # "failure" of CHF + "kidney" of CKD is no kidney failure


def test_suggest_codes_deidentifies_first():
    text = "Patient: John Smith, 92-year-old, phone 555-123-4567. Type 2 diabetes mellitus with diabetic chronic kidney disease."
    s = suggest_codes(text, top=3)
    assert s[0].code == "E11.22"
    assert all("Smith" not in e.text for x in s for e in x.evidence)
    assert "[NAME]" in deidentify_note(text).text
    with pytest.raises(ConfigError, match="top"):
        suggest_codes(text, top=0)
