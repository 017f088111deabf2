"""Clinical words for case analysis (the case pages and ``medassist cases cohort``): column
labels from the data set's dictionary (then the store's observation names and units), the
endpoint in words, the condition codes a data set really holds (with how many cases have each), and filter examples built from its own columns.

A case frame (``CaseStore.frame``) names its columns after the imported table's or the SDTM
test codes (``chf``, ``ALB``) and always has ``age``, ``sex``, ``conditions`` and
``medications``; the bundled dictionaries (``data/dictionaries/<dataset>.yaml``) are looked up by
the data set's name, case-insensitively (the CDISC pilot's ``AGE`` describes ``age``).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select

from medassist.assistants.cases import endpoint_words
from medassist.data.dictionary import ColumnEntry, ColumnType, DataDictionary, bundled_dictionary
from medassist.store.case_models import CaseCondition, CaseObservation, CaseOutcome, CasePatient
from medassist.store.db import Database

#: Columns every case frame has, described where the data set's dictionary does not.
FRAME_COLUMNS = {
    "age": ColumnEntry(name="age", label="Age", unit="years"),
    "sex": ColumnEntry(name="sex", label="Sex", type=ColumnType.CATEGORICAL),
    "conditions": ColumnEntry(name="conditions", label="Conditions (ICD-10-CM codes)", type=ColumnType.TEXT),
    "medications": ColumnEntry(name="medications", label="Medications", type=ColumnType.TEXT),
}
#: Frame columns that are lists of codes: filtered with ``contains``, never a grouping.
LIST_COLUMNS = ("conditions", "medications")
OUTCOME_COLUMNS = ("time", "event")


def _observation_names(db: Database, dataset: str) -> dict[str, tuple[str, str]]:
    """code → (name, unit) of the data set's observations (labs, vitals, covariates)."""
    with db.session() as s:
        rows = s.execute(select(CaseObservation.code, func.min(CaseObservation.name), func.min(CaseObservation.unit))
                         .join(CasePatient, CasePatient.id == CaseObservation.patient_id)
                         .where(CasePatient.dataset == dataset).group_by(CaseObservation.code)).all()
    return {str(code): (str(name or ""), str(unit or "")) for code, name, unit in rows}


def case_dictionary(db: Database, dataset: str, columns: list[str]) -> DataDictionary:
    """The data set's dictionary keyed by its case frame's ``columns``."""
    base = bundled_dictionary(dataset)
    lower = {name.lower(): e for name, e in base.columns.items()}
    observations = _observation_names(db, dataset)
    out: dict[str, ColumnEntry] = {}
    for col in columns:
        e: ColumnEntry | None
        if col in ("sex", *LIST_COLUMNS):  # the store's own columns (sex is female/male/other/unknown)
            e = FRAME_COLUMNS[col]
        else:
            e = base.get(col) or lower.get(col.lower()) or FRAME_COLUMNS.get(col)
        if e is None and col in observations:
            name, unit = observations[col]
            if name and name.strip().lower() != col.lower():
                e = ColumnEntry(name=col, label=name.strip()[:1].upper() + name.strip()[1:], unit=unit, type=ColumnType.TEXT)
            elif unit:
                e = ColumnEntry(name=col, label=col, unit=unit, type=ColumnType.TEXT)
        if e is not None:
            out[col] = ColumnEntry(name=col, label=e.label, unit=e.unit, type=e.type, codes=e.codes, min=e.min, max=e.max,
                                   description=e.description, role=e.role)
    return DataDictionary(columns=out, title=base.title, time_unit=base.time_unit, source=base.source)


def column_options(columns: list[str], dictionary: DataDictionary) -> list[dict[str, str]]:
    """The columns a cohort may be grouped by, as ``{"value", "text"}``: "Congestive heart complications (chf)"."""
    out = []
    for col in columns:
        if col in OUTCOME_COLUMNS or col in LIST_COLUMNS:
            continue
        e = dictionary.get(col)
        label = e.label_with_unit if e else col
        out.append({"value": col, "text": label if label.lower() == col.lower() else f"{label} — {col}"})
    return sorted(out, key=lambda o: (o["value"] not in ("age", "sex"), o["text"].lower()))


def endpoint_of(db: Database, dataset: str, dictionary: DataDictionary) -> dict[str, str]:
    """The data set's primary endpoint in words (its most frequent primary outcome)."""
    with db.session() as s:
        row = s.execute(select(CaseOutcome.name, func.min(CaseOutcome.description), func.count(CaseOutcome.id).label("n"))
                        .join(CasePatient, CasePatient.id == CaseOutcome.patient_id)
                        .where(CasePatient.dataset == dataset, CaseOutcome.is_primary.is_(True))
                        .group_by(CaseOutcome.name).order_by(func.count(CaseOutcome.id).desc()).limit(1)).first()
    name, description = (row[0], row[1]) if row else (None, None)
    return endpoint_words(name, description=description, dictionary=dictionary)


def condition_counts(db: Database, dataset: str | None, *, limit: int = 40, icd10_only: bool = False) -> list[dict[str, Any]]:
    """The condition codes stored for ``dataset`` (all data sets when None), most frequent first:
    ``{"code", "text", "n"}`` with ``n`` the number of cases that have the code."""
    n_cases = func.count(func.distinct(CaseCondition.patient_id))
    q = (select(CaseCondition.code, func.min(CaseCondition.text), n_cases)
         .join(CasePatient, CasePatient.id == CaseCondition.patient_id).where(CaseCondition.code.is_not(None)))
    if dataset:
        q = q.where(CasePatient.dataset == dataset)
    if icd10_only:
        q = q.where(CaseCondition.system == "ICD-10-CM")
    q = q.group_by(CaseCondition.code).order_by(n_cases.desc(), CaseCondition.code).limit(limit)
    with db.session() as s:
        return [{"code": str(code), "text": str(text or ""), "n": int(n)} for code, text, n in s.execute(q).all()]


def filter_examples(frame: Any, dictionary: DataDictionary, conditions: list[dict[str, Any]]) -> list[str]:
    """Filter examples that work on this data set: its own columns, values and condition codes."""
    out = []
    cols = [c for c in frame.columns if c not in OUTCOME_COLUMNS and c not in LIST_COLUMNS]
    if "age" in cols and frame["age"].notna().any():
        sexes = [v for v in ("female", "male") if (frame["sex"] == v).any()] if "sex" in cols else []
        out.append("age > 60" + (f' and sex == "{sexes[0]}"' if sexes else ""))
    for col in cols:
        e = dictionary.get(col)
        if col in ("age", "sex") or e is None or not e.codes:
            continue
        present = [k for k in e.codes if (frame[col].astype(str) == k).any() or
                   (frame[col].astype(str).str.removesuffix(".0") == k).any()]
        if present:
            value = present[-1]
            shown = value if value.lstrip("-").replace(".", "", 1).isdigit() else json.dumps(value)
            out.append(f"{col} in ({shown})" if shown == value else f"{col} == {shown}")
            break
    if conditions:
        out.append(f'conditions contains "{conditions[0]["code"].split(".")[0]}"')
    return out
