"""Tabular featurizer: impute (with missingness indicators), one-hot encode, scale.

Fitted on the training split only; fitted state ends in ``_``; saved as JSON with the model.
Missing values are never overwritten in the caller's table: imputation happens in the output
matrix, and every imputed cell is counted so predictions can say how many values were filled in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medassist.exceptions import DataError, NotFittedError, SchemaError
from medassist.featurizers.registry import FEATURIZERS

MISSING = "__missing__"
OTHER = "__other__"
#: A column whose values parse as numbers at least this often is numeric; the rest is junk.
NUMERIC_SHARE = 0.9


@dataclass(frozen=True)
class FeatureMatrix:
    """Output of ``transform``: features (N, F) float32 and per-row count of imputed cells."""

    values: np.ndarray
    n_imputed: np.ndarray
    n_unknown: np.ndarray


def parse_numeric(series: pd.Series, *, column: str, source: str = "table") -> pd.Series:
    """Parse a column as numbers; junk (text that is not missing and not a number) raises.

    Row numbers in messages are 1-based data rows, as a spreadsheet shows them below the header.
    """
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    if pd.api.types.is_numeric_dtype(series):
        return series.astype(float)
    parsed = pd.to_numeric(series, errors="coerce")
    junk = parsed.isna() & series.notna()
    if junk.any():
        pos = np.flatnonzero(junk.to_numpy())
        examples = ", ".join(f"row {p + 1}: {series.iloc[p]!r}" for p in pos[:3])
        more = f" and {len(pos) - 3} more" if len(pos) > 3 else ""
        raise DataError(
            f"{source}: column '{column}' is numeric but {len(pos)} value(s) are not numbers "
            f"({examples}{more}); expected a number or an empty cell."
        )
    return parsed.astype(float)


def infer_column_kind(series: pd.Series) -> str:
    """'numeric' when (almost) every present value is a number, else 'categorical'."""
    if pd.api.types.is_bool_dtype(series):
        return "categorical"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    present = series.dropna()
    if present.empty:
        return "categorical"
    share = pd.to_numeric(present, errors="coerce").notna().mean()
    return "numeric" if share >= NUMERIC_SHARE else "categorical"


@FEATURIZERS.register("tabular")
class TabularFeaturizer:
    """Numeric: median-impute + missingness indicator + standardise. Categorical: one-hot.

    Args:
        numeric: numeric input columns (inferred from the data when both lists are None).
        categorical: categorical input columns.
        max_categories: most frequent levels kept per categorical column; rarer ones share
            one ``__other__`` level.

    Example:
        >>> f = TabularFeaturizer().fit(train_df[features])
        >>> f.transform(test_df).values.shape
        (N, len(f.feature_names_))
    """

    def __init__(
        self,
        *,
        numeric: list[str] | None = None,
        categorical: list[str] | None = None,
        max_categories: int = 30,
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.max_categories = max_categories

    # -- fitting -------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame, *, source: str = "training data") -> TabularFeaturizer:
        if df.empty:
            raise DataError(f"{source}: no rows to fit the featurizer on.")
        if self.numeric is None and self.categorical is None:
            numeric = [c for c in df.columns if infer_column_kind(df[c]) == "numeric"]
            categorical = [c for c in df.columns if c not in numeric]
        else:
            numeric, categorical = list(self.numeric or []), list(self.categorical or [])
        self.columns_ = [c for c in df.columns if c in set(numeric) | set(categorical)]
        self.numeric_ = [c for c in self.columns_ if c in numeric]
        self.categorical_ = [c for c in self.columns_ if c in categorical]
        self.median_: dict[str, float] = {}
        self.mean_: dict[str, float] = {}
        self.scale_: dict[str, float] = {}
        self.indicator_: list[str] = []
        self.missing_rate_: dict[str, float] = {}
        for col in self.numeric_:
            x = parse_numeric(df[col], column=col, source=source)
            self.missing_rate_[col] = float(x.isna().mean())
            if x.notna().sum() == 0:
                raise DataError(f"{source}: numeric column '{col}' has no values at all; drop it or fill it.")
            med = float(x.median())
            filled = x.fillna(med)
            self.median_[col], self.mean_[col] = med, float(filled.mean())
            std = float(filled.std(ddof=0))
            self.scale_[col] = std if std > 1e-12 else 1.0
            if x.isna().any():
                self.indicator_.append(col)
        self.categories_: dict[str, list[str]] = {}
        for col in self.categorical_:
            s = df[col]
            self.missing_rate_[col] = float(s.isna().mean())
            counts = s.dropna().astype(str).value_counts()
            levels = sorted(counts.index[: self.max_categories].tolist())
            if len(counts) > self.max_categories:
                levels.append(OTHER)
            if s.isna().any():
                levels.append(MISSING)
            self.categories_[col] = levels
        names, groups = [], []
        for col in self.numeric_:
            names.append(col), groups.append(col)
        for col in self.indicator_:
            names.append(f"{col}__is_missing"), groups.append(col)
        for col in self.categorical_:
            for lev in self.categories_[col]:
                names.append(f"{col}={lev}"), groups.append(col)
        self.feature_names_, self.feature_groups_ = names, groups
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise NotFittedError("This TabularFeaturizer is not fitted yet; call fit() on the training split first.")

    # -- transforming --------------------------------------------------------------------
    def transform(self, df: pd.DataFrame, *, source: str = "input data") -> FeatureMatrix:
        """Encode ``df`` (which must hold every fitted input column) into a float32 matrix."""
        self._check_fitted()
        missing = [c for c in self.columns_ if c not in df.columns]
        if missing:
            raise SchemaError(
                f"{source}: the model needs column(s) {', '.join(repr(c) for c in missing)}, "
                f"which the table does not have (expected columns: {', '.join(self.columns_)})."
            )
        n = len(df)
        blocks: list[np.ndarray] = []
        n_imputed = np.zeros(n, dtype=np.int64)
        n_unknown = np.zeros(n, dtype=np.int64)
        nums = np.zeros((n, len(self.numeric_)), dtype=np.float32)
        inds = np.zeros((n, len(self.indicator_)), dtype=np.float32)
        for j, col in enumerate(self.numeric_):
            x = parse_numeric(df[col], column=col, source=source).to_numpy()
            miss = np.isnan(x)
            n_imputed += miss
            x = np.where(miss, self.median_[col], x)
            nums[:, j] = (x - self.mean_[col]) / self.scale_[col]
            if col in self.indicator_:
                inds[:, self.indicator_.index(col)] = miss
        blocks += [nums, inds]
        for col in self.categorical_:
            levels = self.categories_[col]
            onehot = np.zeros((n, len(levels)), dtype=np.float32)
            lookup = {lev: i for i, lev in enumerate(levels)}
            for i, v in enumerate(df[col].to_numpy()):
                if pd.isna(v):
                    key = MISSING
                    n_imputed[i] += MISSING not in lookup
                else:
                    key = str(v)
                    if key not in lookup:
                        key = OTHER
                if key in lookup:
                    onehot[i, lookup[key]] = 1.0
                elif not pd.isna(v):
                    n_unknown[i] += 1  # a level never seen in training: encoded as all zeros
            blocks.append(onehot)
        return FeatureMatrix(np.concatenate(blocks, axis=1), n_imputed, n_unknown)

    # -- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "name": "tabular",
            "params": {"numeric": self.numeric, "categorical": self.categorical, "max_categories": self.max_categories},
            "state": {
                "columns_": self.columns_, "numeric_": self.numeric_, "categorical_": self.categorical_,
                "median_": self.median_, "mean_": self.mean_, "scale_": self.scale_,
                "indicator_": self.indicator_, "missing_rate_": self.missing_rate_,
                "categories_": self.categories_, "feature_names_": self.feature_names_,
                "feature_groups_": self.feature_groups_,
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TabularFeaturizer:
        obj = cls(**d["params"])
        for k, v in d["state"].items():
            setattr(obj, k, v)
        return obj

    def input_schema(self) -> dict[str, str]:
        self._check_fitted()
        return {c: ("numeric" if c in self.numeric_ else "categorical") for c in self.columns_}
