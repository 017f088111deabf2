"""FHIR R4 Bundles (JSON) to case records, and back.

Read: Patient, Encounter, Condition, Observation, MedicationStatement, MedicationRequest, and
also AdverseEvent and DocumentReference (plain-text notes); every other resource type is
counted in ``ReadResult.skipped`` and left out. References are ``Patient/<id>`` or the
``fullUrl`` of the Patient entry. A malformed entry raises :class:`DataError` naming the entry
index, its resourceType and id, and the field.

Write: :func:`to_fhir_bundle` produces a ``collection`` Bundle the reader reads back to the same
records (tests round-trip it; the benchmark generates bundles from the bundled tables with it).
Facts without a standard R4 element travel as extensions under ``EXT``: the patient's index date
and age, study-day offsets, and time-to-event outcomes (an Observation coded in ``OUTCOME_SYSTEM``
with the time in days and an ``event`` component).

Example:
    >>> result = read_fhir_bundle("bundle.json")
    >>> result.cases[0].patient.source_id, result.skipped
    ('pat-1', {'Procedure': 2})
"""

from __future__ import annotations

import base64
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from contextlib import ExitStack
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from medassist.data.case_records import (
    CHILD_KINDS,
    AdverseEventRecord,
    CaseRecord,
    ConditionRecord,
    EncounterRecord,
    MedicationRecord,
    NoteRecord,
    ObservationRecord,
    OutcomeRecord,
    PatientRecord,
    ReadResult,
)
from medassist.exceptions import DataError
from medassist.fileio import atomic_path, write_atomic

EXT = "https://medassist.local/fhir/StructureDefinition"
OUTCOME_SYSTEM = "https://medassist.local/fhir/CodeSystem/outcome"
AGE_LOINC = "30525-0"
SYSTEMS = {
    "ICD-10-CM": "http://hl7.org/fhir/sid/icd-10-cm", "MedDRA": "http://terminology.hl7.org/CodeSystem/mdr",
    "LOINC": "http://loinc.org", "SNOMED CT": "http://snomed.info/sct",
    "RxNorm": "http://www.nlm.nih.gov/research/umls/rxnorm", "WHODrug": "http://www.who-umc.org/drug-dictionary",
}
_LABELS = {v: k for k, v in SYSTEMS.items()}
READ_TYPES = ("Patient", "Encounter", "Condition", "Observation", "MedicationStatement", "MedicationRequest",
              "AdverseEvent", "DocumentReference")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class _Bad(Exception):
    def __init__(self, field: str, what: str) -> None:
        super().__init__(field, what)
        self.field, self.what = field, what


# ------------------------------------------------------------------------------------- reading
def _dt(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad(field, f"an ISO 8601 date/time string, got {value!r}")
    if re.match(r"^\d{4}(-\d{2})?$", value):  # a partial date (YYYY or YYYY-MM): no exact time to keep
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Bad(field, f"an ISO 8601 date/time, got {value!r}") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _date(value: Any, field: str) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.match(r"^\d{4}(-\d{2}(-\d{2})?)?$", value):
        raise _Bad(field, f"a FHIR date (YYYY-MM-DD), got {value!r}")
    if not _DATE.match(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _Bad(field, f"a real calendar date, got {value!r}") from None


def _num(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(field, f"a number, got {value!r}")
    return float(value)


def _exts(res: dict) -> dict[str, Any]:
    out = {}
    for e in res.get("extension") or ():
        url = e.get("url", "") if isinstance(e, dict) else ""
        if url.startswith(EXT + "/"):
            out[url[len(EXT) + 1:]] = next((v for k, v in e.items() if k.startswith("value")), None)
    return out


def _concept(cc: Any, field: str) -> tuple[str | None, str | None, str | None, str | None]:
    """(code, system label, display, text) of a CodeableConcept's first coding."""
    if cc is None:
        return None, None, None, None
    if not isinstance(cc, dict):
        raise _Bad(field, "a CodeableConcept object")
    codings = cc.get("coding") or []
    if not isinstance(codings, list):
        raise _Bad(f"{field}.coding", "a list of codings")
    first = codings[0] if codings else {}
    system = first.get("system")
    label = _LABELS.get(system, system) if isinstance(system, str) else system
    return first.get("code"), label, first.get("display"), cc.get("text")


def _subject(res: dict, refs: dict[str, str]) -> str:
    ref = (res.get("subject") or res.get("patient") or {}).get("reference") if isinstance(
        res.get("subject") or res.get("patient"), dict) else None
    if not isinstance(ref, str) or not ref:
        raise _Bad("subject.reference", "a reference to a Patient of this bundle (Patient/<id>)")
    pid = refs.get(ref) or (ref.split("/", 1)[1] if ref.startswith("Patient/") else None)
    if pid is None:
        raise _Bad("subject.reference", f"a reference to a Patient of this bundle, got {ref!r}")
    return pid


def _patient(res: dict) -> PatientRecord:
    pid = res.get("id")
    if not isinstance(pid, str) or not pid:
        raise _Bad("id", "the Patient's logical id")
    mrn = None
    for ident in res.get("identifier") or ():
        codes = [c.get("code") for c in ((ident.get("type") or {}).get("coding") or ())]
        if "MR" in codes or "mrn" in str(ident.get("system", "")).lower():
            mrn = ident.get("value")
            break
    name = None
    names = res.get("name") or []
    if names:
        n = names[0]
        if not isinstance(n, dict):
            raise _Bad("name[0]", "a HumanName object")
        name = n.get("text") or " ".join([*(n.get("given") or []), n.get("family") or ""]).strip() or None
    sex = res.get("gender", "unknown")
    if sex not in ("female", "male", "other", "unknown"):
        raise _Bad("gender", f"female, male, other or unknown, got {sex!r}")
    ext = _exts(res)
    age = ext.get("age-years")
    deceased = res.get("deceasedBoolean")
    if deceased is not None and not isinstance(deceased, bool):
        raise _Bad("deceasedBoolean", f"true or false, got {deceased!r}")
    return PatientRecord(
        source_system=str((res.get("meta") or {}).get("source") or "fhir")[:64], source_id=pid, mrn=mrn, name=name,
        birth_date=_date(res.get("birthDate"), "birthDate"), sex=sex,
        death_date=(d.date() if (d := _dt(res.get("deceasedDateTime"), "deceasedDateTime")) else None),
        index_date=_dt(ext.get("index-date"), "extension[index-date]"),
        age_years=None if age is None else _num(age, "extension[age-years]"), deceased=deceased,
    )


def _day(ext: dict, key: str = "day") -> float | None:
    v = ext.get(key)
    return None if v is None else _num(v, f"extension[{key}]")


def _quantity(res: dict) -> tuple[float, str | None]:
    """(value, unit) of ``res["valueQuantity"]``."""
    q = res["valueQuantity"]
    if not isinstance(q, dict) or "value" not in q:
        raise _Bad("valueQuantity.value", "a number")
    return _num(q["value"], "valueQuantity.value"), q.get("unit") or q.get("code")


def _value(res: dict) -> tuple[float | None, str | None, str | None]:
    if "valueQuantity" in res:
        value, unit = _quantity(res)
        return value, None, unit
    if "valueInteger" in res:
        return _num(res["valueInteger"], "valueInteger"), None, None
    if "valueString" in res:
        return None, str(res["valueString"]), None
    if "valueBoolean" in res:
        return None, "true" if res["valueBoolean"] else "false", None
    if "valueCodeableConcept" in res:
        code, _, display, text = _concept(res["valueCodeableConcept"], "valueCodeableConcept")
        return None, text or display or code, None
    raise _Bad("value[x]", "valueQuantity, valueInteger, valueString, valueBoolean or valueCodeableConcept")


def _add(rt: str, res: dict, parts: dict[str, list], skipped: dict[str, int]) -> float | None:
    """Convert one resource of a read type other than Patient into ``parts[kind]``.

    Returns the patient's age when ``res`` is an age Observation (LOINC 30525-0), else None.
    """
    ext = _exts(res)
    rid = res.get("id")
    if rt == "Encounter":
        cls = res.get("class") or {}
        period = res.get("period") or {}
        name = ((res.get("type") or [{}])[0] or {}).get("text") if res.get("type") else None
        parts["encounters"].append(EncounterRecord(
            source_id=rid, kind=str(cls.get("code") or "ambulatory")[:32], name=name,
            start=_dt(period.get("start"), "period.start"), end=_dt(period.get("end"), "period.end"),
            start_day=_day(ext, "start-day"), end_day=_day(ext, "end-day")))
    elif rt == "Condition":
        code, system, display, text = _concept(res.get("code"), "code")
        if code is None and not (text or display):
            raise _Bad("code", "a coding or a text")
        status, _, _, _ = _concept(res.get("clinicalStatus"), "clinicalStatus")
        cat = (res.get("category") or [None])[0]
        category, _, _, _ = _concept(cat, "category[0]")
        parts["conditions"].append(ConditionRecord(
            code=code, system=system or "local", text=text or display,
            onset=_dt(res.get("onsetDateTime"), "onsetDateTime"), onset_day=_day(ext, "onset-day"),
            status=status or "unknown", category=category or "problem-list-item"))
    elif rt == "Observation":
        code, system, display, text = _concept(res.get("code"), "code")
        if not code:
            raise _Bad("code.coding[0].code", "an observation code")
        if system == OUTCOME_SYSTEM:
            if "valueQuantity" not in res:
                raise _Bad("valueQuantity", "the time to event in days")
            t, _ = _quantity(res)
            comps = {((c.get("code") or {}).get("coding") or [{}])[0].get("code"): c
                     for c in res.get("component") or ()}
            if "event" not in comps or "valueInteger" not in comps["event"]:
                raise _Bad("component[event].valueInteger", "0 (censored) or 1 (event)")
            parts["outcomes"].append(OutcomeRecord(
                name=code, time_days=t, event=comps["event"]["valueInteger"],
                primary=bool((comps.get("primary") or {}).get("valueBoolean", True)), description=text))
            return None
        if "dataAbsentReason" in res and not any(k.startswith("value") for k in res):
            skipped["Observation without a value"] += 1
            return None
        value, txt, unit = _value(res)
        if system == "LOINC" and code == AGE_LOINC and value is not None:
            return value
        cat = (res.get("category") or [None])[0]
        category, _, _, _ = _concept(cat, "category[0]")
        parts["observations"].append(ObservationRecord(
            code=code, name=text or display, system=system or "local", value=value, text=txt,
            unit=unit or ext.get("unit"),
            time=_dt(res.get("effectiveDateTime"), "effectiveDateTime"), day=_day(ext),
            category=category or "laboratory"))
    elif rt in ("MedicationStatement", "MedicationRequest"):
        code, system, display, text = _concept(res.get("medicationCodeableConcept"), "medicationCodeableConcept")
        name = text or display or code
        if not name:
            raise _Bad("medicationCodeableConcept", "a medication code or text")
        dosages = res.get("dosage" if rt == "MedicationStatement" else "dosageInstruction") or [{}]
        dosage = dosages[0] if isinstance(dosages, list) and dosages else {}
        dq = ((dosage.get("doseAndRate") or [{}])[0] or {}).get("doseQuantity") or {}
        period = res.get("effectivePeriod") or {}
        start = period.get("start") if rt == "MedicationStatement" else res.get("authoredOn")
        parts["medications"].append(MedicationRecord(
            name=name, code=code, system=system,
            dose=None if dq.get("value") is None else _num(dq["value"], "dosage[0].doseAndRate[0].doseQuantity.value"),
            dose_unit=dq.get("unit"), route=(dosage.get("route") or {}).get("text"),
            start=_dt(start, "effectivePeriod.start"), start_day=_day(ext, "start-day"),
            end=_dt(period.get("end"), "effectivePeriod.end"), end_day=_day(ext, "end-day"),
            kind="statement" if rt == "MedicationStatement" else "request"))
    elif rt == "AdverseEvent":
        code, _, display, text = _concept(res.get("event"), "event")
        term = text or display or code
        if not term:
            raise _Bad("event", "the adverse event's term")
        sev, _, _, _ = _concept(res.get("severity"), "severity")
        ser, _, _, _ = _concept(res.get("seriousness"), "seriousness")
        _, _, out_display, out_text = _concept(res.get("outcome"), "outcome")
        parts["adverse_events"].append(AdverseEventRecord(
            term=term, decoded=display, body_system=ext.get("body-system"),
            severity=sev, serious=None if ser is None else ser == "serious", related=ext.get("related"),
            outcome=out_text or out_display, start=_dt(res.get("date"), "date"),
            start_day=_day(ext, "start-day"), end=_dt(ext.get("end"), "extension[end]"),
            end_day=_day(ext, "end-day")))
    elif rt == "DocumentReference":
        att = ((res.get("content") or [{}])[0] or {}).get("attachment") or {}
        if "data" not in att:
            raise _Bad("content[0].attachment.data", "the note as base64 text")
        try:
            text = base64.b64decode(att["data"], validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise _Bad("content[0].attachment.data", "base64-encoded UTF-8 text") from None
        _, _, display, ttext = _concept(res.get("type"), "type")
        parts["notes"].append(NoteRecord(text=text, kind=(ttext or display or "note")[:32],
                                         time=_dt(res.get("date"), "date"), day=_day(ext)))
    return None


def _case(p: PatientRecord, parts: dict[str, list], age: float | None) -> CaseRecord:
    if age is not None and p.age_years is None:
        p = PatientRecord(**{**p.__dict__, "age_years": age})
    children: dict[str, Any] = {k: tuple(parts.get(k, ())) for k in CHILD_KINDS}
    case = CaseRecord(patient=p, **children)
    if not case.outcomes and (derived := derived_death_outcome(case)) is not None:
        case = CaseRecord(**{**{k: getattr(case, k) for k in ("patient", *CHILD_KINDS)}, "outcomes": (derived,)})
    return case


#: How a derived outcome says where it came from (shown with the outcome in the case view).
DERIVED = "derived from Patient.deceased and last record date"


def derived_death_outcome(case: CaseRecord) -> OutcomeRecord | None:
    """Death as a time-to-event outcome, derived from what the records say, or None.

    Only where the Patient says whether they died (``deceasedDateTime`` or ``deceasedBoolean``):
    an unrecorded vital status is never read as "alive". The event is the death; the time runs
    from the index date (the patient's, else the earliest record) to the death date, or, when
    the patient is alive (censored) or died on an unrecorded date, to the latest encounter or
    observation. None when there are no dates to measure that by, or they run backwards.
    """
    p = case.patient
    died = p.death_date is not None or p.deceased is True
    if not died and p.deceased is None:
        return None
    index = p.index_date or min((t for kind in CHILD_KINDS for r in getattr(case, kind)
                                 for a in ("time", "start", "onset") if (t := getattr(r, a, None)) is not None), default=None)
    last_at = [t for e in case.encounters for t in (e.start, e.end) if t is not None]
    last_at += [o.time for o in case.observations if o.time is not None]
    last_day = [d for e in case.encounters for d in (e.start_day, e.end_day) if d is not None]
    last_day += [o.day for o in case.observations if o.day is not None]
    if p.death_date is not None and index is not None:
        t, how = float((p.death_date - index.date()).days), "death date"
    elif index is not None and last_at:
        t, how = (max(last_at) - index).total_seconds() / 86400.0, "last record date"
    elif last_day:
        t, how = float(max(last_day)), "last record day"
    else:
        return None
    if t < 0:
        return None
    detail = ("died, time to the death date" if how == "death date" else
              "died on an unrecorded date, time to the last record" if died else "alive, censored at the last record")
    return OutcomeRecord(name="death", time_days=round(t, 3), event=int(died), primary=True,
                         description=f"{DERIVED}: {detail}")


def _entry_error(loc: str, res: Any, e: Exception) -> DataError:
    """``loc`` ('bundle.json: entry 3', 'Observation.ndjson: line 7') with the resource and the field."""
    rt = res.get("resourceType") if isinstance(res, dict) else None
    rid = res.get("id") if isinstance(res, dict) else None
    head = f"{loc} ({rt if isinstance(rt, str) else 'no resourceType'} {rid or '(no id)'})"
    if isinstance(e, _Bad):
        return DataError(f"{head}: {e.field}: expected {e.what}.")
    return DataError(f"{head}: malformed ({e}).")


#: What a malformed resource raises inside the converters (turned into a DataError naming it).
_MALFORMED = (_Bad, AttributeError, TypeError, IndexError)


def read_fhir_bundle(bundle: str | Path | dict, *, source: str | None = None) -> ReadResult:
    """Read a FHIR R4 Bundle (a JSON file or the parsed dict) into one case per Patient.

    A file is read as a stream (see :mod:`medassist.data.io.fhir_stream`, which also reads
    NDJSON bulk exports); only the cases it returns are held in memory. To import a large file
    without holding its cases either, iterate :func:`~medassist.data.io.fhir_stream.open_fhir`.

    Raises:
        DataFileNotFoundError: no such file. DataError: not a Bundle, or an entry with a bad or
        missing field: the message names the entry index, resourceType, id and field.
    """
    if not isinstance(bundle, dict):
        from medassist.data.io.fhir_stream import open_fhir

        with open_fhir(bundle, source=source) as src:
            cases = tuple(src.cases())
            return ReadResult(cases=cases, skipped=dict(src.skipped), source=src.where, sha256=src.sha256)
    doc, where = bundle, source or "bundle"
    if doc.get("resourceType") != "Bundle":
        raise DataError(f"{where}: expected a FHIR Bundle (resourceType 'Bundle'), got {doc.get('resourceType')!r}.")
    entries = doc.get("entry") or []
    if not isinstance(entries, list):
        raise DataError(f"{where}: Bundle.entry must be a list.")
    patients: dict[str, PatientRecord] = {}
    refs: dict[str, str] = {}
    parts: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    age_obs: dict[str, float] = {}
    skipped: dict[str, int] = defaultdict(int)
    # Patients first, so other resources may come before their Patient in the bundle.
    order = sorted(range(len(entries)), key=lambda i: not (isinstance(entries[i], dict) and isinstance(
        entries[i].get("resource"), dict) and entries[i]["resource"].get("resourceType") == "Patient"))
    for i in order:
        entry = entries[i]
        res = entry.get("resource") if isinstance(entry, dict) else None
        rt = res.get("resourceType") if isinstance(res, dict) else None
        try:
            if not isinstance(res, dict) or not isinstance(rt, str):
                raise _Bad("resource", "an object with a resourceType")
            if rt not in READ_TYPES:
                skipped[rt] += 1
                continue
            if rt == "Patient":
                p = _patient(res)
                if p.source_id in patients:
                    raise _Bad("id", f"a Patient id unique in the bundle; '{p.source_id}' appears twice")
                patients[p.source_id] = p
                if isinstance(entry.get("fullUrl"), str):
                    refs[entry["fullUrl"]] = p.source_id
                refs[f"Patient/{p.source_id}"] = p.source_id
                continue
            pid = _subject(res, refs)
            if pid not in patients:
                raise _Bad("subject.reference", f"a Patient of this bundle, got 'Patient/{pid}'")
            age = _add(rt, res, parts[pid], skipped)
            if age is not None:
                age_obs[pid] = age
        except _MALFORMED as e:
            raise _entry_error(f"{where}: entry {i}", res, e) from None
    cases = tuple(_case(p, parts.get(pid, {}), age_obs.get(pid)) for pid, p in patients.items())
    return ReadResult(cases=cases, skipped=dict(skipped), source=where, sha256=None)


# ------------------------------------------------------------------------------------- writing
def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _cc(code: str | None, system: str | None, text: str | None = None, display: str | None = None) -> dict:
    coding = {k: v for k, v in (("system", SYSTEMS.get(system, system) if system else None), ("code", code),
                                ("display", display)) if v is not None}
    out: dict[str, Any] = {"coding": [coding]} if coding else {}
    if text is not None:
        out["text"] = text
    return out


def _ext(**values: Any) -> list[dict]:
    out = []
    for key, v in values.items():
        if v is None:
            continue
        kind = "valueDecimal" if isinstance(v, float) else "valueDateTime" if key in ("index-date", "end") else "valueString"
        out.append({"url": f"{EXT}/{key.replace('_', '-')}", kind: v})
    return out


def _put(res: dict, **items: Any) -> dict:
    res.update({k: v for k, v in items.items() if v not in (None, [], {})})
    return res


def to_fhir_bundle(records: list[CaseRecord] | tuple[CaseRecord, ...]) -> dict:
    """A FHIR R4 ``collection`` Bundle holding ``records`` (what :func:`read_fhir_bundle` reads back)."""
    entries: list[dict] = []

    def add(res: dict) -> None:
        entries.append({"fullUrl": f"{res['resourceType']}/{res['id']}", "resource": res})

    for case in records:
        p = case.patient
        if not _FHIR_ID.match(p.source_id):
            raise DataError(f"to_fhir_bundle: patient id {p.source_id!r} is not a FHIR id ([A-Za-z0-9-.], 1-64).")
        pid = p.source_id
        add(_put({"resourceType": "Patient", "id": pid}, meta={"source": p.source_system},
                 identifier=[{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                              "value": p.mrn}] if p.mrn else None,
                 name=[{"text": p.name}] if p.name else None, gender=p.sex,
                 birthDate=p.birth_date.isoformat() if p.birth_date else None,
                 deceasedDateTime=p.death_date.isoformat() if p.death_date else None,
                 deceasedBoolean=p.deceased if p.death_date is None else None,
                 extension=_ext(**{"index-date": _iso(p.index_date), "age-years": p.age_years})))
        subject = {"reference": f"Patient/{pid}"}
        for k, e in enumerate(case.encounters):
            add(_put({"resourceType": "Encounter", "id": e.source_id or f"{pid}-enc-{k}", "status": "finished",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": e.kind},
                      "subject": subject}, type=[{"text": e.name}] if e.name else None,
                     period=_put({}, start=_iso(e.start), end=_iso(e.end)),
                     extension=_ext(start_day=e.start_day, end_day=e.end_day)))
        for k, c in enumerate(case.conditions):
            add(_put({"resourceType": "Condition", "id": f"{pid}-cond-{k}", "subject": subject,
                      "code": _cc(c.code, c.system, c.text),
                      "category": [_cc(c.category, "http://terminology.hl7.org/CodeSystem/condition-category")]},
                     clinicalStatus=None if c.status == "unknown" else _cc(
                         c.status, "http://terminology.hl7.org/CodeSystem/condition-clinical"),
                     onsetDateTime=_iso(c.onset), extension=_ext(onset_day=c.onset_day)))
        for k, m in enumerate(case.medications):
            rt = "MedicationStatement" if m.kind == "statement" else "MedicationRequest"
            dose = _put({}, doseAndRate=[{"doseQuantity": _put({}, value=m.dose, unit=m.dose_unit)}] if (
                m.dose is not None or m.dose_unit) else None, route={"text": m.route} if m.route else None)
            res = {"resourceType": rt, "id": f"{pid}-med-{k}", "subject": subject,
                   "status": "recorded" if rt == "MedicationStatement" else "completed",
                   "medicationCodeableConcept": _cc(m.code, m.system, m.name)}
            if rt == "MedicationStatement":
                res["status"] = "completed"
                _put(res, dosage=[dose] if dose else None, effectivePeriod=_put({}, start=_iso(m.start), end=_iso(m.end)))
            else:
                res["intent"] = "order"
                _put(res, dosageInstruction=[dose] if dose else None, authoredOn=_iso(m.start),
                     effectivePeriod=_put({}, end=_iso(m.end)))
            add(_put(res, extension=_ext(start_day=m.start_day, end_day=m.end_day)))
        for k, o in enumerate(case.observations):
            value: dict[str, Any] = ({"valueQuantity": _put({"value": o.value}, unit=o.unit)} if o.value is not None
                                     else {"valueString": o.text})
            add(_put({"resourceType": "Observation", "id": f"{pid}-obs-{k}", "status": "final", "subject": subject,
                      "category": [_cc(o.category, "http://terminology.hl7.org/CodeSystem/observation-category")],
                      "code": _cc(o.code, o.system, o.name), **value},
                     effectiveDateTime=_iso(o.time),
                     extension=_ext(day=o.day, unit=o.unit if o.value is None else None)))
        for k, a in enumerate(case.adverse_events):
            add(_put({"resourceType": "AdverseEvent", "id": f"{pid}-ae-{k}", "actuality": "actual", "subject": subject,
                      "event": _put({"text": a.term}, coding=[{"display": a.decoded}] if a.decoded else None)},
                     severity=_cc(a.severity, "http://terminology.hl7.org/CodeSystem/adverse-event-severity") if a.severity else None,
                     seriousness=None if a.serious is None else _cc(
                         "serious" if a.serious else "non-serious",
                         "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness"),
                     outcome={"text": a.outcome} if a.outcome else None, date=_iso(a.start),
                     extension=_ext(body_system=a.body_system, related=a.related, end=_iso(a.end),
                                    start_day=a.start_day, end_day=a.end_day)))
        for k, oc in enumerate(case.outcomes):
            add(_put({"resourceType": "Observation", "id": f"{pid}-outcome-{k}", "status": "final", "subject": subject,
                      "code": _cc(oc.name, OUTCOME_SYSTEM, oc.description),
                      "valueQuantity": {"value": float(oc.time_days), "unit": "d", "system": "http://unitsofmeasure.org",
                                        "code": "d"},
                      "component": [
                          {"code": _cc("event", OUTCOME_SYSTEM), "valueInteger": int(oc.event)},
                          {"code": _cc("primary", OUTCOME_SYSTEM), "valueBoolean": bool(oc.primary)},
                      ]}))
        for k, n in enumerate(case.notes):
            add(_put({"resourceType": "DocumentReference", "id": f"{pid}-note-{k}", "status": "current",
                      "subject": subject, "type": {"text": n.kind},
                      "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                                  "data": base64.b64encode(n.text.encode("utf-8")).decode("ascii")}}]},
                     date=_iso(n.time), extension=_ext(day=n.day)))
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def write_fhir_bundle(records, path: str | Path) -> Path:
    """Write :func:`to_fhir_bundle` of ``records`` to ``path`` atomically (temp file, then rename)."""
    return write_atomic(Path(path), json.dumps(to_fhir_bundle(records), separators=(",", ":")))


def write_fhir_ndjson(records: Iterable[CaseRecord], folder: str | Path) -> dict[str, int]:
    """Write ``records`` as a FHIR bulk-data export: one ``<resourceType>.ndjson`` per type in
    ``folder``, one resource per line, streamed case by case (any iterable, any length).

    Each file is written under a temporary name and renamed when every case is written.
    Returns resources written per type.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    counts: dict[str, int] = defaultdict(int)
    with ExitStack() as stack:  # on an error every temporary file is removed; else all are renamed
        for case in records:
            for entry in to_fhir_bundle([case])["entry"]:
                rt = entry["resource"]["resourceType"]
                if rt not in files:
                    tmp = stack.enter_context(atomic_path(folder / f"{rt}.ndjson"))
                    files[rt] = stack.enter_context(tmp.open("w", encoding="utf-8"))
                files[rt].write(json.dumps(entry["resource"], separators=(",", ":")) + "\n")
                counts[rt] += 1
    return dict(counts)
