"""Survival tables (one row per patient: covariates, a time and an event) as case records.

Every column other than the ID, time, event, age and sex becomes a baseline observation
(category ``covariate``): numeric columns keep their numbers, the rest become text. Missing
cells are simply not recorded. The outcome is an :class:`OutcomeRecord` (time in days, event
1/0). A row whose time or event is missing or invalid is an error naming the row: an unknown
outcome is never turned into "censored".

Example:
    >>> result = read_case_csv("my_cohort.csv", id_column="pid", time_column="days", event_column="died")
    >>> result.cases[0].outcomes[0].event
    1
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from medassist.data.case_records import SEXES, CaseRecord, ObservationRecord, OutcomeRecord, PatientRecord, ReadResult
from medassist.data.io.tables import read_table, require_columns
from medassist.exceptions import DataError, EmptyDataError

_EVENT_WORDS = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "1.0": 1, "0.0": 0}
_SEX_WORDS = {"f": "female", "female": "female", "woman": "female", "w": "female",
              "m": "male", "male": "male", "man": "male", "other": "other", "unknown": "unknown", "u": "unknown"}


@dataclass(frozen=True, kw_only=True)
class CaseTableSpec:
    """How one survival table maps onto case records.

    Args:
        time: column with the time to event or censoring, in ``time_unit``.
        event: column with the event indicator; ``event_map`` maps its values (as strings) to
            1/0 when they are not 0/1 (pbc: ``{"2": 1, "1": 0, "0": 0}``).
        id_column: the table's patient ID (None: the row number, from 1).
        age / sex: columns holding age in years and sex; ``sex_map`` maps their values (as
            strings) onto ``female``/``male``/... (None: the usual words and letters).
        constant_sex: the sex of every patient where the study says so (GBSG2: women only).
        exclude: columns that are neither covariates nor outcome (e.g. recorded after the outcome).
        outcome: the outcome's name (``death``, ``recurrence or death``...).
        time_unit: ``days``, ``weeks``, ``months`` or ``years`` (stored in days).
    """

    time: str
    event: str
    id_column: str | None = None
    age: str | None = None
    sex: str | None = None
    sex_map: Mapping[str, str] | None = None
    constant_sex: str | None = None
    event_map: Mapping[str, int] | None = None
    exclude: tuple[str, ...] = ()
    outcome: str = "event"
    outcome_description: str | None = None
    time_unit: str = "days"
    extras: dict[str, str] = field(default_factory=dict)


_UNIT_DAYS = {"days": 1.0, "weeks": 7.0, "months": 365.25 / 12, "years": 365.25}


def table_to_cases(df: pd.DataFrame, spec: CaseTableSpec, *, source: str, system: str | None = None) -> ReadResult:
    """Turn a survival table into one :class:`CaseRecord` per row.

    Args:
        df: the table (one row per patient).
        spec: which columns are ID, time, event, age and sex.
        source: names the table in errors (a file path or data set name).
        system: the source system recorded with each patient (default ``table:<source>``).

    Raises:
        SchemaError: a named column is missing. DataError: a bad time, event or duplicate ID,
        naming the row (1-based, as in the file after its header) and the column.
    """
    if df.empty:
        raise EmptyDataError(f"{source}: the table has no rows.")
    named = [c for c in (spec.id_column, spec.time, spec.event, spec.age, spec.sex) if c is not None]
    require_columns(df, named, source=source)
    if spec.time_unit not in _UNIT_DAYS:
        raise DataError(f"{source}: time unit {spec.time_unit!r} is not one of {', '.join(_UNIT_DAYS)}.")
    system = system or f"table:{source}"
    ids = (df[spec.id_column].map(_id_text) if spec.id_column else pd.Series([str(i + 1) for i in range(len(df))]))
    ids = ids.to_numpy()
    if spec.id_column:
        missing = np.flatnonzero(pd.isna(df[spec.id_column]).to_numpy())
        if len(missing):
            raise DataError(f"{source}: row {missing[0] + 1}: column '{spec.id_column}' (the ID) is empty.")
        dup = pd.Series(ids).duplicated()
        if dup.any():
            i = int(np.flatnonzero(dup.to_numpy())[0])
            raise DataError(f"{source}: row {i + 1}: ID '{ids[i]}' in column '{spec.id_column}' appears twice "
                            "(one row per patient expected).")
    times = pd.to_numeric(df[spec.time], errors="coerce").to_numpy(dtype=float)
    events = _events(df[spec.event], spec, source=source)
    bad = np.flatnonzero(~np.isfinite(times) | (times < 0))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{source}: row {i + 1} (ID {ids[i]}): column '{spec.time}': expected a time >= 0, "
                        f"got {df[spec.time].iloc[i]!r}.")
    times = times * _UNIT_DAYS[spec.time_unit]
    ages = pd.to_numeric(df[spec.age], errors="coerce").to_numpy(dtype=float) if spec.age else None
    sexes = _sexes(df[spec.sex], spec, source=source) if spec.sex else None
    skip = set(named) | set(spec.exclude)
    covariates: list[tuple[str, np.ndarray | None, np.ndarray | None]] = []  # (name, floats, texts)
    for col in df.columns:
        if col in skip:
            continue
        s = df[col]
        if pd.api.types.is_bool_dtype(s):
            s = s.astype(object).map(lambda v: None if pd.isna(v) else str(v).lower())
        if pd.api.types.is_numeric_dtype(s):
            covariates.append((str(col), s.to_numpy(dtype=float), None))
        else:
            covariates.append((str(col), None, s.astype(object).where(s.notna(), None).map(
                lambda v: None if v is None else str(v)).to_numpy()))
    cases = []
    for i in range(len(df)):
        obs = []
        for name, num, txt in covariates:
            if num is not None:
                v = num[i]
                if not math.isnan(v):
                    obs.append(ObservationRecord(code=name, name=name, system=system, value=float(v), category="covariate"))
            elif txt is not None and txt[i] is not None:
                obs.append(ObservationRecord(code=name, name=name, system=system, text=txt[i], category="covariate"))
        age = None if ages is None or math.isnan(ages[i]) else float(ages[i])
        sex = sexes[i] if sexes is not None else (spec.constant_sex or "unknown")
        cases.append(CaseRecord(
            patient=PatientRecord(source_system=system, source_id=ids[i], sex=sex, age_years=age),
            observations=tuple(obs),
            outcomes=(OutcomeRecord(name=spec.outcome, time_days=float(times[i]), event=int(events[i]),
                                    description=spec.outcome_description),),
        ))
    return ReadResult(cases=tuple(cases), source=source)


def read_case_csv(path: str | Path, *, id_column: str | None, time_column: str, event_column: str,
                  age_column: str | None = None, sex_column: str | None = None, time_unit: str = "days",
                  outcome: str = "event") -> ReadResult:
    """Read a user's survival CSV (one row per patient) into case records."""
    path = Path(path)
    df = read_table(path)
    lower = {str(c).lower(): c for c in df.columns}
    age_column = age_column or (lower.get("age") if lower.get("age") not in (id_column, time_column, event_column) else None)
    sex_column = sex_column or (lower.get("sex") if lower.get("sex") not in (id_column, time_column, event_column) else None)
    spec = CaseTableSpec(time=time_column, event=event_column, id_column=id_column, age=age_column, sex=sex_column,
                         time_unit=time_unit, outcome=outcome)
    return table_to_cases(df, spec, source=str(path), system=f"csv:{path.stem}"[:64])


def _id_text(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _events(s: pd.Series, spec: CaseTableSpec, *, source: str) -> np.ndarray:
    mapping = {str(k).strip().lower(): int(v) for k, v in (spec.event_map or _EVENT_WORDS).items()}
    out = np.empty(len(s), dtype=np.int64)
    for i, v in enumerate(s.to_numpy()):
        key = None if pd.isna(v) else (_id_text(v) if isinstance(v, float) else str(v)).strip().lower()
        if isinstance(v, (bool, np.bool_)):
            key = "true" if v else "false"
        if key is None or key not in mapping:
            raise DataError(f"{source}: row {i + 1}: column '{spec.event}': expected an event indicator "
                            f"({', '.join(sorted(mapping))}), got {v!r}. A missing outcome is not assumed censored.")
        out[i] = mapping[key]
    return out


def _sexes(s: pd.Series, spec: CaseTableSpec, *, source: str) -> list[str]:
    mapping = {str(k).strip().lower(): v for k, v in (spec.sex_map or _SEX_WORDS).items()}
    out = []
    for i, v in enumerate(s.to_numpy()):
        if pd.isna(v):
            out.append("unknown")
            continue
        key = (_id_text(v) if isinstance(v, float) else str(v)).strip().lower()
        sex = mapping.get(key)
        if sex not in SEXES:
            raise DataError(f"{source}: row {i + 1}: column '{spec.sex}': expected one of "
                            f"{', '.join(sorted(mapping))} for sex, got {v!r}.")
        out.append(sex)
    return out
