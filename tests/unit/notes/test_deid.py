"""De-identification: every identifier kind is replaced, clinical content and ages <= 89 are kept."""

import pytest

from medassist.exceptions import DataError
from medassist.privacy.deid import Deidentified, deidentify

NOTE = """Patient: John Smith   MRN: 48213377   DOB: 03/14/1931
Seen by Dr. Ann Lee on March 12, 2019 at Mercy General Hospital.
Mr. Smith is a 92-year-old man with T2DM on metformin 500 mg twice daily, HbA1c 7.2%, BP 120/80.
He lives in Springfield with his wife Mary. Address: 123 Oak Street, Springfield, IL 62704.
Phone (217) 555-0134, fax 217.555.0199, email jsmith@example.com, portal https://portal.mercy.org/pt/1.
SSN 123-45-6789. Account # 99812345. Follow up in 2 weeks. ICD E11.22. Age: 95.
Smith agrees with the plan.
-- Ann Lee, MD"""

PHI = ["John", "Smith", "48213377", "03/14/1931", "Ann Lee", "March 12, 2019", "Mercy General Hospital", "92-year",
       "Springfield", "Mary", "123 Oak Street", "62704", "(217) 555-0134", "217.555.0199", "jsmith@example.com",
       "portal.mercy.org", "123-45-6789", "99812345", "Age: 95"]
CLINICAL = ["metformin 500 mg twice daily", "HbA1c 7.2%", "BP 120/80", "Follow up in 2 weeks", "ICD E11.22", "T2DM"]


@pytest.fixture(scope="module")
def result() -> Deidentified:
    return deidentify(NOTE)


@pytest.mark.parametrize("phi", PHI)
def test_identifier_is_removed(result, phi):
    assert phi not in result.text


@pytest.mark.parametrize("kept", CLINICAL)
def test_clinical_content_is_kept(result, kept):
    assert kept in result.text


def test_each_kind_has_its_placeholder(result):
    for kind in ("NAME", "DATE", "PHONE", "ADDRESS", "ID", "AGE>89", "EMAIL", "URL", "FACILITY"):
        assert f"[{kind}]" in result.text, kind
    assert result.counts["PHONE"] == 2
    assert "Dr. [NAME]" in result.text and "[AGE>89]-year-old" in result.text


def test_spans_point_into_the_original_and_do_not_overlap(result):
    last = 0
    for start, end, kind in result.spans:
        assert last <= start < end <= len(NOTE)
        assert kind in {"NAME", "DATE", "PHONE", "ADDRESS", "ID", "AGE>89", "EMAIL", "URL", "FACILITY", "IP"}
        last = end
    assert any(NOTE[s:e] == "jsmith@example.com" and k == "EMAIL" for s, e, k in result.spans)


@pytest.mark.parametrize("date", ["12/03/2019", "2019-03-12", "March 12, 2019", "12 Mar 2019", "3rd of March", "Mar 3rd",
                                  "12-Mar-2019", "03/2019", "on 3/12"])
def test_date_formats(date):
    out = deidentify(f"Admitted {date} for chest pain.").text
    assert "[DATE]" in out and "chest pain" in out
    assert date.split()[-1] not in out or date.startswith("on")


@pytest.mark.parametrize("text, replaced", [
    ("A 92-year-old woman.", True), ("aged 95, frail", True), ("age: 91", True), ("91 yo male", True),
    ("A 89-year-old woman.", False), ("aged 45", False), ("age: 67", False), ("67 yo male", False),
])
def test_only_ages_over_89_are_replaced(text, replaced):
    assert ("[AGE>89]" in deidentify(text).text) is replaced


@pytest.mark.parametrize("text", [
    "Lisinopril 10 mg daily, Na 140, K 4.1, Cr 1.2 mg/dL, WBC 12.3.", "Take 1/2 tablet for 2 weeks, then 5 mg.",
    "May consider MRI in 3 months.", "Codes I21.4 and E11.22; type 2 DM since 2015.", "Seen in Cardiology clinic.",
    "Patient denies fever. No evidence of pneumonia.",
])
def test_clinical_text_without_identifiers_is_unchanged(text):
    assert deidentify(text).text == text


def test_known_names_and_recurring_names():
    out = deidentify("Kowalczyk reports less pain; KOWALCZYK, Zofia.", known_names=["Zofia Kowalczyk"]).text
    assert "Kowalczyk" not in out and "KOWALCZYK" not in out and "Zofia" not in out
    out = deidentify("Mrs. Ines Okafor came in. Later Okafor asked about her knee.").text
    assert "Okafor" not in out and "knee" in out


def test_name_cues():
    for text, name in [("Electronically signed by: Priya Raman, MD", "Priya"), ("Spoke with daughter Elena about discharge.", "Elena"),
                       ("Referred by Tomas Berg for dyspnea.", "Berg"), ("Gerald Finch is a 71 year old man.", "Finch")]:
        assert name not in deidentify(text).text, text


def test_bad_input():
    with pytest.raises(DataError, match="str"):
        deidentify(b"bytes")  # type: ignore[arg-type]


def test_a_name_opening_the_note_before_an_identifier_cue_is_removed():
    out = deidentify("John Smith, MRN 4455667, presented with chest pain. Heart Failure (ID clinic follow-up).")
    assert "John" not in out.text and "Smith" not in out.text
    assert "Heart Failure (ID clinic follow-up)" in out.text  # clinical words before a cue-like token stay
