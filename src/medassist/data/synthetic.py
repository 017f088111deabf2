"""Small synthetic data for tests (never used by the demo's real-data paths).

``messy_clinical_table`` imitates a hospital export nobody prepared for medassist: an MRN
column with repeat visits, mixed numeric and categorical columns, missing values written in
several ways, a free-text column and a binary outcome that depends on a few inputs.
"""

from __future__ import annotations

from datetime import UTC

import numpy as np
import pandas as pd


def messy_clinical_table(*, n_patients: int = 160, seed: int = 0) -> pd.DataFrame:
    """A binary-outcome table with patient IDs (some repeated), missing values and categories.

    Columns: ``mrn``, ``visit_date``, ``age``, ``sex``, ``systolic_bp``, ``glucose``, ``bmi``,
    ``smoker``, ``ward``, ``comment``, ``outcome`` ("disease" / "healthy").
    """
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        age = int(rng.integers(25, 90))
        sex = rng.choice(["F", "M"])
        smoker = rng.choice(["yes", "no", "former"], p=[0.25, 0.55, 0.2])
        n_visits = 1 + int(rng.random() < 0.2)
        for v in range(n_visits):
            sbp = rng.normal(125 + 0.4 * (age - 50), 15)
            glu = rng.normal(100, 20)
            bmi = rng.normal(27, 4)
            risk = 0.04 * (age - 55) + 0.035 * (glu - 100) + 0.12 * (bmi - 27) + (0.8 if smoker == "yes" else 0.0)
            disease = rng.random() < 1 / (1 + np.exp(-risk))
            rows.append({
                "mrn": f"MRN{100000 + p}", "visit_date": f"2024-{1 + (p % 12):02d}-{1 + v * 7:02d}", "age": age, "sex": sex,
                "systolic_bp": round(float(sbp), 1), "glucose": round(float(glu), 1), "bmi": round(float(bmi), 1),
                "smoker": smoker, "ward": rng.choice(["cardio", "internal", "emergency"]),
                "comment": rng.choice(["", "follow-up", "referred by GP", "n/a"]),
                "outcome": "disease" if disease else "healthy",
            })
    df = pd.DataFrame(rows)
    # Missing values, written the ways hospital exports write them.
    for col, token in (("glucose", "NA"), ("bmi", ""), ("systolic_bp", "?"), ("smoker", None)):
        idx = rng.choice(len(df), size=max(1, len(df) // 12), replace=False)
        df[col] = df[col].astype(object)
        df.loc[idx, col] = token
    return df


def random_binary_table(*, n: int = 200, n_features: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Linearly separable-ish float features (n, F) and 0/1 targets (n,)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features)).astype(np.float32)
    w = rng.normal(size=n_features)
    y = (x @ w + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
    return x, y


def synthetic_cases(*, n_patients: int = 100, seed: int = 0, start: int = 0, notes: bool = True, outcomes: str = "survival"):
    """Yield ``n_patients`` synthetic cases (``CaseRecord``), one at a time, for FHIR tests and benchmarks.

    Each case: a Patient (name, MRN, birth date), one inpatient encounter, 1-3 ICD-10-CM
    conditions, a medication, 6-12 lab and vital-sign observations, a primary survival outcome
    and (``notes``) a short progress note. About 3 kB of FHIR NDJSON per case; ids are
    ``syn-<start + i>`` so several calls with different ``start`` never collide.

    ``outcomes``: ``"survival"`` (a recorded time-to-event outcome), ``"none"`` (no outcome and
    no vital status, as in an ordinary EHR export) or ``"deceased"`` (no outcome; the Patient's
    ``deceasedDateTime``, or ``deceasedBoolean`` false, from which the reader derives one).

    Example:
        >>> write_fhir_ndjson(synthetic_cases(n_patients=1000), "export/")
    """
    from dataclasses import replace
    from datetime import date, datetime, timedelta

    from medassist.data.case_records import (
        CaseRecord,
        ConditionRecord,
        EncounterRecord,
        MedicationRecord,
        NoteRecord,
        ObservationRecord,
        OutcomeRecord,
        PatientRecord,
    )

    if outcomes not in ("survival", "none", "deceased"):
        raise ValueError(f"The 'outcomes' parameter of synthetic_cases must be 'survival', 'none' or 'deceased'. Got {outcomes!r} instead.")
    rng = np.random.default_rng(seed)
    codes = [("I21.4", "NSTEMI"), ("I50.9", "heart failure"), ("E11.9", "type 2 diabetes"), ("N18.3", "CKD stage 3"),
             ("J44.9", "COPD"), ("I10", "hypertension"), ("C50.9", "breast cancer"), ("F32.9", "depression")]
    labs = [("2160-0", "Creatinine", "mg/dL", 1.0, 0.3), ("2345-7", "Glucose", "mg/dL", 110, 25),
            ("718-7", "Hemoglobin", "g/dL", 13, 1.5), ("8867-4", "Heart rate", "/min", 78, 12),
            ("8480-6", "Systolic BP", "mm[Hg]", 128, 16), ("2951-2", "Sodium", "mmol/L", 139, 3)]
    drugs = [("metformin", "6809", 500.0, "mg"), ("aspirin", "1191", 100.0, "mg"), ("furosemide", "4603", 40.0, "mg")]
    first_names, last_names = ["Ada", "Ben", "Cleo", "Dev", "Eva", "Finn"], ["Moss", "Reyes", "Okafor", "Lind", "Novak"]
    base = datetime(2023, 1, 1, tzinfo=UTC)
    for k in range(n_patients):
        i = start + k
        pid = f"syn-{i}"
        t0 = base + timedelta(days=int(rng.integers(0, 700)), hours=int(rng.integers(0, 24)))
        sex = "female" if rng.random() < 0.5 else "male"
        patient = PatientRecord(source_system="synthetic", source_id=pid, mrn=f"MRN{1_000_000 + i}",
                                name=f"{first_names[i % 6]} {last_names[i % 5]}{i}",
                                birth_date=date(1930 + int(rng.integers(0, 70)), 1 + int(rng.integers(0, 12)), 1 + int(rng.integers(0, 28))),
                                sex=sex)
        conds = tuple(ConditionRecord(code=c, text=t, onset=t0, status="active")
                      for c, t in (codes[j] for j in rng.choice(len(codes), size=int(rng.integers(1, 4)), replace=False)))
        obs = []
        for _ in range(int(rng.integers(6, 13))):
            code, name, unit, mu, sd = labs[int(rng.integers(0, len(labs)))]
            obs.append(ObservationRecord(code=code, name=name, system="LOINC", value=round(float(rng.normal(mu, sd)), 2),
                                         unit=unit, time=t0 + timedelta(hours=int(rng.integers(0, 240))),
                                         category="vital-signs" if code in ("8867-4", "8480-6") else "laboratory"))
        name, code, dose, unit = drugs[int(rng.integers(0, len(drugs)))]
        meds = (MedicationRecord(name=name, code=code, system="RxNorm", dose=dose, dose_unit=unit, start=t0, kind="request"),)
        outcome = OutcomeRecord(name="death", time_days=float(rng.integers(5, 1500)), event=int(rng.random() < 0.3))
        if outcomes == "deceased":
            died = (t0 + timedelta(days=outcome.time_days)).date() if outcome.event else None
            patient = replace(patient, death_date=died, deceased=None if died else False)
        note = (NoteRecord(text=f"Day {int(rng.integers(1, 9))}: seen on the ward, {conds[0].text} stable, plan unchanged.",
                           kind="progress", time=t0 + timedelta(days=1)),) if notes else ()
        yield CaseRecord(patient=patient, encounters=(EncounterRecord(kind="IMP", name="admission", start=t0,
                                                                      end=t0 + timedelta(days=int(rng.integers(1, 15)))),),
                         conditions=conds, medications=meds, observations=tuple(obs),
                         outcomes=(outcome,) if outcomes == "survival" else (), notes=note)
