"""De-identification of clinical free text with offline pattern and context rules.

``deidentify(text)`` finds identifiers and replaces each with a typed placeholder; the spans
found are reported as ``(start, end, kind)`` offsets into the original text::

    >>> deidentify("Seen by Dr. Ann Lee on 03/12/2019; MRN 48213377.").text
    'Seen by Dr. [NAME] on [DATE]; MRN [ID].'

No language model is used (none can be downloaded here): regular expressions for the shapes of
identifiers, and context cues (titles, "Patient:", "seen by", credentials such as ", MD",
relatives, "lives in", facility words) for names and places. A name found once is looked for
again in the whole note ("Mr. John Smith ... Smith reports").

HIPAA Safe Harbor identifiers (45 CFR 164.514(b)(2)) and what this module covers:

 1. names ............................................ yes (cues, signatures, ``known_names``)
 2. geographic units smaller than a state ............ street addresses, PO boxes, "City, ST",
    ZIP codes, places after "lives in"/"resides in"; facility names (Hospital, Clinic, ...)
 3. dates (except year) and ages over 89 ............. yes (numeric, ISO, month names, ordinals)
 4. telephone numbers, 5. fax numbers ................ yes
 6. e-mail addresses ................................. yes
 7. SSNs, 8. medical record numbers, 9. health plan beneficiary numbers, 10. account numbers,
    11. certificate/licence numbers .................. yes: cue words (MRN, SSN, account,
    member ID, policy, licence, DEA, NPI, ...) plus the shapes ddd-dd-dddd and 7+ digit runs
12. vehicle identifiers, 13. device serial numbers ... only after a cue (VIN, plate, serial)
14. URLs, 15. IP addresses ........................... yes
16. biometric identifiers, 17. full-face photographs  not applicable to text / not covered
18. any other unique identifying number or code ..... partly (long digit runs, letter+digit IDs)

Names in lower case ("pt jane doe", "dr patel") are taken only after a cue and only when no word
is a common English or clinical word; a name word with a glued tail ("ZebulonP1") is removed
whole; a capitalised word joined by "and" to a found name, or beside a relative ("... and her
mother", "(roommate)") or an age-sex shorthand ("Okonkwo, Chidi — 72M"), is a name too.

Years on their own are kept (Safe Harbor allows them); so are clinical quantities ("5 mg",
"2 weeks", "BP 120/80", "HbA1c 7.2%", ICD codes such as "E11.22"). Cities named without a cue
or a state, and names written without any cue, are the known misses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from medassist.exceptions import DataError

__all__ = ["KINDS", "Deidentified", "deidentify"]

#: The placeholder kinds, ``[KIND]`` in the redacted text.
KINDS = ("NAME", "DATE", "PHONE", "ADDRESS", "ID", "AGE>89", "EMAIL", "URL", "IP", "FACILITY")


@dataclass(frozen=True)
class Deidentified:
    """Redacted text and the identifier spans ``(start, end, kind)`` found in the original."""

    text: str
    spans: tuple[tuple[int, int, str], ...]

    @property
    def counts(self) -> dict[str, int]:
        """How many identifiers of each kind were replaced (safe to log: no PHI)."""
        out: dict[str, int] = {}
        for _, _, kind in self.spans:
            out[kind] = out.get(kind, 0) + 1
        return out


# --- building blocks ----------------------------------------------------------------------------
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_MONTH_I = rf"(?i:{_MONTH})\.?"  # "MARCH", "march"
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:19|20)\d{2}"
_NUM_DAY = r"(?:[12]\d|3[01]|0?[1-9])"
_NUM_MON = r"(?:1[0-2]|0?[1-9])"

# A name word: John, O'Brien, McDonald, DeAngelo, Smith-Jones; an initial: J.
# A glued tail of one capital and/or digits stays with the word ("ZebulonP1", "QuagmiresonP"):
# generated and migrated records carry such names, and half a name is still a name.
_WORD = r"(?:[A-Z](?:[a-z]+|'[A-Z][a-z]+|[a-z]{0,2}[A-Z][a-z]+)(?:-[A-Z][a-z]+)?(?:[A-Z]?\d{1,4}|[A-Z](?![a-z]))?)"
_CAPS = r"(?:[A-Z]'?[A-Z]+(?:-[A-Z]{2,})?)"  # JOHN SMITH, O'CONNELL in headers
_INIT = r"(?:[A-Z]\.)"
_NAME = rf"(?:{_WORD}(?:\s+(?:{_INIT}\s+)?{_WORD}){{0,2}}|{_WORD},\s*{_WORD}(?:\s+{_INIT})?)"
_NAME_ANYCASE = rf"(?:{_NAME}|{_CAPS}(?:\s+(?:[A-Z]\.?\s+)?{_CAPS}){{0,2}}|{_CAPS},\s*{_CAPS})"
# A name written in lower case ("pt jane doe", "dr patel"): only after a cue, and only words that
# are not common English or clinical words (checked by ``_lower_name_runs``).
_LOWER = r"(?:[a-z](?:[a-z]|['’](?!s\b))+(?:-[a-z]+)?)"  # o'brien; "gallagher's" stops before the 's
_RELATIONS = (
    r"wife|husband|son|daughter|mother|father|brother|sister|spouse|partner|friend|caregiver|niece|nephew|"
    r"grandson|granddaughter|aunt|uncle|cousin|fianc[eé]e?|boyfriend|girlfriend|roommate|neighbou?r|guardian"
)

_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|"
    "NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
_STREET = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|"
    r"Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl|Loop|Row|Pike|Alley)"
)

# Capitalised words that follow a cue but are not names ("seen by Cardiology", "Dr. On-call").
_NOT_NAMES = frozenset(
    """
    Dr Mr Mrs Ms Miss Mx Prof Sr Fr Rev Dear Hi Hello Thanks Regards Sincerely
    The A An This That He She They His Her Patient Pt Doctor Nurse Team Service Department Dept Clinic Hospital
    Cardiology Neurology Oncology Surgery Medicine Radiology Pathology Nephrology Urology Psychiatry Pediatrics
    Dermatology Endocrinology Gastroenterology Pulmonology Rheumatology Orthopedics Emergency Internal Family
    Primary Care Unit ICU ER ED PCP MD DO RN NP PA Today Tomorrow Yesterday Monday Tuesday Wednesday Thursday
    Friday Saturday Sunday Denies Reports Presents Complains Is Was Has Had With Without And Or No Not None Unknown
    Admitted Discharged Home Follow Plan Assessment History Exam Physical Review Note Notes Signed Dictated By On At
    In Of For To From Per See Seen Called Who Which What When Where Mother Father Wife Husband Son Daughter
    Brother Sister Pain Chest Fever Cough Diabetes Hypertension Pneumonia Type Acute Chronic Left Right Bilateral
    Discharge Summary Progress Consult Consultation Report Chief Complaint Operative Admission Encounter Visit Name
    Date Subject Record Medical Addendum Impression Diagnosis Procedure Results Labs Vitals Course ID MRN DOB SSN
    """.split()
)

# Words that follow "pt", "mr", "spoke with" ... in lower-case notes and are not names. A lower-case
# word is taken for a name only after a cue and only when it is none of these and has none of the
# suffixes below (names such as "irving" or "alfred" are lost: a capitalised name is caught).
_COMMON_LOWER = frozenset(
    """
    a an the this that these those his her him he she they them their its it i we you our your my me us
    and or but nor so yet if then than as at by for from in into of off on onto out over per to up upon via with
    within without about above after against along among around before behind below beside between beyond
    during except near since through toward towards under until while w
    is are was were be been being am has have had having do does did done will would shall should can could
    may might must not no yes also again still now today tonight tomorrow yesterday here there later soon
    well better worse good bad fine ok okay stable unstable alert oriented awake asleep calm anxious agitated
    pleasant comfortable uncomfortable afebrile febrile tachycardic hypotensive hypertensive diaphoretic
    all any both each every few many more most much other some such own same only very too just
    who whom whose which what when where why how
    feels felt states stated says said reports reported denies denied endorses endorsed complains complained
    tolerated tolerates tolerating ambulates ambulating ambulated refuses refused declines declined agrees agreed
    wants wanted needs needed requests requested prefers understands understood verbalizes verbalized
    presents presented returns returned arrives arrived remains remained appears appeared seems seemed
    is was got gets went goes came comes seen seems sees saw taking takes took given gives gave made makes
    fell falls fall ate eats drinks drank slept sleeps walks walked lives lived works worked
    aware informed notified updated called paged consulted
    education safety care plan history hx dx rx sx tx fx pmh psh meds medications allergies nkda
    family team staff nursing nurse pharmacy social work case management chaplain interpreter
    at home bedside unit floor ward room clinic office hospital er ed icu or pacu
    name id number dob age sex gender race weight height bmi
    male female man woman boy girl baby infant child adult pt pts patient patients
    po iv im sc sq prn bid tid qid qd qhs qam qpm npo nad sob cp abd ext neuro cv resp gi gu msk heent
    s p c o f u n v d h x y m l r dr mr mrs miss mx prof tr ar pr ms ef bp hr rr spo2 wbc hgb plt inr ptt bnp ck
    mild moderate severe trace small large new old acute chronic normal abnormal positive negative
    pain fever cough nausea vomiting diarrhea rash chest abdomen head back leg arm knee hip
    able unable poor fair historian
    one two three four five six seven eight nine ten first second third last next
    note notes noted per re regarding status flare exacerbation overnight daily weekly
    primary secondary pulmonary coronary urinary
    """.split()
)
_COMMON_SUFFIXES = ("ing", "ed", "ly", "tion", "sion", "ment", "ness", "ous", "ive", "ity", "ful", "less", "able",
                    "ible", "ance", "ence", "ize", "ise", "ical", "ology", "itis", "emia", "osis", "ectomy", "otomy",
                    "plasty", "scopy", "graphy", "ate")


def _lower_is_name(word: str) -> bool:
    w = word.strip(".,;:'’").lower()
    if len(w) < 2 or w in _COMMON_LOWER:
        return False
    w = w.rsplit("-", 1)[-1]  # "el-sayed": the suffixes below are about the last part
    if len(w) >= 6 and w.endswith(_COMMON_SUFFIXES):
        return w.endswith(("mmed", "hmed"))  # mohammed, mehmed are names, not past tenses
    return True


def _name_parts(match_text: str) -> list[str]:
    return [w for w in re.split(r"[\s,]+", match_text) if w]


# --- detectors ----------------------------------------------------------------------------------
# (kind, pattern, group): group 0 is the whole match; a named group ``v`` narrows the span.
_I = re.IGNORECASE
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("URL", re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"']*[^\s<>\"'.,;:)\]]", _I)),
    ("URL", re.compile(r"\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|edu|gov|io|info)(?:/[^\s<>\"']*[^\s<>\"'.,;:)\]])?\b", _I)),
    ("IP", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
    # --- dates (year alone is kept) ---
    ("DATE", re.compile(rf"\b{_YEAR}[-/.]{_NUM_MON}[-/.]{_NUM_DAY}(?:[T ]\d{{1,2}}:\d{{2}}(?::\d{{2}})?)?\b")),
    ("DATE", re.compile(rf"\b{_NUM_DAY}[-/.]{_NUM_DAY}[-/.](?:{_YEAR}|\d{{2}})\b(?![-/.]\d)")),
    ("DATE", re.compile(rf"\b{_NUM_DAY}[-/ ]{_MONTH_I}[-/ ,]\s*(?:{_YEAR}|\d{{2}})\b")),
    ("DATE", re.compile(rf"\b{_MONTH_I}[-/ ]{_NUM_DAY}[-/ ,]\s*{_YEAR}\b")),
    ("DATE", re.compile(rf"\b(?:(?:on|the)\s+)?{_DAY}\s+(?:day\s+)?of\s+{_MONTH_I}(?:,?\s+{_YEAR})?\b", _I)),
    ("DATE", re.compile(rf"\b{_MONTH_I}\s+(?:the\s+)?{_DAY}\b(?:,?\s+{_YEAR}\b)?(?!\s*(?:mg|mcg|ml|g|kg|units?|%)\b)")),
    ("DATE", re.compile(rf"\b{_DAY}\s+{_MONTH_I}(?:,?\s+{_YEAR})?\b")),
    ("DATE", re.compile(rf"\b{_MONTH_I},?\s+{_YEAR}\b")),
    ("DATE", re.compile(rf"\b{_NUM_MON}/{_YEAR}\b")),
    ("DATE", re.compile(rf"\b(?i:on|dated|dob:?|since|until|from|to|(?:mon|tues|wednes|thurs|fri|satur|sun)day)\s+(?P<v>{_NUM_MON}/{_NUM_DAY})\b(?![/\d])")),
    ("DATE", re.compile(r"\b(?:Christmas|Thanksgiving|Easter|New Year's(?: Day| Eve)?)\b")),
    # --- ages over 89 (only the number is replaced) ---
    ("AGE>89", re.compile(r"\b(?P<v>9\d|1[0-2]\d)(?=\s*-?\s*(?:years?|yrs?|y)[- ]?(?:old|o\b|/o)|\s*(?:yo|y/o|y\.o\.)\b)", _I)),
    ("AGE>89", re.compile(r"\b(?:aged?|age\s*[:=]|age of|at age)\s*(?P<v>9\d|1[0-2]\d)\b", _I)),
    ("AGE>89", re.compile(r"\b(?P<v>9\d|1[0-2]\d)\s*(?:-?\s*year[- ]old|(?:M|F|yo ?[MF])\b)(?=[\s,.])")),
    ("AGE>89", re.compile(r"\b(?:nonagenarian|centenarian)\b", _I)),
    # --- phones and faxes ---
    ("PHONE", re.compile(r"(?<![\w/.-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s*|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?:\s*(?:x|ext\.?)\s*\d{1,5})?\b", _I)),
    ("PHONE", re.compile(r"(?<![\w/.-])\+\d{1,3}[\s.-]?\d{1,4}(?:[\s.-]\d{2,4}){2,4}\b")),
    ("PHONE", re.compile(r"\b(?:phone|tel|telephone|fax|cell|mobile|pager|beeper|ph)\b\.?\s*(?:no\.?|number|#)?\s*[:#]?\s*(?P<v>\+?[\d(][\d\s().-]{5,}\d)", _I)),
    # --- identifiers ---
    ("ID", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("ID", re.compile(
        r"\b(?:MRN|MR#|medical record(?: number| no\.?| #)?|record(?: number| no\.?| #)|SSN|social security(?: number| no\.?)?|"
        r"acct|account|member(?: id)?|subscriber(?: id)?|policy|plan|group|beneficiary|insurance(?: id| no\.?| number)?|"
        r"claim|licen[cs]e|lic|DEA|NPI|UPIN|certificate|cert|encounter|visit|accession|specimen|case|patient id|pt id|"
        r"ID|VIN|plate|serial|device|badge|passport|chart|FIN|CSN|HAR|order|subject|participant|USUBJID|enrol(?:l?ment)?)"
        r"(?:\s*(?:number|num|no\.?|#|id))?\s*[:#=]?\s*(?:is\s+)?(?P<v>(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{3,}[A-Z0-9])\b", _I)),
    ("ID", re.compile(r"(?<![\w.#/-])#\s*(?P<v>\d{5,})\b")),
    ("ID", re.compile(r"(?<![\w.,/-])\d{7,}(?![\w.,/%-])")),
    ("ID", re.compile(r"\b[A-Z]{1,3}-?\d{6,}\b")),
    # --- addresses ---
    ("ADDRESS", re.compile(
        rf"\b\d{{1,6}}(?:-\d{{1,4}})?\s+(?:[NSEW]\.?\s+|North\s+|South\s+|East\s+|West\s+)?(?:(?:[A-Z][a-z]+|\d{{1,3}}(?:st|nd|rd|th))\s+){{1,3}}"
        rf"{_STREET}\b\.?(?:,?\s*(?:Apt|Apartment|Suite|Ste|Unit|Fl|Floor|Rm|Room|#)\.?\s*#?\s*[\w-]+)?"
        rf"(?:,?\s+(?:[A-Z][a-z]+\s+){{0,2}}[A-Z][a-z]+,?\s+(?:{_STATES}|[A-Z][a-z]+)(?:\s+\d{{5}}(?:-\d{{4}})?)?)?")),
    ("ADDRESS", re.compile(r"\b(?:P\.?\s?O\.?\s*Box|Post Office Box)\s+\d+\b", _I)),
    # "City, ST": MD and PA are also credentials ("Ann Lee, MD"), so they need a ZIP code.
    ("ADDRESS", re.compile(rf"\b(?:[A-Z][a-z]+\s+){{0,2}}[A-Z][a-z]+,\s+(?:(?!MD\b|PA\b)(?:{_STATES})\b(?:\s+\d{{5}}(?:-\d{{4}})?)?|(?:MD|PA)\s+\d{{5}}(?:-\d{{4}})?\b)")),
    ("ADDRESS", re.compile(rf"(?<=\b(?:{_STATES}) )\d{{5}}(?:-\d{{4}})?\b")),
    ("ADDRESS", re.compile(r"\b(?:zip|zip code|postal code)\s*[:#]?\s*(?P<v>\d{5}(?:-\d{4})?)\b", _I)),
    ("ADDRESS", re.compile(
        r"\b(?:lives|living|resides|residing|moved|relocated|home|born|from the town of|native of)\s+(?:alone\s+|with\s+\w+\s+)?(?:in|to|at|near)\s+"
        r"(?:the\s+)?(?P<v>(?:[A-Z][a-z]+(?:\s+|-))*[A-Z][a-z]+)")),
    ("ADDRESS", re.compile(r"\b(?:city|town|county|address|addr)\s*[:=]\s*(?P<v>[^\n;]{2,60}?)(?=\s*(?:$|\n|;|\.\s))", re.I | re.M)),
    # --- facilities ---
    ("FACILITY", re.compile(
        r"\b(?:(?:St\.?|Saint|Mount|Mt\.?)\s+)?(?:[A-Z][\w'’-]+\s+){0,4}(?:[A-Z][\w'’-]+)\s+"
        r"(?:General\s+)?(?:Hospital|Clinic|Medical Center|Medical Centre|Health Center|Health System|Healthcare|"
        r"Infirmary|Nursing Home|Rehabilitation Center|Rehab Center|Hospice|Medical Group|Urgent Care|Surgical Center|"
        r"Memorial|Children's Hospital|Cancer Center|Health|Sanatorium|Pharmacy)\b"
        r"(?:\s+(?:of|at)\s+(?:the\s+)?(?:[A-Z][a-z]+\s*){1,4})?")),
    ("FACILITY", re.compile(r"\b(?:Hospital|University|Clinic)\s+of\s+(?:the\s+)?(?:[A-Z][a-z]+\s*){1,4}")),
    # --- names with cues ---
    ("NAME", re.compile(rf"\b(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Sr|Fr|Rev)\.?\s+(?P<v>{_NAME_ANYCASE})")),
    ("NAME", re.compile(rf"\b(?:Doctor|Nurse|Professor|Sister|Father|Pastor)\s+(?P<v>{_NAME})")),
    ("NAME", re.compile(
        rf"(?i:\b(?:patient(?:'s)?\s*name|patient|pt|name|full name|pcp|primary care(?: physician| provider)?|attending(?: physician)?|"
        rf"provider|physician|surgeon|referring(?: physician| provider)?|resident|fellow|intern|nurse|rn|np|contact|"
        rf"emergency contact|guardian|next of kin|nok|poa|health care proxy|proxy|dictated by|transcribed by|signed by|"
        rf"electronically signed by|authenticated by|seen by|seen with|referred by|reviewed by|examined by|evaluated by|"
        rf"consulted|discussed with|spoke with|spoke to|accompanied by|called|paged|notified|informed|texted|emailed|met with|"
        rf"care of|c/o|visited by|message from|message to|left a message for)\b)\s*[:\-]?\s*(?P<v>{_NAME_ANYCASE})")),
    # A name opening a sentence before a verb only people do ("Walker reports ...").
    ("NAME", re.compile(
        rf"(?m)(?:^|(?<=[.!?]\s))(?P<v>{_WORD}(?:\s+{_WORD})?)(?=\s+(?:reports|denies|states|says|agrees|complains|presents|"
        rf"returns|endorses|declined|declines|refused|refuses|understands|verbalized|verbalizes|is a|was seen|tolerated the procedure|"
        rf"was admitted|was brought|was transferred|was discharged|presented)\b)")),
    # A two-word name opening a note or sentence and followed by an identifier cue ("John Smith, MRN ...").
    ("NAME", re.compile(
        rf"(?m)(?:^|(?<=[.!?]\s))(?P<v>{_WORD}\s+(?:{_INIT}\s+)?{_WORD}|{_WORD},\s*{_WORD}|{_CAPS}(?:\s+{_CAPS}){{1,2}}|{_CAPS},\s*{_CAPS})"
        rf"(?=\s*[,(;]?\s*(?i:MRN|MR#|DOB|D\.O\.B\.?|date of birth|born|SSN|patient id)\b)")),
    # ... or by an age and sex in shorthand ("Okonkwo, Chidi — 72M", "ED course: Viktor Petrenko 58M").
    ("NAME", re.compile(
        rf"(?m)(?:^|(?<=[.!?:]\s))(?P<v>{_NAME}|{_CAPS}(?:\s+{_CAPS}){{1,2}}|{_CAPS},\s*{_CAPS})"
        rf"(?=\s*,?\s*(?:[—–-]\s*)?\d{{1,3}}\s?(?:[MF]|yo|y/o|y\.o\.)(?![\w/]))")),
    # A name beside a relative or a role in brackets ("Fatima Al-Rashid and her mother", "Jonah (roommate)").
    ("NAME", re.compile(rf"(?P<v>{_NAME})(?=\s+(?:and|&)\s+(?:his|her|their)\s+(?:{_RELATIONS})\b)")),
    ("NAME", re.compile(rf"(?P<v>{_NAME})(?=\s*\((?:the\s+)?(?:patient|pt|self|{_RELATIONS})\))")),
    # --- names in lower case after a cue; every word checked by ``_lower_is_name`` ---
    # titles as written in running text (MR, MS, DR in capitals are mitral regurgitation, multiple sclerosis, ...)
    ("NAME_LC", re.compile(rf"\b(?:[Dd]r|[Mm]rs?|[Mm]s|[Mm]iss|[Mm]x|[Pp]rof)\.?\s+(?P<v>{_LOWER}(?:\s+{_LOWER})?)")),
    # a first and last name after "pt", "spoke with" ... or before "(patient)": both words must pass
    ("NAME_LC2", re.compile(
        rf"\b(?i:pt|patient|spoke with|spoke to|discussed with|seen by|seen with|referred by|accompanied by|"
        rf"left (?:a )?(?:voice ?mail|message) for)\s*[:\-]?\s+(?P<v>{_LOWER}\s+{_LOWER})(?![\w'-])")),
    ("NAME_LC2", re.compile(rf"(?<![\w'-])(?P<v>{_LOWER}\s+{_LOWER})(?=\s*\((?:the\s+)?(?:patient|pt|self|{_RELATIONS})\))")),
    ("NAME", re.compile(rf"(?i:\b(?:cc|author|from|to|attn|re|signature|signed|family contact)\b)\s*:\s*(?P<v>{_NAME_ANYCASE})")),
    ("NAME", re.compile(
        rf"(?i:\b(?:{_RELATIONS})\b),?\s+(?P<v>{_NAME})")),
    ("NAME", re.compile(
        rf"(?P<v>(?:{_WORD}|{_INIT})(?:\s+{_INIT})?(?:\s+{_WORD}){{1,2}}),?\s+(?:MD|M\.D\.|DO|D\.O\.|RN|R\.N\.|NP|PA-C|PA|PhD|MBBS|"
        rf"FACP|FACC|FACS|DNP|CNP|APRN|LPN|CNA|MSW|LCSW|PharmD|DDS|CRNA)\b")),
    ("NAME", re.compile(
        rf"(?m)^\s*(?:-{{1,3}}|/s/|Signed:?|Signature:?)\s*(?P<v>{_NAME})\s*$")),
    ("NAME", re.compile(
        rf"(?m)(?:^|(?<=[.!?]\s))(?P<v>{_WORD}(?:\s+{_INIT})?(?:\s+{_WORD}){{1,2}})(?=,?\s+(?:is|was)?\s*an?\s+\d{{1,3}}[- ]?(?:years?|yrs?|y/?o|months?|-year|yo))")),
    ("NAME", re.compile(rf"(?P<v>{_WORD}(?:\s+{_WORD}){{0,2}})(?='s\s+(?:mother|father|wife|husband|son|daughter|family|chart))")),
]

_PRIORITY = {k: i for i, k in enumerate(("EMAIL", "URL", "IP", "PHONE", "ID", "DATE", "AGE>89", "ADDRESS", "FACILITY", "NAME"))}


def _lower_name_runs(text: str, start: int, end: int, *, whole: bool) -> list[tuple[int, int]]:
    """Runs of lower-case words that may be names; with ``whole``, all the words or nothing."""
    runs: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    for m in re.finditer(r"\S+", text[start:end]):
        s, e = start + m.start(), start + m.end()
        if not _lower_is_name(m.group()):
            if whole:
                return []
            if cur:
                runs.append(cur)
            cur = None
            continue
        cur = (cur[0], e) if cur else (s, e)
    if cur:
        runs.append(cur)
    return runs


def _whole_tokens(text: str, start: int, end: int) -> tuple[int, int]:
    """A name span widened to whole words: never leave "P1" of "ZebulonP1" behind."""
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum():
        end += 1
    return start, end


_NEXT_TO_NAME = re.compile(rf"\s+(?:and|&)\s+(?P<v>{_WORD}(?:\s+{_WORD})?)")
_BEFORE_NAME = re.compile(rf"(?<![\w'-])(?P<v>{_WORD}(?:\s+{_WORD})?)\s+(?:and|&)\s+$")


def _names_next_to_names(text: str, spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Capitalised words joined by "and" to a name found by a cue ("Dr. Lee and Ruiz") are names too."""
    out: list[tuple[int, int, str]] = []
    for s, e, kind in spans:
        if kind != "NAME":
            continue
        after = _NEXT_TO_NAME.match(text, e)
        if after:
            out.extend((a, b, "NAME") for a, b in _trim_name(text, *after.span("v")))
        before = _BEFORE_NAME.search(text[max(0, s - 80):s])
        if before:
            off = max(0, s - 80)
            out.extend((a, b, "NAME") for a, b in _trim_name(text, off + before.start("v"), off + before.end("v")))
    return out


def _trim_name(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Split a name match into runs of words that are not in the stoplist."""
    runs: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    for m in re.finditer(r"[^\s,]+", text[start:end]):
        s, e = start + m.start(), start + m.end()
        word = m.group().rstrip(".")
        if word.title() in _NOT_NAMES or word in _NOT_NAMES:
            if cur:
                runs.append(cur)
            cur = None
            continue
        cur = (cur[0], e) if cur else (s, e)
    if cur:
        runs.append(cur)
    return runs


def deidentify(text: str, *, known_names: Sequence[str] = ()) -> Deidentified:
    """Replace the identifiers in ``text`` by typed placeholders.

    Args:
        text: a clinical note.
        known_names: names known to belong to this record (patient, relatives, clinicians);
            each is removed whole and word by word, in any capitalisation.

    Returns:
        ``Deidentified(text=..., spans=((start, end, kind), ...))``, spans sorted by start.

    Example:
        >>> deidentify("Mrs. Jane Roe, 92-year-old, seen 2019-03-12.").text
        'Mrs. [NAME], [AGE>89]-year-old, seen [DATE].'
    """
    if not isinstance(text, str):
        raise DataError(f"deidentify expects a note as str; got {type(text).__name__}.")
    found: list[tuple[int, int, str]] = []
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            s, e = m.span("v") if "v" in pattern.groupindex and m.group("v") is not None else m.span()
            while e > s and text[e - 1] in " \t,;:":
                e -= 1
            if e <= s:
                continue
            if kind == "NAME":
                found.extend((*_whole_tokens(text, a, b), kind) for a, b in _trim_name(text, s, e))
            elif kind in ("NAME_LC", "NAME_LC2"):
                found.extend((a, b, "NAME") for a, b in _lower_name_runs(text, s, e, whole=kind == "NAME_LC2"))
            else:
                found.append((s, e, kind))
    found.extend(_names_next_to_names(text, found))
    # Names: the ones supplied, and every word of a name found by a cue, wherever they recur.
    words: set[str] = set()
    for name in known_names:
        name = str(name).strip()
        if name:
            found.extend((m.start(), m.end(), "NAME") for m in re.finditer(rf"(?<!\w){re.escape(name)}(?!\w)", text, _I))
            words.update(w for w in _name_parts(name) if len(w.rstrip(".")) >= 2)
    words.update(w for s, e, k in found if k == "NAME" for w in _name_parts(text[s:e]) if len(w.rstrip(".")) >= 2)
    for w in words:
        w = w.rstrip(".")
        if w.title() in _NOT_NAMES:
            continue
        variants = {w, w.title(), w.upper()} if not w.isupper() else {w, w.title()}
        for v in variants:
            found.extend((m.start(), m.end(), "NAME") for m in re.finditer(rf"(?<![\w'-]){re.escape(v)}(?![\w'-])", text))
    spans = _resolve(found)
    out, last = [], 0
    for start, end, kind in spans:
        out.append(text[last:start])
        out.append(f"[{kind}]")
        last = end
    out.append(text[last:])
    return Deidentified(text="".join(out), spans=tuple(spans))


def _resolve(found: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Non-overlapping spans: the longest wins; on equal length, the more specific kind."""
    found = sorted(set(found), key=lambda s: (-(s[1] - s[0]), _PRIORITY[s[2]], s[0]))
    taken: list[tuple[int, int, str]] = []
    for s, e, k in found:
        if all(e <= ts or s >= te for ts, te, _ in taken):
            taken.append((s, e, k))
    taken.sort()
    # Adjacent pieces of one name ("John" + " " + "Smith") read better as one placeholder.
    merged: list[tuple[int, int, str]] = []
    for s, e, k in taken:
        if merged and merged[-1][2] == k == "NAME" and s - merged[-1][1] <= 1:
            merged[-1] = (merged[-1][0], e, k)
        else:
            merged.append((s, e, k))
    return merged
