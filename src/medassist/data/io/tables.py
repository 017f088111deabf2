"""Reading clinical tables (CSV/TSV) with errors that name the file, column and row."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from medassist.exceptions import DataError, DataFileNotFoundError, EmptyDataError, SchemaError

#: Tokens read as missing. pandas' defaults plus '?' (UCI files) and '.' (SAS/Stata exports).
MISSING_TOKENS = [
    "", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "none", "?", ".", "-", "#N/A", "n/a", "na",
]


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV file into a DataFrame; missing tokens become NaN, nothing else changes.

    Raises:
        DataFileNotFoundError: the file does not exist.
        EmptyDataError: the file is empty or has a header but no rows.
        DataError: the file is not a readable delimited table.
    """
    path = Path(path)
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: file not found (expected a CSV file with a header row).")
    if path.is_dir():
        raise DataError(f"{path}: is a directory (expected a CSV file with a header row).")
    if path.stat().st_size == 0:
        raise EmptyDataError(f"{path}: the file is empty (expected a CSV file with a header row).")
    sep = "\t" if path.suffix.lower() in {".tsv", ".tab"} else ","
    if sep == ",":
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                sample = fh.read(64_000)
            sep = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
        except (csv.Error, UnicodeDecodeError):
            sep = ","
    try:
        df = pd.read_csv(
            path, sep=sep, na_values=MISSING_TOKENS, keep_default_na=False,
            encoding="utf-8-sig", skipinitialspace=True, low_memory=False,
        )
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 CSV.") from e
    except pd.errors.EmptyDataError as e:
        raise EmptyDataError(f"{path}: no columns found (expected a CSV file with a header row).") from e
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: not a well-formed CSV table: {str(e).strip()}") from e
    if df.empty:
        raise EmptyDataError(f"{path}: the header is there but there are no data rows.")
    unnamed = [c for c in df.columns if str(c).startswith("Unnamed: ")]
    if unnamed and len(unnamed) == 1 and df.columns[0] == unnamed[0] and _is_row_counter(df[unnamed[0]]):
        # A pandas/R export's index column: a row counter without a name, never a feature.
        df = df.drop(columns=unnamed[0])
    dupes = [c for c in df.columns if "." in str(c) and str(c).rsplit(".", 1)[0] in df.columns and str(c).rsplit(".", 1)[1].isdigit()]
    if dupes:
        raise DataError(f"{path}: duplicate column names ({', '.join(map(str, dupes))}); every column needs a unique name.")
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _is_row_counter(s: pd.Series) -> bool:
    v = pd.to_numeric(s, errors="coerce")
    if v.isna().any():
        return False
    d = np.diff(v.to_numpy())
    return bool(len(d) == 0 or np.all(d == 1))


def require_columns(df: pd.DataFrame, columns: list[str], *, source: str, role: str = "column") -> None:
    """Raise ``SchemaError`` naming every missing column and the ones the table has."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = ", ".join(map(str, df.columns[:30])) + (" ..." if len(df.columns) > 30 else "")
        names = ", ".join(f"'{c}'" for c in missing)
        raise SchemaError(f"{source}: {role} {names} not found. The table has: {have}.")


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as CSV atomically: a temporary file beside ``path``, then a rename."""
    import os
    import tempfile

    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory; expected a file name for the CSV output.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            df.to_csv(fh, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
