"""The case store's tables (migration ``0002_cases``), on the shared declarative ``Base``.

PHI (names, MRN, birth date, the index date, source ids, note text) lives only in ``*_enc``
columns (Fernet, ``medassist.privacy.crypto.FieldCipher``); identifiers are looked up through
keyed hashes (``*_hash``, HMAC-SHA256). Every other time is a day offset (``*_day``, float days)
from the patient's index date, so a researcher's view needs no exact date; the clinician's view
adds the offset to the decrypted index date.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from medassist.store.models import Base, UTCDateTime, utcnow


class CaseImport(Base):
    """One import (a FHIR bundle, a CDISC study, a table): what came in, from where, when."""

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    source_kind: Mapped[str] = mapped_column(String(16))
    #: SHA-256 of the imported file(s); the same content is imported once.
    file_sha256: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    n_cases: Mapped[int] = mapped_column(Integer, default=0)
    n_rows: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[str] = mapped_column(Text, default="{}")  # JSON: rows per table, skipped resources
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class CasePatient(Base):
    """A case: one patient of one data set."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[str] = mapped_column(String(24), unique=True)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    source_system: Mapped[str] = mapped_column(String(64))
    #: HMAC of (dataset, source system, source id): the idempotency key of an import.
    source_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    source_id_hash: Mapped[str] = mapped_column(String(64), index=True)
    mrn_hash: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    source_id_enc: Mapped[str] = mapped_column(Text)
    mrn_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    name_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    birth_date_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    index_date_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    sex: Mapped[str] = mapped_column(String(16))
    age_years: Mapped[float | None] = mapped_column(Float, nullable=True)
    death_day: Mapped[float | None] = mapped_column(Float, nullable=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("imports.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def _patient_fk() -> Mapped[int]:
    return mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)


class CaseEncounter(Base):
    __tablename__ = "encounters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = _patient_fk()
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(Text, nullable=True)
    start_day: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_day: Mapped[float | None] = mapped_column(Float, nullable=True)


class CaseCondition(Base):
    __tablename__ = "conditions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = _patient_fk()
    code: Mapped[str | None] = mapped_column(String(16), index=True, nullable=True)
    system: Mapped[str] = mapped_column(String(32))
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    onset_day: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(32))


class CaseMedication(Base):
    __tablename__ = "medications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = _patient_fk()
    name: Mapped[str] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    system: Mapped[str | None] = mapped_column(String(128), nullable=True)
    dose: Mapped[float | None] = mapped_column(Float, nullable=True)
    dose_unit: Mapped[str | None] = mapped_column(String(32), nullable=True)
    route: Mapped[str | None] = mapped_column(String(64), nullable=True)
    start_day: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_day: Mapped[float | None] = mapped_column(Float, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))


class CaseObservation(Base):
    __tablename__ = "observations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = _patient_fk()
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(Text, nullable=True)
    system: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(32))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    unit: Mapped[str | None] = mapped_column(String(32), nullable=True)
    day: Mapped[float | None] = mapped_column(Float, nullable=True)


class CaseAdverseEvent(Base):
    __tablename__ = "adverse_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = _patient_fk()
    term: Mapped[str] = mapped_column(Text)
    decoded: Mapped[str | None] = mapped_column(Text, nullable=True)
    body_system: Mapped[str | None] = mapped_column(Text, nullable=True)
    severity: Mapped[str | None] = mapped_column(String(32), nullable=True)
    serious: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    related: Mapped[str | None] = mapped_column(String(32), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(64), nullable=True)
    start_day: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_day: Mapped[float | None] = mapped_column(Float, nullable=True)


class CaseOutcome(Base):
    __tablename__ = "outcomes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = _patient_fk()
    name: Mapped[str] = mapped_column(String(64))
    time_days: Mapped[float] = mapped_column(Float)
    event: Mapped[int] = mapped_column(Integer)
    is_primary: Mapped[bool] = mapped_column(Boolean)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)


class CaseNote(Base):
    """A note, de-identified before storing and encrypted as well (de-identification can miss)."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = _patient_fk()
    kind: Mapped[str] = mapped_column(String(32))
    day: Mapped[float | None] = mapped_column(Float, nullable=True)
    text_enc: Mapped[str] = mapped_column(Text)
    n_redacted: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


#: Child tables by the ``CaseRecord`` field they store.
CHILD_TABLES = {
    "encounters": CaseEncounter, "conditions": CaseCondition, "medications": CaseMedication,
    "observations": CaseObservation, "adverse_events": CaseAdverseEvent, "outcomes": CaseOutcome,
    "notes": CaseNote,
}
