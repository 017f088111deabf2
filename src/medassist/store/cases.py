"""The case store: imported cases in SQLite or PostgreSQL, PHI encrypted, looked up by any of
their identifiers, read back one case at a time or as one analysis frame.

Imports are idempotent (a case is keyed by data set + source system + source id, and a file by
its SHA-256: a second run adds nothing), transactional (one bundle or file is one transaction;
a bad record stops the import before anything is written and the error names the record and
field) and bulk (one executemany per table).

Two views: ``deidentified=True`` (researchers) shows case ids, ages (over 89 shown as 90) and
day offsets from the index date only; ``deidentified=False`` (clinicians) adds names, MRN, source
ids and dates. Notes are de-identified before they are stored, in both views.

Example:
    >>> store = CaseStore(db=open_database(settings), cipher=FieldCipher.from_settings(settings),
    ...                   hasher=IdentifierHasher.from_settings(settings))
    >>> summary = store.import_records(read_case_table("whas500").cases, source="whas500")
    >>> store.frame(dataset="whas500").columns[:3].tolist()
    ['time', 'event', 'age']
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time as _time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import pandas as pd
from sqlalchemy import func, insert, or_, select
from sqlalchemy.orm import Session

from medassist.data.case_records import CHILD_KINDS, SEXES, CaseRecord
from medassist.exceptions import ConfigError, DataError
from medassist.privacy.crypto import FieldCipher, IdentifierHasher
from medassist.store.case_models import (
    CHILD_TABLES,
    CaseCondition,
    CaseImport,
    CaseMedication,
    CaseNote,
    CaseObservation,
    CaseOutcome,
    CasePatient,
)
from medassist.store.db import Database
from medassist.store.models import table_of

DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
ICD10CM = re.compile(r"^[A-TV-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")
#: Columns of ``frame()`` that observations may not take (they are renamed ``obs_<code>``).
RESERVED = ("time", "event", "age", "sex", "conditions", "medications")
#: HIPAA Safe Harbor: ages over 89 are reported as 90 in the de-identified view.
AGE_CAP = 90.0
_CHUNK = 5000
_DAY = 86400.0


@dataclass
class ImportSummary:
    """What an import did. ``added`` counts rows per table; ``existing`` cases were already
    stored (same data set, source system and source id) and were left as they are."""

    dataset: str
    source_kind: str
    n_cases: int = 0
    n_added: int = 0
    n_existing: int = 0
    added: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    file_sha256: str | None = None
    already_imported: bool = False
    import_id: int | None = None
    seconds: float = 0.0

    @property
    def n_rows(self) -> int:
        return sum(self.added.values())

    @property
    def rows_per_s(self) -> float:
        return self.n_rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "dataset": self.dataset, "source_kind": self.source_kind, "cases_read": self.n_cases,
            "cases_added": self.n_added, "cases_existing": self.n_existing, "rows_added": self.n_rows,
            "added": self.added, "skipped": self.skipped, "file_sha256": self.file_sha256,
            "already_imported": self.already_imported, "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
        }


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _finite(x: float | None) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x))


class _Bad(Exception):
    def __init__(self, where: str, what: str) -> None:
        super().__init__(where, what)
        self.where, self.what = where, what


def _check_len(value: str | None, n: int, where: str) -> None:
    if value is not None and len(value) > n:
        raise _Bad(where, f"at most {n} characters, got {len(value)}")


def validate_case(case: CaseRecord) -> None:
    """Raise ``_Bad(field, expected)`` for the first field the store cannot keep as it is."""
    p = case.patient
    if not isinstance(p.source_id, str) or not p.source_id.strip():
        raise _Bad("patient.source_id", "a non-empty identifier")
    if not p.source_system or len(p.source_system) > 64:
        raise _Bad("patient.source_system", "a name of 1 to 64 characters")
    if p.sex not in SEXES:
        raise _Bad("patient.sex", f"one of {', '.join(SEXES)}, got {p.sex!r}")
    if p.age_years is not None and not (_finite(p.age_years) and 0 <= p.age_years <= 130):
        raise _Bad("patient.age_years", f"an age in years between 0 and 130, got {p.age_years!r}")
    for i, o in enumerate(case.outcomes):
        w = f"outcomes[{i}]"
        if not o.name or len(o.name) > 64:
            raise _Bad(f"{w}.name", "a name of 1 to 64 characters")
        if not (_finite(o.time_days) and o.time_days is not None and o.time_days >= 0):
            raise _Bad(f"{w}.time_days", f"a finite time in days >= 0, got {o.time_days!r}")
        if o.event not in (0, 1) or isinstance(o.event, bool):
            raise _Bad(f"{w}.event", f"0 (censored) or 1 (event), got {o.event!r}")
    for i, ob in enumerate(case.observations):
        w = f"observations[{i}]"
        if not ob.code:
            raise _Bad(f"{w}.code", "a non-empty code")
        _check_len(ob.code, 64, f"{w}.code")
        _check_len(ob.unit, 32, f"{w}.unit")
        _check_len(ob.category, 32, f"{w}.category")
        _check_len(ob.system, 128, f"{w}.system")
        if not _finite(ob.value):
            raise _Bad(f"{w}.value", f"a finite number, got {ob.value!r}")
        if ob.value is None and ob.text is None:
            raise _Bad(f"{w}.value", "a number or a text value, got neither")
    for i, c in enumerate(case.conditions):
        w = f"conditions[{i}]"
        if c.code is None and not c.text:
            raise _Bad(f"{w}.code", "a code or a text, got neither")
        if c.system == "ICD-10-CM" and c.code is not None and not ICD10CM.match(c.code):
            raise _Bad(f"{w}.code", f"an ICD-10-CM code such as 'I21.4', got {c.code!r}")
        _check_len(c.code, 16, f"{w}.code")
        _check_len(c.system, 32, f"{w}.system")
        _check_len(c.status, 32, f"{w}.status")
        _check_len(c.category, 32, f"{w}.category")
    for i, m in enumerate(case.medications):
        w = f"medications[{i}]"
        if not m.name:
            raise _Bad(f"{w}.name", "a medication name")
        if not _finite(m.dose):
            raise _Bad(f"{w}.dose", f"a finite number, got {m.dose!r}")
        for attr, n in (("code", 64), ("system", 128), ("dose_unit", 32), ("route", 64), ("kind", 16)):
            _check_len(getattr(m, attr), n, f"{w}.{attr}")
    for i, a in enumerate(case.adverse_events):
        if not a.term:
            raise _Bad(f"adverse_events[{i}].term", "the reported term")
        for attr, n in (("severity", 32), ("related", 32), ("outcome", 64)):
            _check_len(getattr(a, attr), n, f"adverse_events[{i}].{attr}")
    for i, e in enumerate(case.encounters):
        _check_len(e.kind, 32, f"encounters[{i}].kind")
    for i, note in enumerate(case.notes):
        if not isinstance(note.text, str):
            raise _Bad(f"notes[{i}].text", "text")
        _check_len(note.kind, 32, f"notes[{i}].kind")


def _day_offset(t: datetime | None, d: float | None, *, index: datetime | None) -> float | None:
    """A record's day offset: its own, else its time's distance in days from the index date."""
    if d is not None:
        return float(d)
    if t is None or index is None:
        return None
    return (_utc(t) - index).total_seconds() / _DAY


def _chunks(records: Iterable[CaseRecord], n: int) -> Iterator[list[CaseRecord]]:
    chunk: list[CaseRecord] = []
    for case in records:
        chunk.append(case)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _index_time(case: CaseRecord) -> datetime | None:
    """The case's index date: the patient's, else the earliest absolute time recorded."""
    if case.patient.index_date is not None:
        return _utc(case.patient.index_date)
    times = [getattr(r, a) for kind in CHILD_KINDS for r in getattr(case, kind)
             for a in ("time", "start", "onset") if getattr(r, a, None) is not None]
    return min((_utc(t) for t in times), default=None)


class CaseStore:
    """Cases in the database, with encrypted PHI and identifier lookup.

    Args:
        db: from ``medassist.store.db.open_database`` (migrated to ``0002`` or later).
        cipher: encrypts the PHI columns.
        hasher: keyed hashes of identifiers (source ids, MRNs) for lookup.
    """

    def __init__(self, *, db: Database, cipher: FieldCipher, hasher: IdentifierHasher) -> None:
        self.db = db
        self.cipher = cipher
        self.hasher = hasher

    @classmethod
    def from_settings(cls, settings) -> CaseStore:
        from medassist.store.db import open_database

        return cls(db=open_database(settings), cipher=FieldCipher.from_settings(settings),
                   hasher=IdentifierHasher.from_settings(settings))

    # ---------------------------------------------------------------------------------- import
    def import_records(
        self, records: Iterable[CaseRecord], *, source: str, source_kind: str = "records",
        file_sha256: str | None = None, skipped: dict[str, int] | None = None,
        progress: Callable[[int, int], None] | None = None, total: int | None = None,
    ) -> ImportSummary:
        """Store the cases of one bundle or file in one transaction.

        ``records`` may be a generator (a streaming reader's): it is consumed ``_CHUNK`` cases
        at a time, each chunk checked, then written; a bad record anywhere rolls the whole
        transaction back, so nothing of the import stays. Memory holds one chunk plus a keyed
        hash per case (to refuse the same patient twice in one import).

        Args:
            records: the cases (from a reader in ``medassist.data.io``).
            source: the data set they belong to (``whas500``, ``cdisc_pilot``, a bundle's name):
                lower-case letters, digits, ``_ . -``.
            source_kind: ``fhir``, ``sdtm``, ``table``, ``csv`` (recorded with the import).
            file_sha256: the content hash of the source file(s); content already imported is
                not imported again (and ``records`` is not read).
            skipped: what the reader left out (``{"Procedure": 2}``), recorded with the import;
                read once ``records`` is exhausted, so a streaming reader may still be counting.
            progress: called with (cases done, cases in total) after each chunk.
            total: how many cases ``records`` holds, for ``progress`` (default: ``len(records)``
                where it has one).

        Raises:
            DataError: a record the store cannot keep (nothing is written), naming it and the field.
        """
        t0 = _time.perf_counter()
        dataset = str(source).strip().lower()
        if not DATASET_NAME.match(dataset):
            raise ConfigError(f"Data set name {source!r}: expected 1-64 lower-case letters, digits, '_', '.' or '-'.")
        if total is None and isinstance(records, Sized):
            total = len(records)
        summary = ImportSummary(dataset=dataset, source_kind=source_kind, file_sha256=file_sha256)
        seen: dict[str, int] = {}
        with self.db.session(write=True) as s:
            if file_sha256 is not None:
                prior = s.scalar(select(CaseImport).where(CaseImport.file_sha256 == file_sha256))
                if prior is not None:
                    summary.already_imported, summary.import_id = True, prior.id
                    summary.n_cases = summary.n_existing = prior.n_cases if total is None else total
                    summary.skipped = dict(skipped or {})
                    summary.seconds = _time.perf_counter() - t0
                    return summary
            imp: CaseImport | None = None
            added: dict[str, int] = defaultdict(int)
            for chunk in _chunks(records, _CHUNK):
                keys = []
                for case in chunk:
                    i = summary.n_cases
                    summary.n_cases += 1
                    where = f"{dataset}: case #{i + 1} ({case.patient.source_system} {case.patient.source_id!s:.40})"
                    try:
                        validate_case(case)
                    except _Bad as e:
                        raise DataError(f"{where}: {e.where}: expected {e.what}. Nothing was imported.") from None
                    key = self.hasher.hash(dataset, case.patient.source_system, case.patient.source_id)
                    if key in seen:
                        raise DataError(f"{where}: the same patient as case #{seen[key] + 1} (one record per patient per "
                                        "import expected). Nothing was imported.")
                    seen[key] = i
                    keys.append(key)
                existing: set[str] = set()
                for j in range(0, len(keys), 500):
                    existing.update(s.scalars(select(CasePatient.source_key_hash)
                                              .where(CasePatient.source_key_hash.in_(keys[j:j + 500]))))
                new = [(c, k) for c, k in zip(chunk, keys, strict=True) if k not in existing]
                summary.n_existing += len(chunk) - len(new)
                if new:
                    if imp is None:
                        imp = CaseImport(dataset=dataset, source_kind=source_kind[:16], file_sha256=file_sha256)
                        s.add(imp)
                        s.flush()
                        summary.import_id = imp.id
                    self._insert_chunk(s, new, dataset=dataset, import_id=imp.id, added=added)
                    summary.n_added += len(new)
                if progress is not None:
                    progress(summary.n_cases, max(total or 0, summary.n_cases))
            summary.skipped = dict(skipped or {})
            summary.added = dict(added)
            summary.seconds = _time.perf_counter() - t0
            if imp is None:  # nothing to add: no import row either (a second run leaves the database as it was)
                return summary
            imp.n_cases, imp.n_rows, imp.seconds = summary.n_added, summary.n_rows, summary.seconds
            imp.counts = json.dumps({"added": summary.added, "skipped": summary.skipped, "existing": summary.n_existing})
        summary.seconds = _time.perf_counter() - t0
        return summary

    def _insert_chunk(self, s, chunk, *, dataset: str, import_id: int, added: dict[str, int]) -> None:
        enc, h = self.cipher.encrypt, self.hasher.hash
        patient_rows, prepared = [], []
        for case, key in chunk:
            p = case.patient
            index = _index_time(case)
            age = p.age_years
            if age is None and p.birth_date is not None and index is not None:
                age = round((index.date() - p.birth_date).days / 365.25, 2)
            death_day = float((p.death_date - index.date()).days) if p.death_date and index else None
            case_id = f"c{secrets.token_hex(8)}"
            patient_rows.append({
                "case_id": case_id, "dataset": dataset, "source_system": p.source_system, "source_key_hash": key,
                "source_id_hash": h(p.source_id), "mrn_hash": h(p.mrn) if p.mrn else None,
                "source_id_enc": enc(p.source_id), "mrn_enc": enc(p.mrn) if p.mrn else None,
                "name_enc": enc(p.name) if p.name else None,
                "birth_date_enc": enc(p.birth_date.isoformat()) if p.birth_date else None,
                "index_date_enc": enc(index.isoformat()) if index else None,
                "sex": p.sex, "age_years": age, "death_day": death_day, "import_id": import_id,
            })
            prepared.append((case, case_id, index))
        s.execute(insert(CasePatient), patient_rows)
        added["patients"] += len(patient_rows)
        ids = dict(s.execute(select(CasePatient.case_id, CasePatient.id).where(
            CasePatient.case_id.in_([r["case_id"] for r in patient_rows]))).all())
        rows: dict[str, list[dict]] = defaultdict(list)
        for case, case_id, index in prepared:
            pid = ids[case_id]
            day = partial(_day_offset, index=index)
            for e in case.encounters:
                rows["encounters"].append({"patient_id": pid, "kind": e.kind, "name": e.name,
                                           "start_day": day(e.start, e.start_day), "end_day": day(e.end, e.end_day)})
            for c in case.conditions:
                code = icd10_dotted(c.code) if c.system == "ICD-10-CM" and c.code else c.code
                rows["conditions"].append({"patient_id": pid, "code": code, "system": c.system, "text": c.text,
                                           "onset_day": day(c.onset, c.onset_day), "status": c.status,
                                           "category": c.category})
            for m in case.medications:
                rows["medications"].append({"patient_id": pid, "name": m.name, "code": m.code, "system": m.system,
                                            "dose": m.dose, "dose_unit": m.dose_unit, "route": m.route,
                                            "start_day": day(m.start, m.start_day), "end_day": day(m.end, m.end_day),
                                            "kind": m.kind})
            for o in case.observations:
                rows["observations"].append({"patient_id": pid, "code": o.code, "name": o.name, "system": o.system,
                                             "category": o.category, "value": o.value, "text": o.text,
                                             "unit": o.unit, "day": day(o.time, o.day)})
            for a in case.adverse_events:
                rows["adverse_events"].append({"patient_id": pid, "term": a.term, "decoded": a.decoded,
                                               "body_system": a.body_system, "severity": a.severity,
                                               "serious": a.serious, "related": a.related, "outcome": a.outcome,
                                               "start_day": day(a.start, a.start_day),
                                               "end_day": day(a.end, a.end_day)})
            for k, o in enumerate(case.outcomes):
                rows["outcomes"].append({"patient_id": pid, "name": o.name, "time_days": float(o.time_days),
                                         "event": int(o.event), "is_primary": bool(o.primary and k == _first_primary(case)),
                                         "description": o.description})
            for n in case.notes:
                clean, n_red = _deidentify(n.text, case.patient.name)
                rows["notes"].append({"patient_id": pid, "kind": n.kind, "day": day(n.time, n.day),
                                      "text_enc": enc(clean), "n_redacted": n_red})
        for kind in CHILD_KINDS:
            if rows[kind]:
                table = table_of(CHILD_TABLES[kind])
                for j in range(0, len(rows[kind]), 20_000):
                    s.execute(insert(table), rows[kind][j:j + 20_000])
                added[kind] += len(rows[kind])

    # ---------------------------------------------------------------------------------- lookup
    def resolve(self, identifier: str) -> str:
        """Our case id for ``identifier``: a case id, an MRN, a source id (FHIR ``Patient.id``,
        SDTM ``USUBJID``, a table's ID) or ``DATASET:SOURCE_ID``.

        Raises:
            DataError: no case, or several (the message lists their data sets).
        """
        ident = str(identifier).strip()
        if not ident:
            raise DataError("An empty case identifier was given (expected a case id, MRN or source id).")
        with self.db.session() as s:
            if s.scalar(select(CasePatient.id).where(CasePatient.case_id == ident)) is not None:
                return ident
            h = self.hasher.hash(ident)
            hits = s.execute(select(CasePatient.case_id, CasePatient.dataset).where(
                or_(CasePatient.source_id_hash == h, CasePatient.mrn_hash == h))).all()
            if not hits and ":" in ident:
                dataset, _, sid = ident.partition(":")
                hits = s.execute(select(CasePatient.case_id, CasePatient.dataset).where(
                    CasePatient.dataset == dataset.strip().lower(),
                    CasePatient.source_id_hash == self.hasher.hash(sid))).all()
        if not hits:
            raise DataError(f"No stored case has the identifier '{ident}' (case id, MRN, source id or DATASET:ID). "
                            "See: medassist cases list")
        if len({c for c, _ in hits}) > 1:
            sets = ", ".join(sorted({d for _, d in hits}))
            raise DataError(f"The identifier '{ident}' matches {len(hits)} cases (data sets: {sets}); "
                            f"give DATASET:{ident} or the case id.")
        return hits[0][0]

    # ---------------------------------------------------------------------------------- reading
    def _dec(self, token: str | None) -> str | None:
        return None if token is None else self.cipher.decrypt(token)

    @staticmethod
    def _patient(s: Session, case_id: str) -> CasePatient:
        """The patient row of a case id that :meth:`resolve` returned."""
        p = s.scalar(select(CasePatient).where(CasePatient.case_id == case_id))
        if p is None:  # removed since it was resolved
            raise DataError(f"No stored case has the case id '{case_id}'. See: medassist cases list")
        return p

    def _patient_view(self, p: CasePatient, *, deidentified: bool) -> dict[str, object]:
        age = p.age_years
        view: dict[str, object] = {
            "case_id": p.case_id, "dataset": p.dataset, "sex": p.sex,
            "age": (min(age, AGE_CAP) if deidentified else age) if age is not None else None,
            "death_day": p.death_day,
        }
        if not deidentified:
            view.update({
                "source_system": p.source_system, "source_id": self._dec(p.source_id_enc), "mrn": self._dec(p.mrn_enc),
                "name": self._dec(p.name_enc), "birth_date": self._dec(p.birth_date_enc),
                "index_date": self._dec(p.index_date_enc),
            })
        return view

    def count(self, *, dataset: str | None = None) -> int:
        with self.db.session() as s:
            q = select(func.count(CasePatient.id))
            if dataset is not None:
                q = q.where(CasePatient.dataset == dataset.strip().lower())
            return int(s.scalar(q) or 0)

    def datasets(self) -> dict[str, int]:
        """Stored data sets and how many cases each holds."""
        with self.db.session() as s:
            return dict(s.execute(select(CasePatient.dataset, func.count(CasePatient.id))
                                  .group_by(CasePatient.dataset).order_by(CasePatient.dataset)).all())

    def list_cases(self, *, dataset: str | None = None, limit: int = 50, offset: int = 0,
                   deidentified: bool = True) -> list[dict[str, object]]:
        """One summary per case (identity, primary outcome, record counts), in import order."""
        if limit < 1 or offset < 0:
            raise ConfigError(f"list_cases: limit must be >= 1 and offset >= 0; got limit={limit}, offset={offset}.")
        with self.db.session() as s:
            q = select(CasePatient).order_by(CasePatient.id).limit(limit).offset(offset)
            if dataset is not None:
                q = q.where(CasePatient.dataset == dataset.strip().lower())
            patients = list(s.scalars(q))
            pids = [p.id for p in patients]
            counts: dict[str, dict[int, int]] = {}
            for kind in ("conditions", "medications", "observations", "adverse_events", "notes"):
                cols = table_of(CHILD_TABLES[kind]).c
                counts[kind] = dict(s.execute(select(cols.patient_id, func.count(cols.id))
                                              .where(cols.patient_id.in_(pids)).group_by(cols.patient_id)).all())
            outcomes = {o.patient_id: o for o in s.scalars(select(CaseOutcome).where(
                CaseOutcome.patient_id.in_(pids), CaseOutcome.is_primary.is_(True)))}
        out = []
        for p in patients:
            view = self._patient_view(p, deidentified=deidentified)
            o = outcomes.get(p.id)
            view["outcome"] = None if o is None else {"name": o.name, "time_days": o.time_days, "event": o.event}
            view["counts"] = {k: counts[k].get(p.id, 0) for k in counts}
            out.append(view)
        return out

    def revision(self, dataset: str) -> tuple[int, int]:
        """``(cases, last import id)`` of ``dataset``: it changes whenever an import adds to it."""
        with self.db.session() as s:
            n, last = s.execute(select(func.count(CasePatient.id), func.max(CasePatient.import_id))
                                .where(CasePatient.dataset == dataset)).one()
        return int(n or 0), int(last or 0)

    def has_case(self, case_id: str) -> bool:
        """Whether a case with this case id (not any other identifier) is stored."""
        with self.db.session() as s:
            return s.scalar(select(CasePatient.id).where(CasePatient.case_id == case_id)) is not None

    def dataset_of(self, case_id: str) -> str | None:
        """The data set a stored case belongs to (None when there is no such case id)."""
        with self.db.session() as s:
            return s.scalar(select(CasePatient.dataset).where(CasePatient.case_id == case_id))

    def summaries(self, case_ids: list[str]) -> list[dict[str, object]]:
        """De-identified summaries (the shape of :meth:`list_cases`, with the condition count only)
        of the given cases, in that order; unknown case ids are left out."""
        if not case_ids:
            return []
        with self.db.session() as s:
            patients = {p.case_id: p for p in s.scalars(select(CasePatient).where(CasePatient.case_id.in_(case_ids)))}
            pids = [p.id for p in patients.values()]
            outcomes = {o.patient_id: o for o in s.scalars(select(CaseOutcome).where(
                CaseOutcome.patient_id.in_(pids), CaseOutcome.is_primary.is_(True)))}
            n_cond = dict(s.execute(select(CaseCondition.patient_id, func.count(CaseCondition.id))
                                    .where(CaseCondition.patient_id.in_(pids)).group_by(CaseCondition.patient_id)).all())
        out: list[dict[str, object]] = []
        for cid in case_ids:
            p = patients.get(cid)
            if p is None:
                continue
            o = outcomes.get(p.id)
            out.append({"case_id": p.case_id, "dataset": p.dataset, "sex": p.sex,
                        "age": None if p.age_years is None else min(p.age_years, AGE_CAP), "death_day": p.death_day,
                        "outcome": None if o is None else {"name": o.name, "time_days": o.time_days, "event": o.event},
                        "counts": {"conditions": n_cond.get(p.id, 0)}})
        return out

    def search_conditions(self, text: str, *, dataset: str | None = None, limit: int = 50, offset: int = 0) -> tuple[int, list[str]]:
        """Cases with a condition whose code starts with ``text`` or whose text contains it (case
        insensitive; ``%`` and ``_`` match themselves): ``(how many in all, this page's case ids in
        import order)``."""
        if limit < 1 or offset < 0:
            raise ConfigError(f"search_conditions: limit must be >= 1 and offset >= 0; got limit={limit}, offset={offset}.")
        pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        cond = or_(CaseCondition.code.ilike(f"{pattern}%", escape="\\"), CaseCondition.text.ilike(f"%{pattern}%", escape="\\"))
        base = select(CasePatient.id, CasePatient.case_id).join(CaseCondition, CaseCondition.patient_id == CasePatient.id).where(cond)
        if dataset:
            base = base.where(CasePatient.dataset == dataset)
        base = base.distinct()
        with self.db.session() as s:
            total = int(s.scalar(select(func.count()).select_from(base.subquery())) or 0)
            ids = [cid for _, cid in s.execute(base.order_by(CasePatient.id).limit(limit).offset(offset)).all()]
        return total, ids

    def get_case(self, identifier: str, *, deidentified: bool = True) -> dict[str, object]:
        """Everything stored about one case (``identifier``: any kind :meth:`resolve` accepts).

        Times are day offsets from the index date (``*_day``); the identified view adds dates.
        """
        case_id = self.resolve(identifier)
        with self.db.session() as s:
            p = self._patient(s, case_id)
            view = self._patient_view(p, deidentified=deidentified)
            index = (None if deidentified or p.index_date_enc is None
                     else datetime.fromisoformat(self.cipher.decrypt(p.index_date_enc)))
            day_cols = {"start_day", "end_day", "onset_day", "day"}
            for kind, model in CHILD_TABLES.items():
                items = []
                table = table_of(model)
                for r in s.scalars(select(model).where(table.c.patient_id == p.id).order_by(table.c.id)):
                    d = {c.name: getattr(r, c.key) for c in table.columns
                         if c.name not in ("id", "patient_id", "created_at", "text_enc")}
                    if isinstance(r, CaseNote):
                        d["text"] = self.cipher.decrypt(r.text_enc)
                    if kind == "outcomes":
                        d["primary"] = d.pop("is_primary")
                    if index is not None:
                        for col in day_cols & d.keys():
                            if d[col] is not None:
                                d[col.replace("_day", "") + "_at" if col != "day" else "at"] = (
                                    index + timedelta(days=d[col])).isoformat()
                    items.append(d)
                view[kind] = items
            if index is not None and p.death_day is not None:
                view["death_date"] = (index + timedelta(days=p.death_day)).date().isoformat()
        return view

    def add_note(self, case_id: str, text: str, *, kind: str = "progress", time: datetime | None = None,
                 day: float | None = None) -> int:
        """De-identify ``text`` (the patient's own names are redacted too) and store it; returns
        how many identifiers were redacted."""
        if not isinstance(text, str) or not text.strip():
            raise DataError("add_note: the note text is empty.")
        if len(kind) > 32:
            raise ConfigError(f"add_note: kind must be at most 32 characters; got {len(kind)}.")
        case_id = self.resolve(case_id)
        with self.db.session(write=True) as s:
            p = self._patient(s, case_id)
            clean, n_red = _deidentify(text, self._dec(p.name_enc))
            if day is None and time is not None and p.index_date_enc is not None:
                index = datetime.fromisoformat(self.cipher.decrypt(p.index_date_enc))
                day = (_utc(time) - index).total_seconds() / _DAY
            s.add(CaseNote(patient_id=p.id, kind=kind, day=day, text_enc=self.cipher.encrypt(clean), n_redacted=n_red))
        return n_red

    # ---------------------------------------------------------------------------------- frame
    def frame(self, *, dataset: str | None = None, deidentified: bool = True) -> pd.DataFrame:
        """One row per case, for case analysis (survival, similar cases, key factors).

        Layout (keep it: case analysis is built on exactly this):

        * index ``case_id`` (str);
        * ``time`` (float, days from the index date to the event or censoring) and ``event``
          (0/1; pandas nullable ``Int64``, ``<NA>`` where there is no outcome; ``time`` is NaN
          then) of the case's primary outcome;
        * ``age`` (float, years at the index date; over 89 shown as 90 when ``deidentified``),
          ``sex`` (``female``/``male``/``other``/``unknown``);
        * one column per observation code (labs, vitals, table covariates) holding the case's
          latest value: float for numeric observations (NaN where the case has none), str for
          categorical ones (None where the case has none); a code that clashes with a column above is ``obs_<code>``;
        * ``conditions``: the case's ICD-10-CM codes (dotted, ``I21.4``), sorted, ``;``-joined (``""`` if none);
        * ``medications``: the case's medication codes or names, sorted, ``;``-joined.

        No identifier or date is in the frame in either view; ``deidentified`` only caps ages.
        """
        with self.db.session() as s:
            q = select(CasePatient.id, CasePatient.case_id, CasePatient.age_years, CasePatient.sex).order_by(CasePatient.id)
            if dataset is not None:
                q = q.where(CasePatient.dataset == dataset.strip().lower())
            pats = pd.DataFrame(s.execute(q).all(), columns=["pid", "case_id", "age", "sex"])

            def child(model, *cols, where=()) -> pd.DataFrame:
                query = select(model.patient_id, *cols).where(*where)
                if dataset is not None:
                    query = query.join(CasePatient, CasePatient.id == model.patient_id).where(
                        CasePatient.dataset == dataset.strip().lower())
                res = s.execute(query)
                return pd.DataFrame(res.all(), columns=list(res.keys()))

            outc = child(CaseOutcome, CaseOutcome.time_days, CaseOutcome.event, where=(CaseOutcome.is_primary.is_(True),))
            obs = child(CaseObservation, CaseObservation.code, CaseObservation.value, CaseObservation.text,
                        CaseObservation.day, CaseObservation.id)
            cond = child(CaseCondition, CaseCondition.code,
                         where=(CaseCondition.system == "ICD-10-CM", CaseCondition.code.is_not(None)))
            meds = child(CaseMedication, CaseMedication.code, CaseMedication.name)
        out = pats.set_index("pid")
        outc = outc.drop_duplicates("patient_id").set_index("patient_id")
        out.insert(0, "event", outc["event"].reindex(out.index).astype("Int64"))
        out.insert(0, "time", outc["time_days"].reindex(out.index).astype(float))
        out["age"] = out["age"].astype(float)
        if deidentified:
            out["age"] = out["age"].clip(upper=AGE_CAP)
        if len(obs):
            obs["day"] = obs["day"].astype(float).fillna(-math.inf)
            obs = obs.sort_values(["patient_id", "code", "day", "id"])
            numeric = set(obs.loc[obs["value"].notna(), "code"])
            columns = {}
            for code, g in obs.groupby("code", sort=True):
                name = f"obs_{code}" if code in RESERVED or code == "case_id" else code
                if code in numeric:
                    last = g.loc[g["value"].notna()].groupby("patient_id")["value"].last()
                    columns[name] = last.reindex(out.index).astype(float)
                else:
                    last = g.loc[g["text"].notna()].groupby("patient_id")["text"].last()
                    col = last.reindex(out.index).astype(object)
                    columns[name] = col.where(col.notna(), None)
            out = pd.concat([out, pd.DataFrame(columns, index=out.index)], axis=1)
        out["conditions"] = _joined(cond, "code", out.index)
        if len(meds):
            meds["label"] = meds["code"].where(meds["code"].notna(), meds["name"])
        out["medications"] = _joined(meds, "label", out.index)
        out = out.set_index("case_id")
        out.index = out.index.astype(str)
        out.index.name = "case_id"
        return out


def icd10_dotted(code: str) -> str:
    """``R002`` -> ``R00.2`` (ICD-10-CM codes are stored upper-case, with the dot)."""
    code = code.strip().upper()
    return f"{code[:3]}.{code[3:]}" if len(code) > 3 and "." not in code else code


def _joined(df: pd.DataFrame, col: str, index: pd.Index) -> pd.Series:
    if not len(df):
        return pd.Series([""] * len(index), index=index, dtype=object)
    j = df.dropna(subset=[col]).groupby("patient_id")[col].agg(lambda v: ";".join(sorted(set(map(str, v)))))
    return j.reindex(index).fillna("").astype(object)


def _first_primary(case: CaseRecord) -> int:
    return next((k for k, o in enumerate(case.outcomes) if o.primary), -1)


def known_name_parts(name: str | None) -> list[str]:
    """The full name and each of its parts (what ``deidentify`` is told to redact)."""
    if not name:
        return []
    return [name, *[part for part in re.split(r"[\s,]+", name) if len(part) >= 2]]


def _deidentify(text: str, name: str | None) -> tuple[str, int]:
    from medassist.privacy.deid import deidentify

    result = deidentify(text, known_names=known_name_parts(name))
    return result.text, len(result.spans)
