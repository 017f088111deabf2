"""ConText/NegEx-style context: negation, history, family and uncertainty scopes."""

import pytest

from medassist.featurizers.clinical_text import analyze, split_sections, split_sentences, tokenize


def ctx(text: str, target: str):
    i = text.index(target)
    return analyze(text).context(i, i + len(target))


@pytest.mark.parametrize("text, target, flags", [
    ("No evidence of pneumonia.", "pneumonia", ["negated"]),
    ("Patient denies fever, chills, or cough.", "cough", ["negated"]),
    ("Negative for DVT.", "DVT", ["negated"]),
    ("Pneumonia was ruled out.", "Pneumonia", ["negated"]),
    ("Cough without hemoptysis.", "hemoptysis", ["negated"]),
    ("No fever but productive cough.", "cough", []),
    ("No pleural effusion; mild cardiomegaly.", "cardiomegaly", []),
    ("History of MI.", "MI", ["historical"]),
    ("Patient is s/p CABG.", "CABG", ["historical"]),
    ("h/o DVT, now with pneumonia.", "pneumonia", []),
    ("Mother had breast cancer.", "breast cancer", ["family"]),
    ("Family history of colon cancer.", "colon cancer", ["family"]),
    ("Rule out pulmonary embolism.", "pulmonary embolism", ["uncertain"]),
    ("Possible pneumonia.", "pneumonia", ["uncertain"]),
    ("?pneumonia on film.", "pneumonia", ["uncertain"]),
    ("Return if chest pain recurs.", "chest pain", ["hypothetical"]),
    ("No increase in edema.", "edema", []),
    ("Gram negative rods in urine.", "rods", []),
    ("No history of diabetes.", "diabetes", ["negated"]),
    ("67 year old woman with pneumonia.", "pneumonia", []),
])
def test_context_flags(text, target, flags):
    assert ctx(text, target).flags() == flags


def test_scope_ends_at_sentence():
    c = ctx("Denies chest pain. Has pneumonia.", "pneumonia")
    assert c.affirmed


def test_family_history_section():
    text = "FAMILY HISTORY:\nDiabetes in several relatives.\nASSESSMENT:\nType 2 diabetes."
    assert ctx(text, "Diabetes").family
    assert ctx(text, "Type 2 diabetes").affirmed
    assert [s.name for s in split_sections(text)] == ["family_history", "assessment"]


def test_sentences_and_tokens():
    text = "Seen by Dr. Lee today. BP 120/80, HbA1c 7.2%. s/p CABG!\n\nPlan: follow up."
    sents = [text[s.start:s.end] for s in split_sentences(text)]
    assert sents[0] == "Seen by Dr. Lee today." and sents[1] == "BP 120/80, HbA1c 7.2%." and len(sents) >= 3
    toks = [t.text for t in tokenize("s/p CABG, HbA1c 7.2%")]
    assert toks == ["s/p", "CABG", ",", "HbA1c", "7.2", "%"]
