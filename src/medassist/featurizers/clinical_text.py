"""Clinical text: sections, sentences, tokens, and ConText/NegEx-style context of a mention.

``analyze(text)`` parses a note once; ``doc.context(start, end)`` then says whether the mention
at those offsets is negated ("no evidence of", "denies", "negative for", "ruled out",
"without"), historical ("history of", "h/o", "status post"), about a relative ("mother had",
"family history of", or inside a Family History section), hypothetical ("if", "return if",
"should she develop") or uncertain ("rule out", "possible", "suspected", "?")::

    >>> doc = analyze("No evidence of pneumonia, but a small effusion. History of MI.")
    >>> doc.context(15, 24).negated, doc.context(35, 44).negated, doc.context(58, 60).historical
    (True, False, True)

A trigger's scope runs forward (or, for "was ruled out", "unlikely", backward) to the end of
the sentence, stopping at a terminator: "but", "however", "although", "except", "which",
";" or ":", another sentence, or at most ``MAX_SCOPE_WORDS`` words. Commas do not end a scope,
so "denies fever, chills or cough" negates all three. Pseudo-triggers ("no increase", "not
only", "gram negative", "without difficulty") are not triggers. After Chapman et al., NegEx
(2001) and Harkema et al., ConText (2009); the trigger lists are shorter than theirs.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

__all__ = [
    "ClinicalDocument", "Context", "Section", "Sentence", "Token", "analyze", "split_sections", "split_sentences", "tokenize",
]

MAX_SCOPE_WORDS = 12


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Section:
    """A section of a note: ``name`` is canonical (``family_history``, ``past_medical_history``,
    ...; ``""`` before the first header); ``start``/``end`` are offsets of its body."""

    name: str
    header: str
    start: int
    end: int


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int
    section: str


@dataclass(frozen=True)
class Context:
    """The context of one mention; ``triggers`` names the phrases that set the flags."""

    negated: bool = False
    historical: bool = False
    family: bool = False
    hypothetical: bool = False
    uncertain: bool = False
    triggers: tuple[str, ...] = ()

    @property
    def affirmed(self) -> bool:
        """Present, about the patient, now, and stated as fact."""
        return not (self.negated or self.historical or self.family or self.hypothetical or self.uncertain)

    def flags(self) -> list[str]:
        return [n for n in ("negated", "historical", "family", "hypothetical", "uncertain") if getattr(self, n)]


_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?(?:[-/.][A-Za-z0-9]+)*|[^\sA-Za-z0-9]")


def tokenize(text: str) -> list[Token]:
    """Words (with inner hyphens, slashes and decimal points: "s/p", "7.2", "T-cell") and single
    punctuation marks, with their offsets."""
    return [Token(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


# --- sections -----------------------------------------------------------------------------------
_SECTION_NAMES: dict[str, str] = {
    "family history": "family_history", "fhx": "family_history", "fh": "family_history", "family hx": "family_history",
    "past medical history": "past_medical_history", "pmh": "past_medical_history", "pmhx": "past_medical_history",
    "medical history": "past_medical_history", "past history": "past_medical_history",
    "past surgical history": "past_surgical_history", "psh": "past_surgical_history", "surgical history": "past_surgical_history",
    "social history": "social_history", "shx": "social_history", "sh": "social_history",
    "history of present illness": "hpi", "hpi": "hpi", "chief complaint": "chief_complaint", "cc": "chief_complaint",
    "reason for visit": "chief_complaint", "review of systems": "ros", "ros": "ros",
    "physical exam": "exam", "physical examination": "exam", "exam": "exam", "examination": "exam",
    "medications": "medications", "meds": "medications", "current medications": "medications", "allergies": "allergies",
    "assessment": "assessment", "impression": "assessment", "assessment and plan": "assessment", "a/p": "assessment",
    "diagnosis": "assessment", "diagnoses": "assessment", "discharge diagnosis": "assessment", "discharge diagnoses": "assessment",
    "problem list": "assessment", "plan": "plan", "findings": "findings", "labs": "labs", "results": "labs",
}
_HEADER = re.compile(
    r"(?im)^[ \t]*(?P<h>" + "|".join(sorted((re.escape(k) for k in _SECTION_NAMES), key=len, reverse=True)) + r")[ \t]*(?::|$)"
)


def split_sections(text: str) -> list[Section]:
    """Sections by their headers ("Family History:", "PMH:", "ASSESSMENT AND PLAN" on its own line)."""
    heads = list(_HEADER.finditer(text))
    out: list[Section] = []
    first = heads[0].start() if heads else len(text)
    if first > 0:
        out.append(Section("", "", 0, first))
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        out.append(Section(_SECTION_NAMES[m.group("h").lower()], m.group("h"), m.end(), end))
    return out


# --- sentences ----------------------------------------------------------------------------------
_ABBREV = frozenset("dr mr mrs ms prof sr jr st vs e.g i.e etc approx no fig dept inc pt pts hx dx tx rx sx".split())
_BOUNDARY = re.compile(r"[.!?]+(?=\s)|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)]\s))|;(?=\s*\n)|\n(?=[A-Z][A-Za-z /]{1,40}:)")


def split_sentences(text: str, sections: list[Section] | None = None) -> list[Sentence]:
    """Sentences: ``.``/``!``/``?`` before whitespace (not after "Dr", "e.g", a decimal), blank
    lines, bullets, and section headers; each sentence knows its section."""
    sections = split_sections(text) if sections is None else sections
    out: list[Sentence] = []
    for sec in sections:
        start = sec.start
        cuts = []
        for m in _BOUNDARY.finditer(text, sec.start, sec.end):
            if m.group().startswith("."):
                before = re.search(r"([A-Za-z.]+)$", text[max(sec.start, m.start() - 6):m.start()])
                if before and before.group(1).lower().rstrip(".") in _ABBREV:
                    continue
            cuts.append(m.end())
        for cut in [*cuts, sec.end]:
            seg = text[start:cut]
            if seg.strip():
                lead = len(seg) - len(seg.lstrip())
                out.append(Sentence(start + lead, start + len(seg.rstrip()), sec.name))
            start = cut
    return out


# --- triggers -----------------------------------------------------------------------------------
# (flag, direction, phrases): direction "f" = scope after the trigger, "b" = before it.
_TRIGGERS: list[tuple[str, str, tuple[str, ...]]] = [
    ("negated", "f", (
        "no", "not", "denies", "denied", "deny", "denying", "without", "w/o", "negative for", "neg for", "no evidence of",
        "no signs of", "no sign of", "no symptoms of", "no history of", "no hx of", "no h/o", "no family history of",
        "no complaints of", "free of", "absence of", "absent", "ruled out", "rules out", "r/o'd", "never had",
        "not have", "does not have", "did not have", "no new", "no acute", "no focal", "no suspicious", "no definite",
        "rather than", "no evidence for", "not consistent with", "not suggestive of", "not seen", "fails to reveal",
        "negative", "nor", "never",
    )),
    ("negated", "b", (
        "was ruled out", "is ruled out", "has been ruled out", "ruled out", "was excluded", "is excluded", "unlikely",
        "is negative", "was negative", "were negative", "not seen", "not present", "absent", "free",
    )),
    ("historical", "f", (
        "history of", "hx of", "h/o", "past history of", "past medical history of", "pmh of", "pmh significant for",
        "status post", "s/p", "previous", "previously", "prior", "remote", "in the past", "resolved",
        "history significant for", "known history of", "childhood", "years ago", "treated for", "recovered from",
    )),
    ("historical", "b", ("in the past", "years ago", "as a child", "in childhood", "previously", "in remission",
                        "has resolved", "resolved")),
    ("family", "f", (
        "family history of", "family history significant for", "family hx of", "fhx of", "fh of", "fhx", "fh:",
        "mother", "father", "brother", "sister", "sibling", "siblings", "grandmother", "grandfather", "aunt", "uncle",
        "cousin", "maternal", "paternal", "mom", "dad", "parents", "parent", "his son", "her son", "his daughter",
        "her daughter", "relatives", "relative",
    )),
    ("family", "b", ("in his mother", "in her mother", "in his father", "in her father", "in the family", "runs in the family",
                     "in a sibling", "in siblings")),
    ("uncertain", "f", (
        "rule out", "r/o", "possible", "possibly", "probable", "probably", "suspected", "suspect", "suspicious for",
        "concern for", "concerning for", "questionable", "question of", "likely", "may have", "might have", "could be",
        "cannot exclude", "cannot rule out", "can not rule out", "differential includes", "differential diagnosis",
        "ddx", "versus", "vs", "evaluate for", "evaluation for", "assess for", "worrisome for", "presumed", "?",
    )),
    ("uncertain", "b", ("is possible", "is suspected", "is likely", "cannot be excluded", "cannot be ruled out",
                        "not excluded", "is questioned", "vs", "?", "suspected", "possible", "probable")),
    ("hypothetical", "f", (
        "if", "return if", "call if", "should he develop", "should she develop", "should they develop", "in case of",
        "watch for", "monitor for", "risk of", "at risk for", "to prevent", "prevention of", "prophylaxis", "screening for",
        "warning signs", "precautions",
    )),
]
_PSEUDO = (
    "no increase", "no change", "no significant change", "not only", "not necessarily", "no further", "not certain if",
    "not certain whether", "gram negative", "gram-negative", "without difficulty", "without any difficulty",
    "not cause", "not been able", "no longer", "not drain", "negative for change", "history and physical",
    "history and exam", "prior to", "not ruled out",
    "not been ruled out", "cannot be ruled out", "fail to rule out", "failed to rule out", "non-compliant",
    "noncompliant", "non compliant", "non-adherent", "not improve", "not improved", "if needed", "as needed",
    "if necessary", "negative pressure", "rule out pneumonia?", "likely to", "no history of present illness",
    "whether or not", "not adequately controlled",
)
_TERMINATORS = re.compile(
    r"(?i)\b(?:but|however|although|though|yet|except|aside from|apart from|which|who|presents? with|presenting with|"
    r"complains? of|reports?|admitted for|now with|currently|secondary to|due to|cause of|source of|reason for|"
    r"still|now)\b|[;:]"
)


def _phrase_regex(phrases: tuple[str, ...]) -> re.Pattern[str]:
    parts = []
    for p in sorted(set(phrases), key=len, reverse=True):
        e = re.escape(p).replace(r"\ ", r"\s+")
        parts.append(e if not p[0].isalnum() else rf"(?<![\w/]){e}(?![\w/'])" if p[-1].isalnum() else rf"(?<![\w/]){e}")
    return re.compile("(?i)" + "|".join(parts))


_TRIGGER_RES = [(flag, direction, _phrase_regex(phrases)) for flag, direction, phrases in _TRIGGERS]
_PSEUDO_RE = _phrase_regex(_PSEUDO)
_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class _Scope:
    flag: str
    trigger: str
    start: int
    end: int


@dataclass
class ClinicalDocument:
    """A parsed note: its sections, sentences, tokens and the trigger scopes."""

    text: str
    sections: list[Section]
    sentences: list[Sentence]
    tokens: list[Token]
    scopes: list[_Scope] = field(default_factory=list)

    def sentence_at(self, offset: int) -> Sentence | None:
        i = bisect.bisect_right([s.start for s in self.sentences], offset) - 1
        if i >= 0 and self.sentences[i].start <= offset < max(self.sentences[i].end, self.sentences[i].start + 1):
            return self.sentences[i]
        return None

    def context(self, start: int, end: int) -> Context:
        """The context of the mention at ``text[start:end]``: a flag is set when the mention
        starts inside the scope of a trigger of that kind, or (family) lies in a Family History
        section."""
        flags: dict[str, bool] = {}
        triggers: list[str] = []
        for sc in self.scopes:
            if sc.start <= start < sc.end:
                flags[sc.flag] = True
                triggers.append(f"{sc.flag}:{sc.trigger.lower()}")
        sent = self.sentence_at(start)
        if sent is not None and sent.section == "family_history" and "family" not in flags:
            flags["family"] = True
            triggers.append("family:section")
        return Context(**flags, triggers=tuple(triggers))


def analyze(text: str) -> ClinicalDocument:
    """Parse a note: sections, sentences, tokens, and the scope of every context trigger."""
    sections = split_sections(text)
    sentences = split_sentences(text, sections)
    doc = ClinicalDocument(text=text, sections=sections, sentences=sentences, tokens=tokenize(text))
    for sent in sentences:
        doc.scopes.extend(_sentence_scopes(text, sent.start, sent.end))
    return doc


def _sentence_scopes(text: str, s0: int, s1: int) -> list[_Scope]:
    pseudo = [m.span() for m in _PSEUDO_RE.finditer(text, s0, s1)]
    terms = [m.span() for m in _TERMINATORS.finditer(text, s0, s1)]
    words = [m.start() for m in _WORD.finditer(text, s0, s1)]
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, int, str, str]] = []
    # Longest triggers first, so "family history of" is family (not history) and "no history of"
    # is a negation.
    cands = [(m.start(), m.end(), flag, d) for flag, d, rx in _TRIGGER_RES for m in rx.finditer(text, s0, s1)]
    cands.sort(key=lambda c: (-(c[1] - c[0]), c[0]))
    for a, b, flag, d in cands:
        if any(a < pe and b > ps for ps, pe in pseudo) or any(a < te and b > ts for ts, te in taken):
            continue
        taken.append((a, b))
        found.append((a, b, flag, d))
    scopes: list[_Scope] = []
    for a, b, flag, d in found:
        trig = text[a:b]
        if d == "f":
            end = min([ts for ts, _ in terms if ts >= b] + [s1])
            i = bisect.bisect_left(words, b)
            if i + MAX_SCOPE_WORDS < len(words):
                end = min(end, words[i + MAX_SCOPE_WORDS])
            # A later trigger of another kind ends this one's scope ("no fever; history of MI").
            nxt = [fa for fa, _, ff, fd in found if fa >= b and ff != flag and fd == "f"]
            if nxt:
                end = min(end, min(nxt))
            if trig == "?" and end - b > 40:  # "?pneumonia": only the next few words
                end = b + 40
            scopes.append(_Scope(flag, trig, b, end))
        else:
            start = max([te for _, te in terms if te <= a] + [s0])
            i = bisect.bisect_left(words, a)
            if i - MAX_SCOPE_WORDS > 0:
                start = max(start, words[i - MAX_SCOPE_WORDS])
            prev = [fb for _, fb, ff, _ in found if fb <= a and ff != flag]
            if prev:
                start = max(start, max(prev))
            scopes.append(_Scope(flag, trig, start, a))
    return scopes
