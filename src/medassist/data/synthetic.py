"""Small synthetic data for tests (never used by the demo's real-data paths).

``messy_clinical_table`` imitates a hospital export nobody prepared for medassist: an MRN
column with repeat visits, mixed numeric and categorical columns, missing values written in
several ways, a free-text column and a binary outcome that depends on a few inputs.
"""

from __future__ import annotations

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
