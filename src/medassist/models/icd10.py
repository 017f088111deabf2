"""ICD-10-CM code suggestions from clinical text, over the descriptions in ``simple_icd_10_cm``.

The index (built once per process, lazily, in about a second after the package's own ~2 s XML
load) holds every category, subcategory and code of ICD-10-CM with its description and
inclusion terms, plus a short table of index terms of our own (``SUPPLEMENT``: what the
ICD-10-CM Alphabetic Index would default to, e.g. "hypertension" → I10). Descriptions follow
ICD conventions: words in parentheses are non-essential modifiers (optional), a "without ..."
or "not ..." clause lists words that must *not* all be present, and filler words ("unspecified",
"NOS", "other", "of") are not required.

A note is tokenised and normalised (lower case, plural and British spelling, "diabetic" →
"diabetes", "renal" → "kidney"); abbreviations and synonyms (``SYNONYMS``: MI, CHF, COPD,
T2DM, HTN, AFib, CKD, UTI, CAP, DVT, PE, ...) are expanded in place, keeping the offsets of what
was written. Within each sentence, an entry matches when all its required words occur in a
compact window; its score is the IDF mass of those words (more specific descriptions score
higher) times a compactness factor. A matched category or subcategory resolves to its
"unspecified" billable leaf where there is one (I21 → I21.9), otherwise stays the category;
among overlapping matches of one 3-character category the most specific wins.

Context from :mod:`medassist.featurizers.clinical_text` decides what happens to a match:
negated → ``excluded``; family → a Z80–Z84 family-history code; historical → a Z85–Z87
personal-history code (or I25.2 for an old MI); uncertain or hypothetical → ``flagged`` (not
coded, as outpatient coding guidelines say). When no Z code fits, the condition is ``flagged``.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field

from medassist.featurizers.clinical_text import ClinicalDocument, Context, analyze

__all__ = ["CodeSuggestion", "Evidence", "ICD10Coder", "ICD10Index", "SUPPLEMENT", "SYNONYMS", "get_index", "normalize_word"]

# --- normalisation ------------------------------------------------------------------------------
_FILLER = frozenset(
    """
    unspecified unsp nos site organism elsewhere classified not part parts initial encounter
    of the a an and or in on to by due as at from its with for type_ unknown cause sequela condition
    """.split()
)
_MORPH = {
    "diabetic": "diabete", "renal": "kidney", "hypertensive": "hypertension", "anaemia": "anemia", "oedema": "edema",
    "haemorrhage": "hemorrhage", "hemorrhagic": "hemorrhage", "oesophagus": "esophagus", "oesophageal": "esophageal",
    "tumour": "tumor", "leukaemia": "leukemia", "paediatric": "pediatric", "ischaemic": "ischemic", "ischaemia": "ischemia",
    "infarct": "infarction", "anaemic": "anemia", "oesophagitis": "esophagitis", "haematuria": "hematuria",
    "faecal": "fecal", "diarrhoea": "diarrhea", "gastro-oesophageal": "gastro-esophageal", "color": "colour",
    "ii": "2", "i": "1", "iii": "3", "iv": "4", "pneumoniae": "pneumonia", "asthmatic": "asthma",
    "depressive": "depression", "depressed": "depression", "obese": "obesity", "anxious": "anxiety",
    "arthritic": "arthritis", "epileptic": "epilepsy", "migraines": "migraine", "vomit": "vomiting",
}


@functools.lru_cache(maxsize=65536)
def normalize_word(word: str) -> str:
    """Lower case, British → American spelling, plural → singular (the same on both sides)."""
    w = word.lower().strip("'’.")
    w = _MORPH.get(w, w)
    if len(w) > 4 and not w[-1].isdigit():
        if w.endswith("ies"):
            w = w[:-3] + "y"
        elif w.endswith(("sses", "xes", "ches", "shes")):
            w = w[:-2]
        elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
            w = w[:-1]
    return _MORPH.get(w, w)


_WORD_OR_PART = re.compile(r"[A-Za-z0-9']+")


def _words(text: str) -> list[tuple[str, int, int]]:
    """Normalised words with offsets; hyphenated words count as their parts."""
    return [(normalize_word(m.group()), m.start(), m.end()) for m in _WORD_OR_PART.finditer(text)]


#: Abbreviations and synonyms, expanded in the note (not in the index). Keys are matched as
#: whole words after normalisation.
SYNONYMS: dict[str, str] = {
    "mi": "myocardial infarction", "ami": "acute myocardial infarction", "heart attack": "myocardial infarction",
    "stemi": "st elevation myocardial infarction", "nstemi": "non-st elevation myocardial infarction",
    "chf": "congestive heart failure", "hf": "heart failure", "hfref": "systolic heart failure",
    "hfpef": "diastolic heart failure", "copd": "chronic obstructive pulmonary disease",
    "t2dm": "type 2 diabetes mellitus", "dm2": "type 2 diabetes mellitus", "dm 2": "type 2 diabetes mellitus",
    "dmii": "type 2 diabetes mellitus", "dm ii": "type 2 diabetes mellitus", "t2d": "type 2 diabetes mellitus",
    "niddm": "type 2 diabetes mellitus", "type 2 diabete": "type 2 diabetes mellitus", "diabete type 2": "type 2 diabetes mellitus",
    "t1dm": "type 1 diabetes mellitus", "dm1": "type 1 diabetes mellitus", "iddm": "type 1 diabetes mellitus",
    "type 1 diabete": "type 1 diabetes mellitus", "diabete type 1": "type 1 diabetes mellitus",
    "dm": "diabetes mellitus", "htn": "hypertension", "high blood pressure": "hypertension",
    "afib": "atrial fibrillation", "a-fib": "atrial fibrillation", "a fib": "atrial fibrillation", "af": "atrial fibrillation",
    "ckd": "chronic kidney disease", "esrd": "end stage renal disease", "aki": "acute kidney failure", "arf": "acute kidney failure",
    "uti": "urinary tract infection", "cap": "pneumonia", "pna": "pneumonia", "community acquired pneumonia": "pneumonia",
    "dvt": "deep vein thrombosis", "pe": "pulmonary embolism", "cad": "coronary artery disease",
    "cva": "cerebral infarction", "tia": "transient cerebral ischemic attack", "gerd": "gastro-esophageal reflux disease",
    "osa": "obstructive sleep apnea", "hld": "hyperlipidemia", "high cholesterol": "hyperlipidemia",
    "bph": "benign prostatic hyperplasia", "oa": "osteoarthritis", "ra": "rheumatoid arthritis",
    "sob": "shortness of breath", "cp": "chest pain", "n/v": "nausea with vomiting", "abd": "abdominal",
    "hcv": "hepatitis c", "hbv": "hepatitis b", "hiv": "human immunodeficiency virus disease", "uri": "acute upper respiratory infection",
    "mdd": "major depressive disorder", "gad": "generalized anxiety disorder", "ptsd": "post-traumatic stress disorder",
    "adhd": "attention-deficit hyperactivity disorder", "add": "attention-deficit hyperactivity disorder",
    "ocd": "obsessive-compulsive disorder", "ibs": "irritable bowel syndrome", "pud": "peptic ulcer", "fx": "fracture",
    "cancer": "malignant neoplasm", "carcinoma": "malignant neoplasm", "ca": "malignant neoplasm", "malignancy": "malignant neoplasm",
    "htn crisis": "hypertensive crisis", "lbp": "low back pain", "ha": "headache", "ms": "multiple sclerosis",
    "sle": "systemic lupus erythematosus", "pvd": "peripheral vascular disease", "pad": "peripheral vascular disease",
    "bipolar": "bipolar disorder", "depression": "depression", "ed": "erectile dysfunction",
    "hypothyroid": "hypothyroidism", "hyperthyroid": "hyperthyroidism", "kidney stone": "calculus of kidney",
    "pcos": "polycystic ovarian syndrome", "rls": "restless legs syndrome",
}

#: Index terms of our own (the defaults of the ICD-10-CM Alphabetic Index for common words).
SUPPLEMENT: dict[str, tuple[str, ...]] = {
    "I10": ("hypertension", "essential hypertension"), "E78.5": ("hyperlipidemia", "dyslipidemia"),
    "I25.10": ("coronary artery disease", "coronary heart disease"), "E11.9": ("type 2 diabetes mellitus", "diabetes mellitus", "diabetes"),
    "B37.9": ("yeast infection", "candidiasis", "thrush"), "B37.31": ("vaginal yeast infection", "vaginal candidiasis"),
    "E10.9": ("type 1 diabetes mellitus",), "I48.91": ("atrial fibrillation",), "J18.9": ("pneumonia",),
    "N39.0": ("urinary tract infection",), "I82.409": ("deep vein thrombosis",), "I26.99": ("pulmonary embolism",),
    "K21.9": ("gastro-esophageal reflux disease", "acid reflux", "reflux"), "N18.9": ("chronic kidney disease",),
    "N18.6": ("end stage renal disease",), "F32.A": ("depression",), "F41.9": ("anxiety",), "G47.00": ("insomnia",),
    "E66.9": ("obesity",), "F31.9": ("bipolar disorder",), "G43.909": ("migraine",), "L70.0": ("acne",),
    "Z30.9": ("birth control", "contraception", "contraceptive"), "Z30.012": ("emergency contraception",),
    "F90.9": ("attention-deficit hyperactivity disorder",), "J45.909": ("asthma",), "M54.50": ("low back pain",),
    "R51.9": ("headache",), "F17.210": ("smoker", "smoking"), "E03.9": ("hypothyroidism",), "E05.90": ("hyperthyroidism",),
    "I73.9": ("peripheral vascular disease",), "G35": ("multiple sclerosis",), "N52.9": ("erectile dysfunction",),
    "I63.9": ("cerebral infarction", "stroke"), "G45.9": ("transient cerebral ischemic attack",),
    "I25.2": ("old myocardial infarction", "history myocardial infarction", "prior myocardial infarction"),
    "I51.7": ("cardiomegaly", "enlarged heart"), "J98.11": ("atelectasis",), "J90": ("pleural effusion",),
    "J93.9": ("pneumothorax",), "R91.8": ("lung opacity", "pulmonary opacity", "opacity"), "R91.1": ("lung nodule", "pulmonary nodule"),
    "J43.9": ("emphysema",), "M41.9": ("scoliosis",), "J81.0": ("pulmonary edema",), "A15.0": ("tuberculosis",),
}

_PLACEHOLDER = re.compile(r"\[(?:NAME|DATE|PHONE|ADDRESS|ID|AGE>89|EMAIL|URL|IP|FACILITY)\]")

_SOURCE_WEIGHT = {"description": 1.0, "inclusion": 0.97, "supplement": 1.0}


@dataclass(frozen=True)
class _Entry:
    code: str
    required: frozenset[str]
    forbidden: frozenset[str]
    weight: float
    source: str
    other: bool  # "Other ..." descriptions want the text to name the other thing


def _bag(text: str) -> list[str]:
    """Normalised words of ``text`` (the fast path for the index; no offsets)."""
    return [normalize_word(w) for w in _WORD_OR_PART.findall(text.replace("-", " "))]


_OTHER = re.compile(r"(?i)^\s*other\b|,\s*other\b|\bother specified\b")
_PARENS = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_NEG_CLAUSE = re.compile(r"(?i)\b(?:without|not)\b(.*)$")


def _parse_description(text: str) -> tuple[frozenset[str], frozenset[str], bool]:
    """Required and forbidden words of a description, and whether it is an "Other ..." code."""
    other = "ther" in text and _OTHER.search(text) is not None
    t = _PARENS.sub(" ", text) if ("(" in text or "[" in text) else text
    forbidden: set[str] = set()
    if "not" in t or "without" in t:
        keep = []
        for clause in t.split(","):
            m = _NEG_CLAUSE.search(clause)
            if m:
                forbidden.update(w for w in _bag(m.group(1)) if w not in _FILLER)
                clause = clause[: m.start()]
            keep.append(clause)
        t = " ".join(keep)
    required = frozenset(w for w in _bag(t) if w not in _FILLER)
    return required, frozenset(forbidden), other


class ICD10Index:
    """Every ICD-10-CM description and inclusion term as an entry keyed by its rarest word."""

    def __init__(self) -> None:
        import simple_icd_10_cm as icd

        self._icd = icd
        self.entries: list[_Entry] = []
        raw: list[tuple[str, frozenset[str], frozenset[str], str, bool]] = []
        for code in icd.get_all_codes(True):
            if icd.is_chapter_or_block(code):
                continue
            for text, source in [(icd.get_description(code), "description"),
                                 *((t, "inclusion") for t in icd.get_inclusion_term(code) if "classifiable" not in t)]:
                req, forb, other = _parse_description(text)
                if req:
                    raw.append((code, req, forb, source, other))
        for code, terms in SUPPLEMENT.items():
            for t in terms:
                req, forb, other = _parse_description(t)
                raw.append((code, req, forb, "supplement", other))
        df: dict[str, int] = defaultdict(int)
        for _, req, _, _, _ in raw:
            for w in req:
                df[w] += 1
        n = len(raw)
        self.idf = {w: math.log((n + 1) / (c + 0.5)) for w, c in df.items()}
        self.by_key: dict[str, list[int]] = defaultdict(list)
        for code, req, forb, source, other in raw:
            weight = sum(self.idf[w] for w in req)
            self.entries.append(_Entry(code, req, forb, weight, source, other))
            self.by_key[max(req, key=lambda w: (self.idf[w], w))].append(len(self.entries) - 1)
        self.synonyms = {tuple(normalize_word(w) for w, _, _ in _words(k)): [w for w, _, _ in _words(v)]
                         for k, v in SYNONYMS.items()}
        self._syn_max = max(len(k) for k in self.synonyms)
        self.classifiable = self._classifiable_ranges()

    # --- code tree helpers ---
    def description(self, code: str) -> str:
        return self._icd.get_description(code)

    def is_leaf(self, code: str) -> bool:
        return self._icd.is_leaf(code)

    def is_valid(self, code: str) -> bool:
        return self._icd.is_valid_item(code)

    def ancestors(self, code: str) -> list[str]:
        return self._icd.get_ancestors(code)

    def default_leaf(self, code: str) -> str:
        """The "unspecified" billable code under ``code`` (I21 → I21.9), or ``code`` itself."""
        while not self._icd.is_leaf(code):
            kids = self._icd.get_children(code)
            unspec = [k for k in kids if re.search(r"(?i)\bunspecified\b|\bwithout complications\b|\bNOS\b",
                                                   self._icd.get_description(k))
                      and not re.search(r"(?i)\b(right|left|bilateral)\b", self._icd.get_description(k))]
            if not unspec:
                return code
            code = sorted(unspec, key=lambda k: (not k.endswith("9"), len(k)))[0]
        return code

    def _classifiable_ranges(self) -> list[tuple[str, str, str]]:
        """(first, last, Z code) from inclusion notes "Conditions classifiable to C15-C26"."""
        out = []
        for code in self._icd.get_all_codes(True):
            if not code.startswith("Z8") or self._icd.is_chapter_or_block(code):
                continue
            for t in self._icd.get_inclusion_term(code):
                m = re.search(r"classifiable to (.+)$", t)
                if not m or "elsewhere" in t:
                    continue
                for part in m.group(1).split(","):
                    part = part.strip().rstrip(".-").strip()
                    lo, _, hi = part.partition("-")
                    if re.fullmatch(r"[A-Z]\d[\dA-Z](\.[\dA-Z]+)?", lo):
                        out.append((lo, hi or lo, code))
        return out

    def expand(self, text: str) -> list[tuple[str, int, int]]:
        """Normalised words of ``text`` with abbreviations expanded (each expansion word keeps
        the offsets of what was written)."""
        words = _words(text)
        out: list[tuple[str, int, int]] = []
        i = 0
        while i < len(words):
            for n in range(min(self._syn_max, len(words) - i), 0, -1):
                key = tuple(w for w, _, _ in words[i:i + n])
                if key in self.synonyms:
                    s, e = words[i][1], words[i + n - 1][2]
                    # "MI" but not "mi" inside a sentence of ordinary words is still MI; short lower-case
                    # abbreviations that are also English words need capitals ("PE", "CAP", "ADD").
                    raw = text[s:e]
                    if n == 1 and len(raw) <= 3 and raw.islower() and raw in {"pe", "cap", "add", "ed", "ms", "af", "ca", "ha", "pad", "ra"}:
                        continue
                    out.extend((w, s, e) for w in self.synonyms[key])
                    i += n
                    break
            else:
                out.append(words[i])
                i += 1
        return out

    def match(self, words: list[tuple[str, int, int]]) -> list[tuple[_Entry, list[int], float]]:
        """Entries whose required words all occur in a compact window of ``words``;
        returns (entry, word positions used, score)."""
        pos: dict[str, list[int]] = defaultdict(list)
        groups: dict[tuple[int, int], set[str]] = defaultdict(set)  # words of one written abbreviation
        for i, (w, s, e) in enumerate(words):
            pos[w].append(i)
            groups[(s, e)].add(w)
        out: list[tuple[_Entry, list[int], float]] = []
        for w in pos:
            for ei in self.by_key.get(w, ()):
                entry = self.entries[ei]
                if not entry.required <= pos.keys():
                    continue
                if entry.forbidden and entry.forbidden <= pos.keys():
                    continue
                window = _min_window([pos[r] for r in entry.required])
                if window is None:
                    continue
                lo, hi = window
                span_words = len({words[i][1] for i in range(lo, hi + 1)})  # expansions share offsets
                n_written = len({words[i][1] for i in range(lo, hi + 1) if words[i][0] in entry.required})
                if span_words > 2 * n_written + 3:
                    continue
                used = [i for i in range(lo, hi + 1) if words[i][0] in entry.required]
                # "CHF, CKD" is not "kidney failure": at most one abbreviation may be used in part.
                partial = sum(1 for g in {words[i][1:] for i in used} if len(groups[g]) > 1 and not groups[g] <= entry.required)
                if partial > 1:
                    continue
                score = entry.weight * math.sqrt(n_written / span_words) * _SOURCE_WEIGHT[entry.source] * (0.9 if entry.other else 1.0)
                out.append((entry, used, score))
        return out


def _min_window(lists: list[list[int]]) -> tuple[int, int] | None:
    """The smallest (lo, hi) containing one position from each sorted list."""
    if any(not x for x in lists):
        return None
    if len(lists) == 1:
        return lists[0][0], lists[0][0]
    events = sorted((p, k) for k, x in enumerate(lists) for p in x)
    have: defaultdict[int, int] = defaultdict(int)
    need, best, left = len(lists), None, 0
    covered = 0
    for right in range(len(events)):
        k = events[right][1]
        have[k] += 1
        if have[k] == 1:
            covered += 1
        while covered == need:
            lo, hi = events[left][0], events[right][0]
            if best is None or hi - lo < best[1] - best[0]:
                best = (lo, hi)
            kl = events[left][1]
            have[kl] -= 1
            if have[kl] == 0:
                covered -= 1
            left += 1
    return best


_INDEX: ICD10Index | None = None
_LOCK = threading.Lock()


def get_index() -> ICD10Index:
    """The process-wide index, built on first use (about 1 s plus simple_icd_10_cm's import)."""
    global _INDEX
    if _INDEX is None:
        with _LOCK:
            if _INDEX is None:
                _INDEX = ICD10Index()
    return _INDEX


# --- suggestions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class CodeSuggestion:
    """One ICD-10-CM suggestion.

    ``status``: ``suggested`` (affirmed, or mapped to a family/personal-history Z code),
    ``excluded`` (negated: not to be coded) or ``flagged`` (uncertain, hypothetical, or a
    history/family mention with no fitting Z code: for a coder to review). ``source_code``
    is the condition a Z code stands for. ``evidence`` offsets refer to the text coded.
    """

    code: str
    description: str
    score: float
    status: str
    flags: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    billable: bool
    source_code: str | None = None
    triggers: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"code": self.code, "description": self.description, "score": round(self.score, 3), "status": self.status,
                "flags": list(self.flags), "billable": self.billable, "source_code": self.source_code,
                "evidence": [{"start": e.start, "end": e.end, "text": e.text} for e in self.evidence],
                "triggers": list(self.triggers)}


@dataclass
class _Cand:
    code: str
    score: float
    words: frozenset[str]
    spans: list[tuple[int, int]]
    context: Context
    entry_code: str = ""
    extra: dict = field(default_factory=dict)


class ICD10Coder:
    """Suggest ICD-10-CM codes for a note.

    Example:
        >>> ICD10Coder().suggest("Type 2 diabetes mellitus with diabetic chronic kidney disease.")[0].code
        'E11.22'
    """

    def __init__(self, *, index: ICD10Index | None = None) -> None:
        self._index = index

    @property
    def index(self) -> ICD10Index:
        if self._index is None:
            self._index = get_index()
        return self._index

    def suggest(self, text: str, *, top: int | None = None, include: tuple[str, ...] = ("suggested", "flagged", "excluded"),
                doc: ClinicalDocument | None = None) -> list[CodeSuggestion]:
        """Suggestions sorted by status (suggested, flagged, excluded), then score."""
        idx = self.index
        doc = analyze(text) if doc is None else doc
        cands: list[_Cand] = []
        # De-identification placeholders ("[AGE>89]-year-old") are not words of the note.
        masked = _PLACEHOLDER.sub(lambda m: " " * len(m.group()), text)
        for sent in doc.sentences:
            words = idx.expand(masked[sent.start:sent.end])
            words = [(w, s + sent.start, e + sent.start) for w, s, e in words]
            for entry, used, score in idx.match(words):
                spans = sorted({(words[i][1], words[i][2]) for i in used})
                ctxs = [doc.context(s, e) for s, e in spans]
                ctx = Context(
                    negated=any(c.negated for c in ctxs), historical=any(c.historical for c in ctxs),
                    family=any(c.family for c in ctxs), hypothetical=any(c.hypothetical for c in ctxs),
                    uncertain=any(c.uncertain for c in ctxs), triggers=tuple(dict.fromkeys(t for c in ctxs for t in c.triggers)),
                )
                code = entry.code if idx.is_leaf(entry.code) else idx.default_leaf(entry.code)
                cands.append(_Cand(code, score * (1.02 if idx.is_leaf(code) else 1.0), entry.required, spans, ctx, entry.code))
        kept = _prune(cands, idx)
        out = [s for s in (self._finish(c, text) for c in kept) if s.status in include]
        rank = {"suggested": 0, "flagged": 1, "excluded": 2}
        out.sort(key=lambda s: (rank[s.status], -s.score, s.code))
        seen: set[tuple[str, str]] = set()
        uniq = []
        for s in out:
            if (s.code, s.status) not in seen:
                seen.add((s.code, s.status))
                uniq.append(s)
        return uniq[:top] if top else uniq

    def _finish(self, c: _Cand, text: str) -> CodeSuggestion:
        idx = self.index
        ev = tuple(Evidence(s, e, text[s:e]) for s, e in _merge_spans(c.spans))
        code, status = c.code, "suggested"
        source_code: str | None = None
        if c.context.negated:
            status = "excluded"
        elif c.context.hypothetical or c.context.uncertain:
            status = "flagged"
        elif c.context.family or c.context.historical:
            z = _history_code(idx, c, family=c.context.family)
            if z is None:
                status = "flagged"
            else:  # the family/personal-history Z code stands for the condition
                code, source_code = z, c.code
        return CodeSuggestion(code=code, description=idx.description(code), score=c.score, status=status,
                              flags=tuple(c.context.flags()), evidence=ev, billable=idx.is_leaf(code),
                              source_code=source_code, triggers=c.context.triggers)


def _merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _prune(cands: list[_Cand], idx: ICD10Index) -> list[_Cand]:
    """Keep the most specific candidate among overlapping ones of the same category (or an
    ancestor of a kept code), and drop candidates whose words are a strict subset of a kept
    candidate's on the same evidence in the same context."""
    cands = sorted(cands, key=lambda c: (-c.score, c.code))
    kept: list[_Cand] = []
    for c in cands:
        cstart, cend = c.spans[0][0], c.spans[-1][1]
        drop = False
        for k in kept:
            overlap = cstart < k.spans[-1][1] and k.spans[0][0] < cend
            if not overlap or k.context.flags() != c.context.flags():
                continue
            if c.code[:3] == k.code[:3] or c.code in idx.ancestors(k.code):
                drop = True
                break
            if c.words < k.words and set(c.spans) <= set(k.spans) and k.code[:3] != "E11" and not _is_manifestation(c.code):
                drop = True
                break
        if not drop:
            kept.append(c)
    return kept


def _is_manifestation(code: str) -> bool:
    """Codes that ICD-10-CM asks to add next to a combination code ("use additional code")."""
    return code[:3] in {"N18", "I50", "E78", "Z79"}


# --- personal and family history -----------------------------------------------------------------
_HISTORY_FALLBACK = {  # chapter letter of the condition → Z code ("other diseases of ...")
    "A": "Z86.19", "B": "Z86.19", "C": "Z85.9", "E": "Z86.39", "F": "Z86.59", "G": "Z86.69", "I": "Z86.79",
    "J": "Z87.09", "K": "Z87.19", "L": "Z87.2", "M": "Z87.39", "N": "Z87.448",
}
_FAMILY_FALLBACK = {"C": "Z80.9", "I": "Z82.49", "E": "Z83.49", "F": "Z81.8", "J": "Z83.6", "K": "Z83.79", "N": "Z84.2",
                    "L": "Z84.0", "G": "Z82.0"}


def _history_code(idx: ICD10Index, c: _Cand, *, family: bool) -> str | None:
    """The family-history (Z80–Z84) or personal-history (Z85–Z87, I25.2) code for a condition."""
    code = c.code
    prefix = ("Z80", "Z81", "Z82", "Z83", "Z84") if family else ("Z85", "Z86", "Z87")
    if code[:3] in prefix or (not family and code == "I25.2"):
        return code  # the text named the history code itself ("family history of cancer")
    if not family and code[:3] in ("I21", "I22"):
        return "I25.2"  # old myocardial infarction
    best: str | None = None
    width = None
    for lo, hi, z in idx.classifiable:  # "Conditions classifiable to C15-C26": the narrowest range wins
        if z[:3] in prefix and _in_range(code, lo, hi):
            w = (ord(hi[0]) - ord(lo[0])) * 1000 + int(hi[1:3]) - int(lo[1:3]) if lo[1:3].isdigit() and hi[1:3].isdigit() else 999
            if width is None or w < width:
                best, width = z, w
    if best is None:
        words = set(c.words) | set(_bag(idx.description(code))) - _FILLER
        best_w = 0.0
        for e in _z_entries(idx, prefix):
            need = e.required - {"family", "personal", "history"}
            if need and need <= words and e.weight > best_w:
                best, best_w = e.code, e.weight
    if best is None:
        best = (_FAMILY_FALLBACK if family else _HISTORY_FALLBACK).get(code[0])
    return idx.default_leaf(best) if best else None


_Z_CACHE: dict[tuple[str, ...], list[_Entry]] = {}


def _z_entries(idx: ICD10Index, prefix: tuple[str, ...]) -> list[_Entry]:
    if prefix not in _Z_CACHE:
        _Z_CACHE[prefix] = [e for e in idx.entries if e.code[:3] in prefix and not e.other]
    return _Z_CACHE[prefix]


def _in_range(code: str, lo: str, hi: str) -> bool:
    c = code.replace(".", "")
    lo_, hi_ = lo.replace(".", ""), hi.replace(".", "")
    return lo_ <= c[: len(lo_)] and c[: len(hi_)] <= hi_

