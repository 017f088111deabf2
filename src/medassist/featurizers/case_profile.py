"""A feature profile of a case, for similar-case search without an outcome.

Turns a case frame (see ``CaseStore.frame``) into one vector per case, in four blocks:

* demographics: ``age`` standardised, ``sex`` one-hot;
* conditions: multi-hot ICD-10 chapters (I-XXII) and 3-character categories (``I21``);
* medications: multi-hot codes or names;
* observations: every other column; numeric ones standardised latest values, categorical ones one-hot.

Each block is weighted so that a typical case has about unit norm in it: no block drowns the
others because it has more columns. Similar cases are the nearest by Euclidean distance. A
missing value is imputed with the fitted mean (standardised 0), here, in the featurizer; the
frame is never changed.

Example:
    >>> prof = CaseProfile().fit(frame)
    >>> x = prof.transform(frame)            # (N, d) float32
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Columns that are outcomes or code lists, never plain features.
OUTCOME_COLUMNS = ("time", "event")
CODE_COLUMNS = ("conditions", "medications")
CODE_SEP = ";"
#: Most levels one categorical column contributes (rarer ones are left out of the one-hot).
MAX_LEVELS = 20
#: Most codes a code block holds (the most frequent).
MAX_CODES = 2000
#: ICD-10 chapters by the range of 3-character categories they cover.
ICD10_CHAPTERS = (
    ("I", "A00", "B99"), ("II", "C00", "D49"), ("III", "D50", "D89"), ("IV", "E00", "E89"), ("V", "F01", "F99"),
    ("VI", "G00", "G99"), ("VII", "H00", "H59"), ("VIII", "H60", "H95"), ("IX", "I00", "I99"), ("X", "J00", "J99"),
    ("XI", "K00", "K95"), ("XII", "L00", "L99"), ("XIII", "M00", "M99"), ("XIV", "N00", "N99"), ("XV", "O00", "O9A"),
    ("XVI", "P00", "P96"), ("XVII", "Q00", "Q99"), ("XVIII", "R00", "R99"), ("XIX", "S00", "T88"), ("XX", "V00", "Y99"),
    ("XXI", "Z00", "Z99"), ("XXII", "U00", "U85"),
)


def icd10_category(code: str) -> str:
    """``I21.4`` → ``I21``."""
    return str(code).strip().upper().replace(".", "")[:3]


def icd10_chapter(code: str) -> str | None:
    """The ICD-10 chapter (Roman numeral) of a code, or None when it is in none."""
    cat = icd10_category(code)
    for name, lo, hi in ICD10_CHAPTERS:
        if lo <= cat <= hi:
            return name
    return None


def split_codes(s: pd.Series) -> list[set[str]]:
    """';'-joined code strings → one set per row (empty for missing)."""
    return [set() if v is None or (isinstance(v, float) and np.isnan(v))
            else {c.strip() for c in str(v).split(CODE_SEP) if c.strip()} for v in s.to_numpy()]


class CaseProfile:
    """Fitted feature profile of cases (demographics, conditions, medications, observations).

    Args:
        exclude: columns never used as features (besides the outcome columns).
    """

    def __init__(self, *, exclude: tuple[str, ...] = ()) -> None:
        self.exclude = tuple(exclude)

    def fit(self, frame: pd.DataFrame) -> CaseProfile:
        skip = set(OUTCOME_COLUMNS) | set(CODE_COLUMNS) | set(self.exclude)
        numeric: list[str] = []
        categorical: list[str] = []
        for c in frame.columns:
            if c in skip or frame[c].isna().all():
                continue
            (numeric if pd.api.types.is_numeric_dtype(frame[c]) else categorical).append(str(c))
        self.numeric_, self.categorical_ = numeric, categorical
        x = frame[numeric].apply(pd.to_numeric, errors="coerce") if numeric else pd.DataFrame(index=frame.index)
        self.mean_ = {c: float(x[c].mean()) for c in numeric}
        self.scale_ = {c: (s if np.isfinite(s := float(x[c].std(ddof=0))) and s > 0 else 1.0) for c in numeric}
        self.levels_ = {c: [str(v) for v in frame[c].dropna().astype(str).value_counts().index[:MAX_LEVELS]] for c in categorical}
        self.codes_: dict[str, list[str]] = {}
        self.weights_: dict[str, float] = {}
        for col in CODE_COLUMNS:
            if col not in frame.columns:
                continue
            sets = split_codes(frame[col])
            for name, fn in self._code_views(col):
                counts = pd.Series([v for s in sets for v in {fn(c) for c in s} if v]).value_counts()
                self.codes_[name] = [str(v) for v in counts.index[:MAX_CODES]]
                self.weights_[name] = 1.0 / np.sqrt(max(1.0, float(counts.sum()) / max(len(frame), 1)))
        n_obs = sum(1 for c in numeric if c != "age") + sum(1 for c in categorical if c != "sex")
        self.weights_["observations"] = 1.0 / np.sqrt(max(1, n_obs))
        return self

    @staticmethod
    def _code_views(col: str):
        if col == "conditions":  # two views of a diagnosis: its chapter and its category
            return (("condition_chapters", icd10_chapter), ("condition_categories", icd10_category))
        return ((col, lambda c: c),)

    def _check(self) -> None:
        if not hasattr(self, "numeric_"):
            raise RuntimeError("CaseProfile is not fitted yet; call fit(frame) first.")

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Feature vectors (N, d), float32, blocks weighted as described in the module docstring."""
        self._check()
        blocks = []
        w_obs = self.weights_["observations"]
        for c in self.numeric_:
            v = pd.to_numeric(frame[c], errors="coerce").to_numpy(float) if c in frame.columns else np.full(len(frame), np.nan)
            z = np.clip((v - self.mean_[c]) / self.scale_[c], -5.0, 5.0)
            blocks.append(np.nan_to_num(z, nan=0.0)[:, None] * (1.0 if c == "age" else w_obs))
        for c in self.categorical_:
            v = frame[c].astype(object).where(frame[c].notna(), None).to_numpy() if c in frame.columns else np.full(len(frame), None)
            onehot = np.array([[1.0 if x is not None and str(x) == lv else 0.0 for lv in self.levels_[c]] for x in v]).reshape(len(frame), -1)
            blocks.append(onehot * ((1.0 / np.sqrt(2.0)) if c == "sex" else w_obs / np.sqrt(2.0)))
        for col in CODE_COLUMNS:
            sets = split_codes(frame[col]) if col in frame.columns else [set()] * len(frame)
            for name, fn in self._code_views(col):
                if name not in self.codes_:
                    continue
                pos = {c: i for i, c in enumerate(self.codes_[name])}
                m = np.zeros((len(frame), len(pos)))
                for i, s in enumerate(sets):
                    for c in {fn(c) for c in s}:
                        if c in pos:
                            m[i, pos[c]] = 1.0
                blocks.append(m * self.weights_[name] * (1.0 / np.sqrt(2.0) if col == "conditions" else 1.0))
        return np.ascontiguousarray(np.hstack(blocks) if blocks else np.zeros((len(frame), 0)), dtype=np.float32)


__all__ = ["CaseProfile", "icd10_category", "icd10_chapter"]
