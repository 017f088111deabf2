"""Neutral records of one imported case: what every reader in ``data/io`` produces and the case
store (``medassist.store.cases``) persists.

A reader turns a FHIR bundle, CDISC SDTM domains or a survival table into :class:`CaseRecord`\\ s;
nothing here touches a database. Times are either absolute (``time``, timezone-aware UTC
``datetime``) or a day offset from the patient's index date (``day``), or both; table data
sets carry neither (baseline values). ``OutcomeRecord.time_days`` is always a duration in days
from the index date, with ``event`` 1 (the event happened) or 0 (censored).

Example:
    >>> case = CaseRecord(patient=PatientRecord(source_system="table:whas500", source_id="1", age_years=83.0),
    ...                   outcomes=(OutcomeRecord(name="death", time_days=2178.0, event=0),))
    >>> case.patient.key
    ('table:whas500', '1')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

#: FHIR administrative gender codes; readers map their source's codes onto these.
SEXES = ("female", "male", "other", "unknown")


@dataclass(frozen=True, kw_only=True)
class PatientRecord:
    """Who the case is about. ``source_system`` + ``source_id`` identify the case in its source
    (FHIR ``Patient.id``, SDTM ``USUBJID``, a table's ID column); names, MRN, dates and source ids
    are PHI and stored encrypted.

    ``index_date`` is the case's reference date (SDTM ``RFSTDTC``, the first FHIR encounter);
    ``age_years`` is the age at that date when the source gives an age and no birth date.
    ``deceased`` is FHIR ``Patient.deceasedBoolean`` as recorded (None when the source does not
    say; a ``death_date`` says the patient died whatever it holds).
    """

    source_system: str
    source_id: str
    mrn: str | None = None
    name: str | None = None
    birth_date: date | None = None
    sex: str = "unknown"
    death_date: date | None = None
    index_date: datetime | None = None
    age_years: float | None = None
    deceased: bool | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.source_system, self.source_id)


@dataclass(frozen=True, kw_only=True)
class EncounterRecord:
    """A visit or stay: ``kind`` is an encounter class (``ambulatory``, ``inpatient``...), ``name``
    the visit's name. ``source_id`` (the FHIR Encounter.id) is kept for reference only."""

    source_id: str | None = field(default=None, compare=False)
    kind: str = "ambulatory"
    name: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    start_day: float | None = None
    end_day: float | None = None


@dataclass(frozen=True, kw_only=True)
class ConditionRecord:
    """A diagnosis: ``code`` in ``system`` (``ICD-10-CM`` where known; ``MedDRA`` or ``local``
    otherwise) with its text; ``status`` is a FHIR clinical status (``active``, ``resolved``, ...)."""

    code: str | None = None
    system: str = "ICD-10-CM"
    text: str | None = None
    onset: datetime | None = None
    onset_day: float | None = None
    status: str = "active"
    category: str = "problem-list-item"


@dataclass(frozen=True, kw_only=True)
class MedicationRecord:
    """A drug taken or prescribed (``kind`` = ``statement`` or ``request``)."""

    name: str
    code: str | None = None
    system: str | None = None
    dose: float | None = None
    dose_unit: str | None = None
    route: str | None = None
    start: datetime | None = None
    start_day: float | None = None
    end: datetime | None = None
    end_day: float | None = None
    kind: str = "statement"


@dataclass(frozen=True, kw_only=True)
class ObservationRecord:
    """A lab value, vital sign or baseline covariate: numeric (``value``) or categorical (``text``).

    ``category`` is a FHIR observation category (``laboratory``, ``vital-signs``, ``exam``...);
    baseline covariates of survival tables use ``covariate``.
    """

    code: str
    name: str | None = None
    system: str = "local"
    value: float | None = None
    text: str | None = None
    unit: str | None = None
    time: datetime | None = None
    day: float | None = None
    category: str = "laboratory"


@dataclass(frozen=True, kw_only=True)
class AdverseEventRecord:
    """An adverse event (SDTM AE): reported and coded term, severity, seriousness, outcome."""

    term: str
    decoded: str | None = None
    body_system: str | None = None
    severity: str | None = None
    serious: bool | None = None
    related: str | None = None
    outcome: str | None = None
    start: datetime | None = None
    start_day: float | None = None
    end: datetime | None = None
    end_day: float | None = None


@dataclass(frozen=True, kw_only=True)
class OutcomeRecord:
    """A time-to-event outcome: ``time_days`` from the index date to the event or to censoring;
    ``event`` 1 if it happened, 0 if censored. The first outcome of a case marked ``primary``
    is the one case analysis uses."""

    name: str
    time_days: float
    event: int
    primary: bool = True
    description: str | None = None


@dataclass(frozen=True, kw_only=True)
class NoteRecord:
    """Free text about the case (``kind``: ``progress``, ``discharge``, ...). De-identified
    before it is stored."""

    text: str
    kind: str = "progress"
    time: datetime | None = None
    day: float | None = None


@dataclass(frozen=True, kw_only=True)
class CaseRecord:
    """One case: the patient and everything recorded about them."""

    patient: PatientRecord
    encounters: tuple[EncounterRecord, ...] = ()
    conditions: tuple[ConditionRecord, ...] = ()
    medications: tuple[MedicationRecord, ...] = ()
    observations: tuple[ObservationRecord, ...] = ()
    adverse_events: tuple[AdverseEventRecord, ...] = ()
    outcomes: tuple[OutcomeRecord, ...] = ()
    notes: tuple[NoteRecord, ...] = ()
    extras: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def n_rows(self) -> int:
        """Rows this case adds to the store (the patient and every record)."""
        return 1 + sum(len(getattr(self, k)) for k in CHILD_KINDS)


#: The record collections of a case, in storage order.
CHILD_KINDS = ("encounters", "conditions", "medications", "observations", "adverse_events", "outcomes", "notes")


@dataclass(frozen=True, kw_only=True)
class ReadResult:
    """What a reader returns: the cases, plus what it skipped (``{"Procedure": 3}``) and why."""

    cases: tuple[CaseRecord, ...]
    skipped: dict[str, int] = field(default_factory=dict)
    source: str = ""
    #: SHA-256 of the source file(s), when the cases came from files (the import's idempotency key).
    sha256: str | None = None

    @property
    def n_rows(self) -> int:
        return sum(c.n_rows for c in self.cases)
