"""Tabular featurizer: impute (with missingness indicators), one-hot encode, scale.

Fitted on the training split only; fitted state ends in ``_``; saved as JSON with the model.
Missing values are never overwritten in the caller's table: imputation happens in the output
matrix, and every imputed cell is counted so predictions can say how many values were filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medassist.exceptions import ConfigError, DataError, NotFittedError, SchemaError
from medassist.featurizers.registry import FEATURIZERS

MISSING = "__missing__"
OTHER = "__other__"
#: A column whose values parse as numbers at least this often is numeric; the rest is junk.
NUMERIC_SHARE = 0.9
#: A value further than this many training standard deviations from the training mean is refused:
#: no measurement is that far out, and such a value (1e308, say) overflows the model to NaN.
MAX_ABS_Z = 1e6


#: A numeric value further than this share of the training range outside [min, max] of the
#: training split is flagged as out of range (the model never saw anything like it).
RANGE_MARGIN = 0.05


@dataclass(frozen=True)
class FeatureMatrix:
    """Output of ``transform``: features (N, F) float32 and per-row flags.

    ``n_imputed``/``n_unknown`` (N,) count imputed cells and categories never seen in training;
    ``unknown_categories`` and ``out_of_range`` list, per row, the ``column=value`` of each
    unseen category and the numeric columns whose value lies outside the training range.
    """

    values: np.ndarray
    n_imputed: np.ndarray
    n_unknown: np.ndarray
    unknown_categories: list[list[str]] = field(default_factory=list)
    out_of_range: list[list[str]] = field(default_factory=list)

    @property
    def n_out_of_range(self) -> np.ndarray:
        return np.array([len(r) for r in self.out_of_range], dtype=np.int64)


def category_key(value: Any) -> str:
    """The level a category value is stored under: integral floats lose their '.0', so a code
    column read as floats (because it has a gap) still matches the integers seen in training."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


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


def parse_missing_values(specs: tuple[str, ...] | list[str]) -> dict[str, list[Any]]:
    """``--missing-values "insulin=0"`` (repeatable; ``"col=0,-99"``) → ``{"insulin": [0]}``.

    A value that reads as a number is kept as a number (it matches 0, 0.0 and "0" in the
    column); anything else is matched as text.

    Raises:
        ConfigError: a spec without ``=``, without a column or without values, or a column
            given twice.
    """
    out: dict[str, list[Any]] = {}
    for spec in specs:
        col, sep, rest = str(spec).partition("=")
        col = col.strip()
        values = [v.strip() for v in rest.split(",") if v.strip()]
        if not sep or not col or not values:
            raise ConfigError(f"--missing-values expects COLUMN=VALUE[,VALUE...] (e.g. \"insulin=0\" or \"bmi=0,-99\"). Got {spec!r} instead.")
        if col in out:
            raise ConfigError(f"--missing-values names column '{col}' twice; give all its values once: \"{col}=0,-99\".")
        parsed: list[Any] = []
        for v in values:
            try:
                f = float(v)
            except ValueError:
                parsed.append(v)
                continue
            parsed.append(int(f) if f.is_integer() else f)
        out[col] = parsed
    return out


def declared_missing_mask(series: pd.Series, values: list[Any]) -> np.ndarray:
    """(N,) True where a cell holds one of the values the user declared to mean "missing"."""
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    keys = {category_key(v) for v in values} | {str(v) for v in values}
    mask = np.zeros(len(series), dtype=bool)
    if numbers:
        parsed = pd.to_numeric(series, errors="coerce") if not pd.api.types.is_bool_dtype(series) else series.astype(float)
        mask |= parsed.isin(numbers).to_numpy()
    mask |= series.map(lambda v: not pd.isna(v) and (category_key(v) in keys or str(v).strip() in keys)).to_numpy(dtype=bool)
    return mask


def count_declared_missing(df: pd.DataFrame, missing_values: dict[str, list[Any]]) -> dict[str, int]:
    """Cells per column that hold a declared missing value (they are read as missing)."""
    return {c: int(declared_missing_mask(df[c], v).sum()) for c, v in missing_values.items() if c in df.columns}


@FEATURIZERS.register("tabular")
class TabularFeaturizer:
    """Numeric: median-impute + missingness indicator + standardise. Categorical: one-hot.

    Args:
        numeric: numeric input columns (inferred from the data when both lists are None).
        categorical: categorical input columns.
        max_categories: most frequent levels kept per categorical column; rarer ones share
            one ``__other__`` level.
        missing_values: per column, values that mean "missing" (``{"insulin": [0]}``, from
            ``--missing-values``): read as missing, so imputed with an indicator, in ``fit``
            and in every ``transform``; the caller's table is not changed.

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
        missing_values: dict[str, list[Any]] | None = None,
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.max_categories = max_categories
        self.missing_values = missing_values

    def _declared(self, series: pd.Series, column: str) -> pd.Series:
        """The column with the user's declared missing values read as missing (a copy)."""
        values = (self.missing_values or {}).get(column)
        if not values:
            return series
        mask = declared_missing_mask(series, values)
        return series.mask(mask) if mask.any() else series

    # -- fitting -------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame, *, source: str = "training data") -> TabularFeaturizer:
        if df.empty:
            raise DataError(f"{source}: no rows to fit the featurizer on.")
        self._stats_cache: tuple[Any, Any] | None = None  # the fitted statistics change
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
        self.range_: dict[str, list[float]] = {}
        for col in self.numeric_:
            x = parse_numeric(self._declared(df[col], col), column=col, source=source)
            self.missing_rate_[col] = float(x.isna().mean())
            if x.notna().sum() == 0:
                raise DataError(f"{source}: numeric column '{col}' has no values at all; drop it or fill it.")
            med = float(x.median())
            self.range_[col] = [float(x.min()), float(x.max())]
            filled = x.fillna(med)
            self.median_[col], self.mean_[col] = med, float(filled.mean())
            std = float(filled.std(ddof=0))
            self.scale_[col] = std if std > 1e-12 else 1.0
            if x.isna().any():
                self.indicator_.append(col)
        self.categories_: dict[str, list[str]] = {}
        for col in self.categorical_:
            s = self._declared(df[col], col)
            self.missing_rate_[col] = float(s.isna().mean())
            counts = s.dropna().map(category_key).value_counts()
            levels = sorted(counts.index[: self.max_categories].tolist())
            if len(counts) > self.max_categories:
                levels.append(OTHER)
            if s.isna().any():
                levels.append(MISSING)
            self.categories_[col] = levels
            codes = pd.to_numeric(s.dropna(), errors="coerce")
            if len(codes) and codes.notna().all() and not pd.api.types.is_bool_dtype(s):
                # integer codes (race = 1/2/3, ftv = 0..6): a code beyond them is out of range too
                self.range_[col] = [float(codes.min()), float(codes.max())]
        # (feature name, input column it comes from), in the order of the feature matrix
        pairs = [(col, col) for col in self.numeric_]
        pairs += [(f"{col}__is_missing", col) for col in self.indicator_]
        pairs += [(f"{col}={lev}", col) for col in self.categorical_ for lev in self.categories_[col]]
        self.feature_names_ = [name for name, _ in pairs]
        self.feature_groups_ = [col for _, col in pairs]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise NotFittedError("This TabularFeaturizer is not fitted yet; call fit() on the training split first.")

    # -- transforming --------------------------------------------------------------------
    def check_plausible(self, column: str, values: np.ndarray, *, source: str = "input data") -> None:
        """Refuse a non-finite value of a numeric column, or one at least ``MAX_ABS_Z`` training
        standard deviations from the training mean; NaN (missing, imputed) passes.

        Raises:
            DataError: naming the first such row (1-based), the column and the value.
        """
        self._check_fitted()
        x = np.asarray(values, dtype=float)
        mean, scale = self.mean_[column], self.scale_[column]
        with np.errstate(all="ignore"):
            bad = ~np.isnan(x) & ~(np.abs((x - mean) / scale) < MAX_ABS_Z)
        if bad.any():
            i = int(bad.argmax())
            raise DataError(f"{source}: row {i + 1}, column '{column}': expected a finite number within {MAX_ABS_Z:.0e} "
                            f"training standard deviations of the training mean ({mean:.4g} ± {scale:.4g}), got {x[i]:g}.")

    def _numeric_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per numeric column, in ``numeric_`` order: median, mean, scale and the range bounds
        (with the margin; ±inf where no range was stored), as float64 vectors (cached)."""
        key = (tuple(self.numeric_), id(self.mean_), id(getattr(self, "range_", None)))
        cached = getattr(self, "_stats_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        ranges = getattr(self, "range_", {})  # bundles written before ranges were stored have none
        lo = np.full(len(self.numeric_), -np.inf)
        hi = np.full(len(self.numeric_), np.inf)
        for j, col in enumerate(self.numeric_):
            if col in ranges:
                a, b = ranges[col]
                margin = RANGE_MARGIN * (b - a)
                lo[j], hi[j] = a - margin, b + margin
        stats = (np.array([self.median_[c] for c in self.numeric_], dtype=float), np.array([self.mean_[c] for c in self.numeric_], dtype=float),
                 np.array([self.scale_[c] for c in self.numeric_], dtype=float), lo, hi)
        self._stats_cache = (key, stats)
        return stats

    def check_plausible_columns(self, columns: dict[str, np.ndarray], *, source: str = "input data") -> None:
        """:meth:`check_plausible` for every numeric column at once (the same error, for the first
        column in ``numeric_`` order that has an implausible value)."""
        self._check_fitted()
        if not self.numeric_:
            return
        _, mean, scale, _, _ = self._numeric_stats()
        x = np.column_stack([np.asarray(columns[c], dtype=float) for c in self.numeric_])
        with np.errstate(all="ignore"):
            bad = ~np.isnan(x) & ~(np.abs((x - mean) / scale) < MAX_ABS_Z)
        if bad.any():
            for c in self.numeric_:
                self.check_plausible(c, columns[c], source=source)

    def transform(self, df: pd.DataFrame, *, source: str = "input data") -> FeatureMatrix:
        """Encode ``df`` (which must hold every fitted input column) into a float32 matrix."""
        self._check_fitted()
        missing = [c for c in self.columns_ if c not in df.columns]
        if missing:
            raise SchemaError(
                f"{source}: the model needs column(s) {', '.join(repr(c) for c in missing)}, "
                f"which the table does not have (expected columns: {', '.join(self.columns_)})."
            )
        numeric = {c: parse_numeric(self._declared(df[c], c), column=c, source=source).to_numpy() for c in self.numeric_}
        categorical = {c: self._declared(df[c], c).to_numpy() for c in self.categorical_}
        return self._encode(len(df), numeric, categorical, source=source)

    def transform_arrays(self, columns: dict[str, np.ndarray], *, source: str = "input data") -> FeatureMatrix:
        """Encode already-validated columns, no table: the service's path from JSON rows.

        Args:
            columns: every fitted input column → an (N,) array: numeric columns as floats with
                NaN for missing, categorical columns as an object array of the raw values
                (``None`` for missing).

        Returns:
            The same :class:`FeatureMatrix` as :meth:`transform` of a table holding those
            columns (bit for bit: the encoding below is shared).
        """
        self._check_fitted()
        missing = [c for c in self.columns_ if c not in columns]
        if missing:
            raise SchemaError(f"{source}: the model needs column(s) {', '.join(repr(c) for c in missing)} (expected columns: "
                              f"{', '.join(self.columns_)}).")
        n = len(columns[self.columns_[0]]) if self.columns_ else 0
        declared = self.missing_values or {}
        numeric, categorical = {}, {}
        for c in self.numeric_:
            x = np.asarray(columns[c], dtype=float)
            if declared.get(c):  # rare: declared missing values go through the table path's rule
                x = parse_numeric(self._declared(pd.Series(x), c), column=c, source=source).to_numpy()
            numeric[c] = x
        for c in self.categorical_:
            v = np.asarray(columns[c], dtype=object)
            categorical[c] = self._declared(pd.Series(v), c).to_numpy() if declared.get(c) else v
        return self._encode(n, numeric, categorical, source=source)

    def _encode(self, n: int, numeric: dict[str, np.ndarray], categorical: dict[str, np.ndarray], *, source: str) -> FeatureMatrix:
        """The encoding itself: numeric (N,) float arrays (NaN = missing) and categorical (N,)
        object arrays, with declared missing values already read as missing."""
        blocks: list[np.ndarray] = []
        n_imputed = np.zeros(n, dtype=np.int64)
        n_unknown = np.zeros(n, dtype=np.int64)
        unknown: list[list[str]] = [[] for _ in range(n)]
        outside: list[list[str]] = [[] for _ in range(n)]
        ranges = getattr(self, "range_", {})  # bundles written before ranges were stored have none
        inds = np.zeros((n, len(self.indicator_)), dtype=np.float32)
        if self.numeric_:
            # every numeric column at once: the same float64 arithmetic per value as column by column
            self.check_plausible_columns(numeric, source=source)
            median, mean, scale, lo, hi = self._numeric_stats()
            x = np.empty((n, len(self.numeric_)), dtype=float)
            for j, col in enumerate(self.numeric_):
                x[:, j] = numeric[col]
            miss = np.isnan(x)
            n_imputed += miss.sum(axis=1)
            with np.errstate(invalid="ignore"):
                off = (x < lo) | (x > hi)
            for row, j in zip(*np.nonzero(off), strict=True):  # row-major: each row's columns in numeric_ order
                outside[row].append(self.numeric_[j])
            nums = ((np.where(miss, median, x) - mean) / scale).astype(np.float32)
            position = {c: j for j, c in enumerate(self.numeric_)}
            for k, col in enumerate(self.indicator_):
                if col in position:
                    inds[:, k] = miss[:, position[col]]
        else:
            nums = np.zeros((n, 0), dtype=np.float32)
        blocks += [nums, inds]
        for col in self.categorical_:
            values = categorical[col]
            if col in ranges:
                lo, hi = ranges[col]
                margin = RANGE_MARGIN * (hi - lo)
                codes = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
                with np.errstate(invalid="ignore"):
                    for row in np.flatnonzero((codes < lo - margin) | (codes > hi + margin)):
                        outside[row].append(col)
            levels = self.categories_[col]
            onehot = np.zeros((n, len(levels)), dtype=np.float32)
            lookup = {lev: i for i, lev in enumerate(levels)}
            for i, v in enumerate(values):
                if pd.isna(v):
                    key = MISSING
                    n_imputed[i] += MISSING not in lookup
                else:
                    key = category_key(v)
                    if key not in lookup:
                        key = OTHER
                if key in lookup:
                    onehot[i, lookup[key]] = 1.0
                elif not pd.isna(v):
                    n_unknown[i] += 1  # a level never seen in training: encoded as all zeros
                    unknown[i].append(f"{col}={category_key(v)}")
            blocks.append(onehot)
        return FeatureMatrix(np.concatenate(blocks, axis=1), n_imputed, n_unknown, unknown, outside)

    # -- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "name": "tabular",
            "params": {"numeric": self.numeric, "categorical": self.categorical, "max_categories": self.max_categories,
                       "missing_values": self.missing_values},
            "state": {
                "columns_": self.columns_, "numeric_": self.numeric_, "categorical_": self.categorical_,
                "median_": self.median_, "mean_": self.mean_, "scale_": self.scale_,
                "indicator_": self.indicator_, "missing_rate_": self.missing_rate_, "range_": getattr(self, "range_", {}),
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
