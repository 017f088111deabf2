"""Data-quality report for a table before a diagnosis model is trained on it.

``assess_quality`` profiles every column and lists what an analyst should look at: cells that
do not parse, missing values, constant columns, duplicate rows and patients, physiologically
impossible values (``chol = 0``), ID columns, label-leakage suspects and class imbalance. It
only reads the table; nothing is changed, filled or dropped.

Row numbers: every ``rows`` list and every row named in a message counts the *data* rows from
1 by position, so row 1 is the first record after the header line (spreadsheet line 2). The
DataFrame's index labels are ignored. At most ``MAX_EXAMPLE_ROWS`` examples are listed.

Example:
    >>> df = pandas.read_csv("heart.csv", na_values=["?"])
    >>> report = assess_quality(df, target="num", source="heart.csv")
    >>> report.has_errors, [f.code.value for f in report.findings][:2]
    (False, ['high_missingness', 'high_missingness'])
    >>> report.render(rich.console.Console())
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, cast

import numpy as np
import pandas as pd
from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table

from medassist.exceptions import ConfigError, DataError, EmptyDataError, SchemaError

MAX_EXAMPLE_ROWS = 10
HIGH_MISSING = 0.40  # share of rows; at or above it the column is barely usable as it is
NEAR_CONSTANT = 0.99  # share of the non-missing values taken by the most frequent one
MIN_CLASS_SHARE = 0.10
LEAKAGE_SCORE = 0.98  # univariate AUC (binary) or balanced accuracy (multiclass)
ID_ORDER_SKILL = 0.60  # chance-corrected association of an ID's order with the target
OUTLIER_IQR = 3.0
NUMERIC_SHARE = 0.80  # share of cells that must parse for a text column to count as numeric
MAX_CLASSES = 20  # a numeric target with more distinct values is treated as continuous


class Severity(StrEnum):
    """How urgently a finding needs attention; ``error`` means do not train on it as it is."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class FindingCode(StrEnum):
    """Stable machine-readable finding codes; their order is the display order in a severity."""

    TARGET_MISSING = "target_missing"
    SINGLE_CLASS_TARGET = "single_class_target"
    LEAKAGE_SUSPECT = "leakage_suspect"
    MIXED_TYPES = "mixed_types"
    DUPLICATE_IDS = "duplicate_ids"
    DUPLICATE_ROWS = "duplicate_rows"
    ID_LIKE_COLUMN = "id_like_column"
    IMPLAUSIBLE_ZERO = "implausible_zero"
    OUT_OF_RANGE = "out_of_range"
    HIGH_MISSINGNESS = "high_missingness"
    MISSING_VALUES = "missing_values"
    CONSTANT_COLUMN = "constant_column"
    NEAR_CONSTANT_COLUMN = "near_constant_column"
    HIGH_CARDINALITY = "high_cardinality"
    CLASS_IMBALANCE = "class_imbalance"
    EXTREME_OUTLIER = "extreme_outlier"


class ColumnKind(StrEnum):
    """What a column holds, inferred from its values (and, for IDs, its name)."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BINARY = "binary"
    ID = "id"
    TEXT = "text"
    DATETIME = "datetime"
    EMPTY = "empty"


_SEVERITY_RANK = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
_CODE_RANK = {code: i for i, code in enumerate(FindingCode)}


@dataclass
class Finding:
    """One problem found in the table.

    Attributes:
        severity: ``error``, ``warning`` or ``info``.
        code: Stable code, e.g. ``implausible_zero``.
        column: The column concerned, or None for table-wide findings.
        message: Plain-language description naming the column, the count and example rows.
        suggestion: What to do about it.
        rows: Up to ``MAX_EXAMPLE_ROWS`` example rows (1 = first data row after the header).
        count: How many rows (or values) are affected.
    """

    severity: Severity
    code: FindingCode
    column: str | None
    message: str
    suggestion: str
    rows: list[int] = field(default_factory=list)
    count: int = 0


@dataclass
class ColumnProfile:
    """Summary of one column.

    ``min``/``max``/``mean`` are set for columns with numeric values (``min``/``max`` hold ISO
    timestamps for datetime columns); ``top_values`` holds ``(value, count)`` pairs for
    categorical, binary, text and ID columns. ``flags`` lists the codes of findings about the
    column, plus ``target`` for the target.
    """

    name: str
    kind: ColumnKind
    dtype: str
    n_missing: int
    pct_missing: float
    n_unique: int
    min: float | str | None = None
    max: float | str | None = None
    mean: float | None = None
    top_values: list[tuple[str, int]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


@dataclass
class QualityReport:
    """Result of ``assess_quality``: column profiles, findings (worst first) and class balance."""

    source: str
    n_rows: int
    n_columns: int
    columns: list[ColumnProfile]
    findings: list[Finding]
    class_balance: dict[str, Any] | None
    n_duplicate_rows: int
    target: str | None = None
    id_columns: list[str] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        """True when at least one finding has severity ``error``."""
        return any(f.severity is Severity.ERROR for f in self.findings)

    def counts(self) -> dict[str, int]:
        """Number of findings per severity, e.g. ``{"error": 1, "warning": 4, "info": 0}``."""
        return {s.value: sum(f.severity is s for f in self.findings) for s in Severity}

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict; NaN and infinities become None."""
        out = _plain(asdict(self))
        out["summary"] = self.counts()
        return out

    def render(self, console: Console) -> None:
        """Print the report as rich tables: overview, columns, findings, class balance."""
        _render(self, console)


# --------------------------------------------------------------------------------------------
# Names


def _tokens(name: object) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return [t for t in re.split(r"[^0-9a-zA-Z]+", spaced.lower()) if t]


def _matches(name: object, aliases: Sequence[str]) -> bool:
    """True when a short alias is a word of ``name`` or a long one (>= 5 letters) is inside it."""
    tokens = _tokens(name)
    norm = "".join(tokens)
    return any(a == norm or a in tokens or (len(a) >= 5 and a in norm) for a in aliases)


# fmt: off
_ID_NAMES = (
    "id", "mrn", "usubjid", "subjid", "subject", "patient", "patientid", "subjectid", "recordid",
    "rownames", "rowid", "index", "uuid", "guid", "pid", "caseid", "encounterid", "admissionid",
    "hadmid", "stayid", "visitid", "sampleid", "patientnumber", "patientno", "recordnumber",
)
_LEAKY_WORDS = ("outcome", "diagnosis", "diag", "dx", "result", "results", "label", "target",
                "class", "prognosis")
_NO_RANGE_WORDS = {"ratio", "delta", "change", "diff", "difference", "log", "zscore", "z", "rank",
                   "std", "sd", "se", "error", "residual", "hdl", "ldl", "vldl"}
_NON_NEGATIVE = ("count", "number", "duration", "days", "months", "years", "weeks", "hours",
                 "minutes", "los", "dose", "visits", "size", "length", "area", "perimeter",
                 "radius", "volume", "concentration", "amount", "pregnancies")
# fmt: on


@dataclass(frozen=True)
class _Range:
    what: str
    aliases: tuple[str, ...]
    bounds: tuple[tuple[float, float, str], ...]  # (low, high, unit); first holding the median
    zero_impossible: bool = True
    exclude: tuple[str, ...] = ()


# fmt: off
# First match wins, so specific names come before generic ones (diastolic before "bp").
_RANGES = (
    _Range("diastolic blood pressure", ("diastolic", "dbp", "diabp", "diasbp", "aplo"),
           ((20, 200, "mmHg"),)),
    _Range("systolic blood pressure", ("systolic", "sbp", "sysbp", "trestbps", "aphi"),
           ((40, 300, "mmHg"),)),
    _Range("blood pressure", ("bloodpressure", "bp", "restingbp"), ((20, 300, "mmHg"),)),
    _Range("heart rate", ("heartrate", "hr", "pulse", "thalach", "thalch", "maxhr"),
           ((20, 250, "beats/min"),), exclude=("pressure",)),
    _Range("respiratory rate", ("resprate", "respiratoryrate"), ((4, 80, "breaths/min"),)),
    _Range("age", ("age",), ((0, 120, "years"),), zero_impossible=False,
           exclude=("days", "months", "weeks", "hours", "onset")),
    _Range("total cholesterol", ("cholesterol", "chol", "totchol"),
           ((50, 800, "mg/dL"), (1, 20, "mmol/L"))),
    _Range("glucose", ("glucose", "glu"), ((10, 1500, "mg/dL"), (0.5, 85, "mmol/L"))),
    _Range("BMI", ("bmi", "bodymassindex"), ((10, 90, "kg/m²"),)),
    _Range("body temperature", ("temperature", "temp", "bodytemp"),
           ((25, 45, "°C"), (77, 113, "°F"))),
    _Range("oxygen saturation", ("spo2", "sao2", "o2sat", "oxygensaturation"), ((0, 100, "%"),)),
    _Range("body weight", ("weight", "bodyweight"), ((0.2, 650, "kg or lb"),)),
    _Range("height", ("height",), ((20, 280, "cm"), (0.2, 2.8, "m"))),
    _Range("skin-fold thickness", ("skinthickness", "skin", "triceps"), ((1, 100, "mm"),)),
    _Range("insulin", ("insulin",), ((0.5, 3000, "µU/mL"),)),
    _Range("creatinine", ("creatinine",), ((0.1, 30, "mg/dL"), (8, 2700, "µmol/L"))),
    _Range("haemoglobin", ("hemoglobin", "haemoglobin", "hgb", "hb"),
           ((2, 25, "g/dL"), (20, 250, "g/L"))),
    _Range("sodium", ("sodium",), ((90, 200, "mmol/L"),)),
    _Range("potassium", ("potassium",), ((1, 12, "mmol/L"),)),
    _Range("ejection fraction", ("ejectionfraction",), ((5, 95, "%"),)),
    _Range("number of pregnancies", ("pregnancies", "pregnant"), ((0, 30, "count"),),
           zero_impossible=False),
)
# fmt: on


def _physiological_range(name: object) -> _Range | None:
    words = set(_tokens(name))
    if words & _NO_RANGE_WORDS:
        return None
    for rng in _RANGES:
        if _matches(name, rng.aliases) and not words & set(rng.exclude):
            return rng
    return None


# --------------------------------------------------------------------------------------------
# Column analysis

_DATE_RE = re.compile(
    r"^(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})"
    r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)

_TZ_RE = r"\d:\d{2}(?::\d{2})?(?:\.\d+)?\s*(?:Z|[+-]\d{2}:?\d{2})$"  # a time with an offset


@dataclass
class _Col:
    name: str
    raw: pd.Series
    present: np.ndarray  # bool, non-missing cells
    kind: ColumnKind = ColumnKind.CATEGORICAL
    values: pd.Series | None = None  # float values (NaN where missing or unparsable)
    bad: np.ndarray | None = None  # non-missing cells that do not parse as the column's type
    dates: pd.Series | None = None
    id_reason: str = ""


def _rows(mask: np.ndarray) -> list[int]:
    return [int(p) + 1 for p in np.flatnonzero(mask)[:MAX_EXAMPLE_ROWS]]


def _row_text(rows: list[int], total: int) -> str:
    listed = ", ".join(map(str, rows))
    if total > len(rows):
        return f"row{'s' if total > 1 else ''} {listed}, … (first {len(rows)} of {total})"
    return f"row{'s' if total > 1 else ''} {listed}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _num(x: float) -> str:
    return f"{x:.6g}"


def _show(value: object) -> str:
    """A cell value as the user typed it: strings quoted, numbers plain."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float):
        return _num(value)
    return str(value)


def _examples(col: _Col, mask: np.ndarray) -> str:
    pos = np.flatnonzero(mask)[:5]
    return ", ".join(f"row {p + 1}: {_show(col.raw.iloc[p])}" for p in pos)


def _label(value: object) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _classify(name: str, raw: pd.Series, *, declared_id: bool, is_target: bool) -> _Col:
    present = raw.notna().to_numpy()
    col = _Col(name=name, raw=raw, present=present)
    n_present = int(present.sum())
    if n_present == 0:
        col.kind = ColumnKind.EMPTY
        return col
    n_unique = int(raw.nunique(dropna=True))
    if pd.api.types.is_bool_dtype(raw.dtype):
        col.kind = ColumnKind.BINARY
    elif pd.api.types.is_datetime64_any_dtype(raw.dtype):
        col.kind, col.dates = ColumnKind.DATETIME, raw
    elif pd.api.types.is_numeric_dtype(raw.dtype):
        col.values = raw.astype(float)
        col.kind = _numeric_kind(col.values[present], n_unique)
    else:
        text = raw.astype(str).str.strip().where(raw.notna())
        parsed = pd.to_numeric(text, errors="coerce")
        is_date = text.str.match(_DATE_RE, na=False).to_numpy(dtype=bool)
        if parsed.notna().sum() >= max(NUMERIC_SHARE * n_present, 1):
            col.values = parsed.astype(float)
            col.bad = present & parsed.isna().to_numpy()
            col.kind = _numeric_kind(col.values.dropna(), n_unique)
        elif is_date.sum() >= 0.9 * n_present:
            utc = bool(text.str.contains(_TZ_RE, na=False).any())
            first = pd.to_numeric(text.str.extract(r"^(\d{1,2})[-/.]", expand=False))
            col.dates = pd.to_datetime(
                text.where(is_date),
                errors="coerce",
                format="mixed",
                utc=utc,
                dayfirst=bool((first > 12).any()),
            )
            col.bad = present & col.dates.isna().to_numpy()
            col.kind = ColumnKind.DATETIME
        elif n_unique <= 2:
            col.kind = ColumnKind.BINARY
        elif n_unique > 20 and (n_unique > 100 or n_unique > 0.5 * n_present):
            col.kind = ColumnKind.TEXT
    col.id_reason = "" if is_target else _id_reason(col, n_unique, declared_id)
    if col.id_reason:
        col.kind = ColumnKind.ID
    return col


def is_coded_category(values: pd.Series) -> bool:
    """True for a numeric column of a few integer codes (3 to 10 levels, each level backed by at
    least 20 rows on average), such as ``race`` = 1/2/3 or ``ca`` = 0..3: a category, not a
    quantity. The one rule for both ``data check`` and what ``train`` one-hot encodes."""
    present = pd.to_numeric(values, errors="coerce").dropna().astype(float)
    n_unique = int(present.nunique())
    integer = bool(np.all(np.mod(present.to_numpy(), 1) == 0))
    return integer and 2 < n_unique <= 10 and len(present) >= 20 * n_unique


def _numeric_kind(values: pd.Series, n_unique: int) -> ColumnKind:
    if n_unique == 2:
        return ColumnKind.BINARY
    if is_coded_category(values):
        return ColumnKind.CATEGORICAL  # small integer codes such as ca = 0..3
    return ColumnKind.NUMERIC


def _id_reason(col: _Col, n_unique: int, declared: bool) -> str:
    if declared:
        return "declared as an ID column"
    tokens = _tokens(col.name)
    norm = "".join(tokens)
    by_name = norm in _ID_NAMES or norm.startswith("unnamed") or tokens[-1:] in (["id"], ["mrn"])
    reasons = ["its name marks it as an identifier"] if by_name else []
    n_present = int(col.present.sum())
    if n_present < 20 or col.kind in (ColumnKind.DATETIME, ColumnKind.BINARY):
        pass
    elif col.values is not None and (col.bad is None or not col.bad.any()):
        vals = col.values[col.present].to_numpy()
        if n_unique == n_present and np.all(np.mod(vals, 1) == 0):
            reasons.append(
                "its values count up row by row like a row number"
                if np.all(np.diff(vals) > 0)
                else "it holds a different whole number in every row"
            )
    elif col.values is None and n_unique >= 0.98 * n_present:
        text = col.raw[col.present].astype(str)
        if not text.str.contains(r"\s").any() and text.str.len().max() <= 40:
            reasons.append("it holds a different short code in nearly every row")
    return " and ".join(reasons)


# --------------------------------------------------------------------------------------------
# Checks


def assess_quality(
    df: pd.DataFrame,
    *,
    target: str | None = None,
    id_columns: Sequence[str] = (),
    source: str = "<table>",
) -> QualityReport:
    """Profile ``df`` and list data-quality findings, worst first.

    Args:
        df: The table as ``pandas.read_csv`` returned it (missing tokens already NaN). It is
            not modified.
        target: Name of the outcome column; enables class balance and leakage checks.
        id_columns: Columns known to identify patients/records (duplicates are then reported
            as repeated patients, not as an ID-like feature).
        source: Name of the file or table, shown in the report.

    Returns:
        A ``QualityReport``. Row numbers in it count data rows from 1 (first row after the
        header), by position.

    Raises:
        ConfigError: ``df`` is not a DataFrame or ``id_columns`` is a plain string.
        EmptyDataError: ``df`` has no rows or no columns.
        SchemaError: ``target`` or an ID column is not a column of ``df``.
        DataError: ``df`` has duplicate column names.
    """
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(
            f"The 'df' parameter of assess_quality must be a pandas DataFrame. "
            f"Got {type(df).__name__} instead."
        )
    if isinstance(id_columns, str):
        raise ConfigError(
            f"The 'id_columns' parameter of assess_quality must be a sequence of column names. "
            f"Got the string {id_columns!r} instead; pass [{id_columns!r}]."
        )
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise EmptyDataError(f"{source} has {df.shape[0]} rows and {df.shape[1]} columns.")
    names = [str(c) for c in df.columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"{source} has duplicate column names: {', '.join(dupes)}.")
    for wanted, what in [(target, "target")] + [(c, "ID column") for c in id_columns]:
        if wanted is not None and str(wanted) not in names:
            close = difflib.get_close_matches(str(wanted), names, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise SchemaError(f"The {what} '{wanted}' is not a column of {source}.{hint}")

    target = None if target is None else str(target)
    declared = {str(c) for c in id_columns}
    cols = [
        _classify(n, df.iloc[:, j], declared_id=n in declared, is_target=n == target)
        for j, n in enumerate(names)
    ]
    findings: list[Finding] = []
    for col in cols:
        findings += _column_findings(col, is_target=col.name == target)

    dup_mask = df.duplicated(keep="first").to_numpy()
    n_dup = int(dup_mask.sum())
    if n_dup:
        first = df.duplicated(keep=False).to_numpy() & ~dup_mask
        msg = (
            f"{_count(n_dup, 'row')} repeat an earlier row exactly "
            f"({_row_text(_rows(dup_mask), n_dup)}; first copies at "
            f"{_row_text(_rows(first), int(first.sum()))})."
        )
        findings.append(
            _finding(Severity.WARNING, FindingCode.DUPLICATE_ROWS, None, msg, mask=dup_mask)
        )

    balance = None
    if target is not None:
        tcol = next(c for c in cols if c.name == target)
        findings += _leakage_findings(tcol, [c for c in cols if c.name != target])
        balance, more = _class_balance(tcol)
        findings += more

    findings.sort(
        key=lambda f: (
            _SEVERITY_RANK[f.severity],
            _CODE_RANK[f.code],
            names.index(f.column) if f.column is not None else -1,
        )
    )
    profiles = [_profile(c, findings, target) for c in cols]
    return QualityReport(
        source=source,
        n_rows=len(df),
        n_columns=df.shape[1],
        columns=profiles,
        findings=findings,
        class_balance=balance,
        n_duplicate_rows=n_dup,
        target=target,
        id_columns=[c.name for c in cols if c.kind is ColumnKind.ID],
    )


_SUGGESTIONS = {
    FindingCode.TARGET_MISSING: "Find the true outcome for these rows or remove them explicitly; "
    "medassist never fills a missing outcome with a default class.",
    FindingCode.SINGLE_CLASS_TARGET: "A classifier needs at least two classes: check the filter "
    "or export that produced the file.",
    FindingCode.LEAKAGE_SUSPECT: "Check whether it is recorded after (or derived from) the "
    "outcome; if so, drop it before training, as a model relying on it fails in practice.",
    FindingCode.DUPLICATE_IDS: "If these are the same patient, pass --id-column {column} so train "
    "and test never share a patient; otherwise the test score is optimistic.",
    FindingCode.DUPLICATE_ROWS: "Check whether these are data-entry repeats and remove them in "
    "the source; copies in both train and test splits inflate the test score.",
    FindingCode.ID_LIKE_COLUMN: "Pass it as --id-column {column} so splits keep each patient's "
    "rows together, and do not use it as a feature.",
    FindingCode.IMPLAUSIBLE_ZERO: "Treat these zeros as missing: blank them in the source or "
    "declare 0 a missing-value token, then impute in the pipeline with a missingness indicator.",
    FindingCode.OUT_OF_RANGE: "Check these entries against the record (unit mix-up, typo, wrong "
    "column); correct them or blank them so they count as missing.",
    FindingCode.HIGH_MISSINGNESS: "Check why it is missing (not measured? another hospital?); "
    "consider dropping it or keeping only a 'was measured' indicator.",
    FindingCode.MISSING_VALUES: "Impute inside the training pipeline (fitted on the training "
    "split) and keep a missingness indicator; do not overwrite the cells.",
    FindingCode.CONSTANT_COLUMN: "It carries no information; drop it from the features.",
    FindingCode.NEAR_CONSTANT_COLUMN: "Check the rare values are real; a near-constant feature "
    "rarely helps and can make cross-validation folds unstable.",
    FindingCode.HIGH_CARDINALITY: "Drop it or map it to a few categories before training; "
    "one-hot encoding free text or codes overfits.",
    FindingCode.CLASS_IMBALANCE: "Use stratified splits and class weights, and report per-class "
    "recall and PR-AUC rather than accuracy.",
    FindingCode.EXTREME_OUTLIER: "Confirm they are real measurements; if the column is skewed, a "
    "log transform or robust scaling keeps them from dominating.",
}


def _finding(
    severity: Severity,
    code: FindingCode,
    column: str | None,
    message: str,
    *,
    mask: np.ndarray | None = None,
    count: int = 0,
    suggestion: str | None = None,
) -> Finding:
    """Build a finding; ``mask`` marks the affected rows and gives the count and examples."""
    if suggestion is None:
        suggestion = _SUGGESTIONS[code].format(column=column)
    if mask is None:
        return Finding(severity, code, column, message, suggestion, [], count)
    return Finding(severity, code, column, message, suggestion, _rows(mask), int(mask.sum()))


def _sentence(parts: list[str]) -> str:
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def _column_findings(col: _Col, *, is_target: bool) -> list[Finding]:
    out = _missing_findings(col, is_target=is_target)
    if col.kind is ColumnKind.EMPTY:
        return out
    out += _mixed_type_findings(col)
    if col.kind is ColumnKind.ID:
        return out + _id_findings(col)
    if is_target:
        return out
    out += _spread_findings(col)
    if col.values is not None and col.kind is not ColumnKind.BINARY:
        out += _range_findings(col, col.values)
    return out


def _missing_findings(col: _Col, *, is_target: bool) -> list[Finding]:
    missing = ~col.present
    n, n_rows, name = int(missing.sum()), len(missing), col.name
    if not n:
        return []
    where = _row_text(_rows(missing), n)
    if is_target:
        msg = f"The target '{name}' is missing in {n} of {n_rows} rows ({where})."
        return [_finding(Severity.ERROR, FindingCode.TARGET_MISSING, name, msg, mask=missing)]
    share = n / n_rows
    code = FindingCode.HIGH_MISSINGNESS if share >= HIGH_MISSING else FindingCode.MISSING_VALUES
    msg = f"Column '{name}' is missing in {n} of {n_rows} rows ({share:.1%}; {where})."
    if code is FindingCode.HIGH_MISSINGNESS:
        msg += " That is too much for most models to use it reliably as it is."
    return [_finding(Severity.WARNING, code, name, msg, mask=missing)]


def _mixed_type_findings(col: _Col) -> list[Finding]:
    if col.bad is None or not col.bad.any():
        return []
    what = "dates" if col.kind is ColumnKind.DATETIME else "numbers"
    bad_text = col.raw[col.bad].astype(str)
    hints = []
    if bad_text.str.fullmatch(r"\s*-?\d+,\d+\s*").any():
        hints.append("values like '12,5' use a decimal comma: re-export the file with '.'")
    if bad_text.str.match(r"\s*[<>]=?").any():
        hints.append("values like '<5' are censored results: decide on a rule and record it")
    hints.append(
        "correct these cells in the source file, or blank them so they are read as missing; "
        "medassist will not guess what they meant"
    )
    n = int(col.bad.sum())
    msg = (
        f"Column '{col.name}' holds {what}, but {_count(n, 'cell')} do not parse as {what} "
        f"({_examples(col, col.bad)})."
    )
    return [
        _finding(
            Severity.ERROR, FindingCode.MIXED_TYPES, col.name, msg,
            mask=col.bad, suggestion=_sentence(hints),
        )
    ]  # fmt: skip


def _id_findings(col: _Col) -> list[Finding]:
    declared = col.id_reason.startswith("declared")
    out = []
    if not declared:
        msg = f"Column '{col.name}' looks like a patient or record identifier: {col.id_reason}."
        out.append(_finding(Severity.WARNING, FindingCode.ID_LIKE_COLUMN, col.name, msg))
    counts = col.raw.value_counts(dropna=True)
    repeated = counts[counts > 1]
    if repeated.empty:
        return out
    mask = col.present & col.raw.isin(repeated.index).to_numpy()
    example = repeated.index[0]
    ex_rows = ", ".join(str(r) for r in _rows((col.raw == example).to_numpy())[:5])
    msg = (
        f"{_count(len(repeated), 'value')} of '{col.name}' occur in more than one row "
        f"({int(mask.sum())} rows in all), e.g. {_show(example)} in rows {ex_rows}."
    )
    severity, hint = Severity.WARNING, None
    if declared:
        severity, hint = Severity.INFO, "Group-aware splits keep each patient's rows together."
    out.append(
        _finding(severity, FindingCode.DUPLICATE_IDS, col.name, msg, mask=mask, suggestion=hint)
    )
    return out


def _spread_findings(col: _Col) -> list[Finding]:
    counts = col.raw.value_counts(dropna=True)
    n_present, name, top = int(col.present.sum()), col.name, counts.index[0]
    out = []
    if len(counts) == 1:
        msg = f"Column '{name}' has the same value ({_show(top)}) in every non-missing row."
        out.append(_finding(Severity.WARNING, FindingCode.CONSTANT_COLUMN, name, msg))
    elif counts.iloc[0] >= NEAR_CONSTANT * n_present:
        rare = col.present & (col.raw != top).to_numpy()
        n = int(rare.sum())
        msg = (
            f"Column '{name}' is {_show(top)} in {counts.iloc[0] / n_present:.1%} of non-missing "
            f"rows; only {n} differ ({_row_text(_rows(rare), n)})."
        )
        out.append(_finding(Severity.INFO, FindingCode.NEAR_CONSTANT_COLUMN, name, msg, mask=rare))
    if col.kind is ColumnKind.TEXT:
        msg = (
            f"Column '{name}' has {len(counts)} distinct values in {n_present} rows; it looks "
            "like free text or a code, not a category."
        )
        out.append(
            _finding(Severity.WARNING, FindingCode.HIGH_CARDINALITY, name, msg, count=len(counts))
        )
    return out


def _range_findings(col: _Col, values: pd.Series) -> list[Finding]:
    vals = values.to_numpy()
    valid = ~np.isnan(vals)
    flagged = np.zeros_like(valid)
    rng = _physiological_range(col.name)
    name = col.name
    out = []
    if rng is not None:
        zero = valid & (vals == 0) if rng.zero_impossible else np.zeros_like(valid)
        if zero.any():
            n = int(zero.sum())
            msg = (
                f"Column '{name}' ({rng.what}) is 0 in {_count(n, 'row')} "
                f"({_row_text(_rows(zero), n)}); 0 is not a possible value and usually stands "
                "for 'not measured'."
            )
            out.append(
                _finding(Severity.WARNING, FindingCode.IMPLAUSIBLE_ZERO, name, msg, mask=zero)
            )
            flagged |= zero
        rest = valid & ~zero
        if rest.any():
            median = float(np.median(vals[rest]))
            unit = next(((lo, hi, u) for lo, hi, u in rng.bounds if lo <= median <= hi), None)
            if unit is None:
                usual = " or ".join(f"{_num(lo)}–{_num(hi)} {u}" for lo, hi, u in rng.bounds)
                msg = (
                    f"Column '{name}' was matched to {rng.what} by its name, but its median "
                    f"({_num(median)}) lies outside the usual range ({usual}); range check skipped."
                )
                hint = "Check the unit, or whether the column means something else."
                out.append(
                    _finding(Severity.INFO, FindingCode.OUT_OF_RANGE, name, msg, suggestion=hint)
                )
            else:
                lo, hi, u = unit
                bad = rest & ((vals < lo) | (vals > hi))
                if bad.any():
                    msg = (
                        f"Column '{name}' has {_count(int(bad.sum()), 'value')} outside the "
                        f"plausible range for {rng.what} ({_num(lo)}–{_num(hi)} {u}): "
                        f"{_examples(col, bad)}."
                    )
                    out.append(
                        _finding(Severity.WARNING, FindingCode.OUT_OF_RANGE, name, msg, mask=bad)
                    )
                    flagged |= bad
    elif _matches(name, _NON_NEGATIVE) and not set(_tokens(name)) & _NO_RANGE_WORDS:
        neg = valid & (vals < 0)
        if neg.any():
            msg = (
                f"Column '{name}' cannot be negative but has "
                f"{_count(int(neg.sum()), 'negative value')}: {_examples(col, neg)}."
            )
            hint = (
                "Check whether a sign or a missing-value code (e.g. -1, -9) was used; correct or "
                "blank these cells."
            )
            out.append(
                _finding(
                    Severity.WARNING, FindingCode.OUT_OF_RANGE, name, msg, mask=neg, suggestion=hint
                )
            )
            flagged |= neg
    if col.kind is ColumnKind.NUMERIC:
        out += _outlier_findings(col, vals, valid & ~flagged)
    return out


def _outlier_findings(col: _Col, vals: np.ndarray, usable: np.ndarray) -> list[Finding]:
    """Values (``vals``: the column's floats) more than ``OUTLIER_IQR`` interquartile ranges beyond the quartiles."""
    if usable.sum() < 20:
        return []
    q1, q3 = np.percentile(vals[usable], [25, 75])
    iqr = q3 - q1
    far = usable & ((vals < q1 - OUTLIER_IQR * iqr) | (vals > q3 + OUTLIER_IQR * iqr))
    if iqr <= 0 or not far.any():
        return []
    msg = (
        f"Column '{col.name}' has {_count(int(far.sum()), 'extreme value')}, more than "
        f"{OUTLIER_IQR:g} × IQR beyond the quartiles ({_num(q1)}–{_num(q3)}): "
        f"{_examples(col, far)}."
    )
    return [_finding(Severity.INFO, FindingCode.EXTREME_OUTLIER, col.name, msg, mask=far)]


# --------------------------------------------------------------------------------------------
# Target: leakage and class balance


def _order_codes(col: _Col, mask: np.ndarray) -> np.ndarray:
    """Values in ``mask`` as floats that keep their sort order (NaN where missing)."""
    if col.values is not None:
        return col.values.to_numpy()[mask]
    if col.dates is not None:
        dates = pd.to_datetime(col.dates[mask])
        return (dates - dates.min()).dt.total_seconds().to_numpy(dtype=float)
    return pd.factorize(col.raw[mask].astype(str), sort=True)[0].astype(float)


def _skill(x: np.ndarray, y: np.ndarray, *, ordered: bool) -> tuple[float, float, str]:
    """Best single-feature score for predicting ``y`` from ``x``, its chance level and name.

    Binary ``y`` and ordered ``x``: ROC AUC in the better direction. Otherwise the balanced
    accuracy of the best split of ``x`` into as many intervals as classes (ordered ``x``) or of
    mapping each value of ``x`` to its majority class. Balanced accuracy, unlike accuracy, does
    not reward always predicting the majority class.
    """
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.tree import DecisionTreeClassifier

    classes = np.unique(y)
    if ordered and len(classes) == 2:
        auc = float(roc_auc_score(y == classes[1], x))
        return max(auc, 1 - auc), 0.5, "AUC"
    if ordered:
        tree = DecisionTreeClassifier(max_leaf_nodes=len(classes), random_state=0)
        pred = tree.fit(x.reshape(-1, 1), y).predict(x.reshape(-1, 1))
    else:
        pred = pd.crosstab(x, y).idxmax(axis=1).reindex(x).to_numpy()
    return float(balanced_accuracy_score(y, pred)), 1 / len(classes), "balanced accuracy"


def _relabelling(col: _Col, tcol: _Col, both: np.ndarray) -> str:
    """Describe ``col`` if it equals the target or maps one-to-one onto it, else ''."""
    x_raw, y_raw = col.raw[both].astype(str), tcol.raw[both].astype(str)
    if (x_raw.to_numpy() == y_raw.to_numpy()).all() or (
        col.values is not None
        and tcol.values is not None
        and np.array_equal(col.values[both], tcol.values[both])
    ):
        return f"it is identical to the target '{tcol.name}'"
    if y_raw.nunique() > len(y_raw) / 2:
        return ""  # (nearly) unique values map one-to-one onto anything
    pairs = pd.DataFrame({"x": pd.factorize(x_raw)[0], "y": pd.factorize(y_raw)[0]})
    if pairs.groupby("x")["y"].nunique().max() > 1 or pairs.groupby("y")["x"].nunique().max() > 1:
        return ""
    return f"it is a one-to-one relabelling of the target '{tcol.name}'"


def _univariate(col: _Col, tcol: _Col, both: np.ndarray) -> tuple[float, float, str] | None:
    """Single-feature score of ``col`` for the target, or None where it cannot be measured."""
    y = pd.factorize(tcol.raw[both].astype(str))[0]
    ordered = col.kind is ColumnKind.ID or col.values is not None
    if ordered:
        x = _order_codes(col, both)
    elif col.raw[both].nunique() <= both.sum() / 5:  # more categories than that would overfit
        x = pd.factorize(col.raw[both].astype(str))[0].astype(float)
    else:
        return None
    keep = ~np.isnan(x)
    if keep.sum() < 10 or len(np.unique(y[keep])) < 2:
        return None
    return _skill(x[keep], y[keep], ordered=ordered)


def _leakage_findings(tcol: _Col, features: list[_Col]) -> list[Finding]:
    out: list[Finding] = []
    n_classes = int(tcol.raw.nunique(dropna=True))
    has_classes = n_classes > 1 and (tcol.values is None or n_classes <= MAX_CLASSES)
    for col in features:
        both = col.present & tcol.present
        if col.kind is ColumnKind.EMPTY:
            continue
        # A value recorded for one outcome only (a date of death, a discharge summary code) is
        # written after the outcome: whether the cell is filled predicts the target.
        evidence = _presence_evidence(col, tcol) if has_classes else ""
        if evidence:
            msg = f"Column '{col.name}' is a label-leakage suspect: {evidence}."
            out.append(_finding(Severity.ERROR, FindingCode.LEAKAGE_SUSPECT, col.name, msg))
            continue
        if both.sum() < 10:
            continue
        if col.kind is ColumnKind.ID:
            if has_classes:
                out += _id_order_findings(col, tcol, both)
            continue
        if col.kind is ColumnKind.DATETIME:
            measured = _univariate(col, tcol, both) if has_classes else None
            if measured is not None and measured[0] >= LEAKAGE_SCORE:
                msg = (f"Column '{col.name}' is a label-leakage suspect: on its own its date predicts the target "
                       f"'{tcol.name}' ({measured[2]} {measured[0]:.3f}), as a date recorded after the outcome would.")
                out.append(_finding(Severity.ERROR, FindingCode.LEAKAGE_SUSPECT, col.name, msg))
            continue
        evidence = _relabelling(col, tcol, both) if n_classes > 1 else ""
        if not evidence and has_classes and col.kind is not ColumnKind.TEXT:
            measured = _univariate(col, tcol, both)
            if measured is not None and measured[0] >= LEAKAGE_SCORE:
                score, _, metric = measured
                evidence = f"on its own it predicts the target '{tcol.name}' ({metric} {score:.3f})"
        if evidence:
            msg = f"Column '{col.name}' is a label-leakage suspect: {evidence}."
            out.append(_finding(Severity.ERROR, FindingCode.LEAKAGE_SUSPECT, col.name, msg))
        elif why := _leaky_name(col.name, tcol.name):
            msg = f"Column '{col.name}' may leak the label: its name contains {why}."
            hint = (
                "Confirm it is known at prediction time, before the outcome; otherwise drop it "
                "from the features."
            )
            out.append(
                _finding(
                    Severity.WARNING, FindingCode.LEAKAGE_SUSPECT, col.name, msg, suggestion=hint
                )
            )
    return out


def _presence_evidence(col: _Col, tcol: _Col) -> str:
    """Why whether ``col`` is filled gives the target away, or ''. Needs at least 10 filled and
    10 empty cells among rows with a known target, so a column missing in a handful of rows is
    never called a leak."""
    known = tcol.present
    filled = col.present[known]
    if filled.sum() < 10 or (~filled).sum() < 10:
        return ""
    y = pd.factorize(tcol.raw[known].astype(str))[0]
    if len(np.unique(y)) < 2:
        return ""
    score, _, metric = _skill(filled.astype(float), y, ordered=True)
    if score < LEAKAGE_SCORE:
        return ""
    return (f"whether it is filled in predicts the target '{tcol.name}' on its own ({metric} {score:.3f}), "
            "as a value recorded only after the outcome would be")


def _leaky_name(name: str, target: str) -> str:
    """Why the name ``name`` hints at the outcome ``target``, or ''."""
    tokens = _tokens(name)
    t_norm = "".join(_tokens(target))
    if t_norm in tokens or (len(t_norm) >= 5 and t_norm in "".join(tokens)):
        return f"the target name '{target}'"
    words = sorted(set(tokens) & set(_LEAKY_WORDS))
    return f"the word '{words[0]}'" if words else ""


def _id_order_findings(col: _Col, tcol: _Col, both: np.ndarray) -> list[Finding]:
    """An ID whose sort order predicts the target: the file was assembled class by class."""
    measured = _univariate(col, tcol, both)
    if measured is None:
        return []
    score, chance, metric = measured
    if (score - chance) / (1 - chance) < ID_ORDER_SKILL:
        return []
    msg = (
        f"The order of ID column '{col.name}' predicts the target '{tcol.name}' "
        f"({metric} {score:.3f}): the rows look sorted by class."
    )
    hint = (
        "Never use the ID as a feature; shuffle or group-split the rows and check how the file "
        "was assembled."
    )
    severity = Severity.ERROR if score >= LEAKAGE_SCORE else Severity.WARNING
    return [_finding(severity, FindingCode.LEAKAGE_SUSPECT, col.name, msg, suggestion=hint)]


def _class_balance(tcol: _Col) -> tuple[dict[str, Any] | None, list[Finding]]:
    """Counts and shares per class; None for a continuous (many-valued numeric) target."""
    counts = tcol.raw.value_counts(dropna=True)
    if counts.empty or (tcol.values is not None and len(counts) > MAX_CLASSES):
        return None, []
    if tcol.values is not None:
        counts = counts.sort_index()
    else:
        counts = counts.iloc[np.argsort([str(v) for v in counts.index], kind="stable")]
    total = int(counts.sum())
    labels = [_label(v) for v in counts.index]
    props = {lab: int(n) / total for lab, n in zip(labels, counts, strict=True)}
    minority = min(props, key=props.__getitem__) if len(props) > 1 else None
    class_counts = dict(zip(labels, map(int, counts), strict=True))
    balance: dict[str, Any] = {
        "n_classes": len(counts),
        "counts": class_counts,
        "proportions": props,
        "minority_class": minority,
    }
    name = tcol.name
    if minority is None:
        msg = f"The target '{name}' has only one class ('{labels[0]}') in {total} rows."
        return balance, [
            _finding(Severity.ERROR, FindingCode.SINGLE_CLASS_TARGET, name, msg, count=total)
        ]
    if props[minority] >= MIN_CLASS_SHARE:
        return balance, []
    n = class_counts[minority]
    msg = (
        f"Class '{minority}' of the target '{name}' has only {n} of {total} rows "
        f"({props[minority]:.1%})."
    )
    return balance, [_finding(Severity.WARNING, FindingCode.CLASS_IMBALANCE, name, msg, count=n)]


# --------------------------------------------------------------------------------------------
# Profiles, serialisation, rendering


def _profile(col: _Col, findings: list[Finding], target: str | None) -> ColumnProfile:
    n = len(col.raw)
    n_missing = int((~col.present).sum())
    prof = ColumnProfile(
        name=col.name,
        kind=col.kind,
        dtype=str(col.raw.dtype),
        n_missing=n_missing,
        pct_missing=round(100 * n_missing / n, 2),
        n_unique=int(col.raw.nunique(dropna=True)),
    )
    if col.values is not None and col.values.notna().any():
        prof.min, prof.max = float(col.values.min()), float(col.values.max())
        prof.mean = float(col.values.mean())
    elif col.dates is not None and col.dates.notna().any():
        prof.min, prof.max = col.dates.min().isoformat(), col.dates.max().isoformat()
    if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BINARY, ColumnKind.TEXT, ColumnKind.ID):
        top = col.raw.value_counts(dropna=True).head(5)
        prof.top_values = [(_label(v), int(c)) for v, c in top.items()]
    prof.flags = (["target"] if col.name == target else []) + list(
        dict.fromkeys(f.code.value for f in findings if f.column == col.name)
    )
    return prof


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, StrEnum):
        return obj.value
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _summary(p: ColumnProfile) -> str:
    if p.kind is ColumnKind.DATETIME and p.min is not None:
        return f"{p.min} … {p.max}"
    if p.top_values:
        return ", ".join(f"{v} ({c})" for v, c in p.top_values[:3])
    if p.min is not None:  # a numeric column: min, max and mean are floats (only dates hold ISO strings)
        return f"{_num(cast(float, p.min))} … {_num(cast(float, p.max))} (mean {_num(cast(float, p.mean))})"
    return "—"


def _render(report: QualityReport, console: Console) -> None:
    counts = report.counts()
    overview = Table(title=f"Data quality: {escape(report.source)}", show_header=False)
    overview.add_row("Rows × columns", f"{report.n_rows} × {report.n_columns}")
    overview.add_row("Duplicate rows", str(report.n_duplicate_rows))
    overview.add_row("Target", escape(report.target or "— (pass --target to check labels)"))
    overview.add_row("ID columns", escape(", ".join(report.id_columns)) or "—")
    overview.add_row(
        "Findings", ", ".join(f"[{_STYLE[Severity(s)]}]{n} {s}[/]" for s, n in counts.items())
    )
    console.print(overview)

    columns = Table(title="Columns")
    for head in (
        "Column",
        "Type",
        "dtype",
        "Missing",
        "Missing %",
        "Unique",
        "Range / top values",
        "Flags",
    ):
        justify: JustifyMethod = "right" if head in ("Missing", "Missing %", "Unique") else "left"
        columns.add_column(head, justify=justify, overflow="fold")
    for p in report.columns:
        columns.add_row(
            escape(p.name),
            p.kind.value,
            p.dtype,
            str(p.n_missing),
            f"{p.pct_missing:.1f}",
            str(p.n_unique),
            escape(_summary(p)),
            ", ".join(p.flags),
        )
    console.print(columns)

    if report.findings:
        table = Table(title="Findings (worst first)", show_lines=True)
        for head in ("Severity", "Code", "Column", "What", "Suggestion"):
            table.add_column(head, overflow="fold")
        for f in report.findings:
            table.add_row(
                f"[{_STYLE[f.severity]}]{f.severity.value}[/]",
                f.code.value,
                escape(f.column or "—"),
                escape(f.message),
                escape(f.suggestion),
            )
        console.print(table)
    else:
        console.print("[green]No findings.[/]")

    if report.class_balance:
        bal = Table(title=f"Class balance of '{escape(str(report.target))}'")
        bal_heads: tuple[tuple[str, JustifyMethod], ...] = (
            ("Class", "left"),
            ("Rows", "right"),
            ("Share", "right"),
            ("", "left"),
        )
        for head, bal_justify in bal_heads:
            bal.add_column(head, justify=bal_justify)
        for lab, n in report.class_balance["counts"].items():
            share = report.class_balance["proportions"][lab]
            bal.add_row(escape(lab), str(n), f"{share:.1%}", "█" * max(1, round(30 * share)))
        console.print(bal)
    console.print("Row numbers count data rows from 1 (the first row after the header).")
