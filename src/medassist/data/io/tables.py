"""Reading clinical tables (CSV/TSV) with errors that name the file, column and row."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from medassist.exceptions import DataError, DataFileNotFoundError, EmptyDataError, SchemaError
from medassist.fileio import write_atomic

#: Tokens read as missing. pandas' defaults plus '?' (UCI files) and '.' (SAS/Stata exports).
MISSING_TOKENS = [
    "", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "none", "?", ".", "-", "#N/A", "n/a", "na",
]


def read_table(source: str | Path | bytes | BinaryIO, *, name: str | None = None, max_rows: int | None = None) -> pd.DataFrame:
    """Read a CSV/TSV table into a DataFrame; missing tokens become NaN, nothing else changes.

    The one reader of delimited tables: ``medassist`` commands pass a path, the service passes
    an upload's bytes, and both get the same columns and the same errors. The delimiter is a
    tab for ``.tsv``/``.tab`` names; otherwise ',' unless the start of the file reads
    consistently as ';'- or tab-separated (``csv.Sniffer`` restricted to those three). It is
    never guessed from anything else: a space inside a header ("mean radius") stays in the
    column name, and a file whose delimiter cannot be told is read as comma-separated.

    Args:
        source: a path, the file's bytes, or a binary file object.
        name: the file's name in messages (and for its suffix) when ``source`` is not a path.
        max_rows: refuse a table with more data rows than this (only ``max_rows + 1`` are read).

    Raises:
        DataFileNotFoundError: the file does not exist.
        EmptyDataError: the file is empty or has a header but no rows.
        DataError: the file is not a readable delimited table, or has more than ``max_rows`` rows.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        label = name or str(path)
        if not path.exists():
            raise DataFileNotFoundError(f"{label}: file not found (expected a CSV file with a header row).")
        if path.is_dir():
            raise DataError(f"{label}: is a directory (expected a CSV file with a header row).")
        with path.open("rb") as fh:
            return _read_delimited(fh, label=label, suffix=path.suffix, max_rows=max_rows)
    label = name or "upload"
    stream: BinaryIO = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    if not stream.seekable():
        stream = io.BytesIO(stream.read())
    return _read_delimited(stream, label=label, suffix=Path(label).suffix, max_rows=max_rows)


def _delimiter(fh: BinaryIO, suffix: str) -> str:
    """Tab for .tsv/.tab; else ',' unless the first 64k characters read as ';' or tab separated."""
    if suffix.lower() in {".tsv", ".tab"}:
        return "\t"
    start = fh.tell()
    text = io.TextIOWrapper(fh, encoding="utf-8-sig", newline="")
    try:
        sample = text.read(64_000)
    except UnicodeDecodeError:
        return ","  # pandas then names the undecodable byte
    finally:
        text.detach()  # else closing the wrapper would close fh
        fh.seek(start)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def _read_delimited(fh: BinaryIO, *, label: str, suffix: str, max_rows: int | None) -> pd.DataFrame:
    start = fh.tell()
    if not fh.read(1):
        raise EmptyDataError(f"{label}: the file is empty (expected a CSV file with a header row).")
    fh.seek(start)
    sep = _delimiter(fh, suffix)
    try:
        df = pd.read_csv(
            fh, sep=sep, na_values=MISSING_TOKENS, keep_default_na=False, encoding="utf-8-sig",
            skipinitialspace=True, low_memory=False, nrows=None if max_rows is None else max_rows + 1,
        )
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 CSV.") from e
    except pd.errors.EmptyDataError as e:
        raise EmptyDataError(f"{label}: no columns found (expected a CSV file with a header row).") from e
    except (pd.errors.ParserError, csv.Error, ValueError, OverflowError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DataError(f"{label}: not a well-formed CSV table: {first}") from e
    if df.empty:
        raise EmptyDataError(f"{label}: the header is there but there are no data rows.")
    if not isinstance(df.index, pd.RangeIndex):  # pandas made the surplus leading values an index
        raise DataError(f"{label}: some rows have more values than the header has columns ({len(df.columns)}); "
                        "every row needs one value per column.")
    if max_rows is not None and len(df) > max_rows:
        raise DataError(f"{label}: more than {max_rows} rows; at most {max_rows} are accepted.")
    unnamed = [c for c in df.columns if str(c).startswith("Unnamed: ")]
    if unnamed and len(unnamed) == 1 and df.columns[0] == unnamed[0] and _is_row_counter(df[unnamed[0]]):
        # A pandas/R export's index column: a row counter without a name, never a feature.
        df = df.drop(columns=unnamed[0])
    dupes = [c for c in df.columns if "." in str(c) and str(c).rsplit(".", 1)[0] in df.columns and str(c).rsplit(".", 1)[1].isdigit()]
    if dupes:
        raise DataError(f"{label}: duplicate column names ({', '.join(map(str, dupes))}); every column needs a unique name.")
    df.columns = [str(c).strip() for c in df.columns]
    if len(set(df.columns)) != len(df.columns):
        raise DataError(f"{label}: duplicate column names once spaces are trimmed; every column needs a unique name.")
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
    """Write ``df`` as CSV atomically (a temporary file beside ``path``, then a rename), with
    spreadsheet formulas neutralised (:func:`neutralize_formulas`). Every CSV medassist hands
    to a user goes through here or :func:`table_to_csv`."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory; expected a file name for the CSV output.")
    return write_atomic(path, table_to_csv(df), mode=0o600, encoding=None, newline="")


def table_to_csv(df: pd.DataFrame) -> str:
    """``df`` as CSV text (no index), formulas neutralised like :func:`write_table`.

    Python's csv writer quotes a cell holding a newline but not one holding a bare carriage
    return, which a spreadsheet may take as a row break (and then read what follows as a new,
    unneutralised cell). A table with such a cell is written with CRLF line ends, which makes
    the writer quote it; every other table keeps plain newlines.
    """
    safe = neutralize_formulas(df)
    texts = [safe.iloc[:, i] for i in range(safe.shape[1]) if safe.iloc[:, i].dtype == object]
    has_cr = any("\r" in str(c) for c in safe.columns) or any(
        col.map(lambda v: isinstance(v, str) and "\r" in v).any() for col in texts)
    return safe.to_csv(index=False, lineterminator="\r\n" if has_cr else "\n")


#: First characters a spreadsheet may read as the start of a formula (OWASP, "CSV Injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def neutralize_cell(value):
    """A text cell that a spreadsheet would run as a formula, made inert by a leading ``'``.

    Text starting with ``= + - @``, a tab or a carriage return gets a ``'`` in front, unless it
    is a plain number such as ``-1.5`` (numbers stay numbers). It is idempotent: text that
    already starts with ``'`` is left as it is (so a caller that neutralised a cell itself does
    not get two apostrophes). Anything that is not a ``str`` (floats, NaN) is returned unchanged.

    Example:
        >>> neutralize_cell("=1+2"), neutralize_cell("@SUM(A1)"), neutralize_cell("-1.5"), neutralize_cell("MRN-7")
        ("'=1+2", "'@SUM(A1)", '-1.5', 'MRN-7')
    """
    if not isinstance(value, str) or not value.startswith(FORMULA_PREFIXES) or _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value


def restore_cell(value):
    """Undo :func:`neutralize_cell`, for medassist reading back a CSV it wrote (a text that was
    stored as ``'=...`` to begin with comes back as ``=...``)."""
    if isinstance(value, str) and len(value) > 1 and value[0] == "'" and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


def _map_text(df: pd.DataFrame, fn) -> pd.DataFrame:
    out = df.copy(deep=False)
    out.columns = [fn(c) for c in df.columns]
    for i in range(df.shape[1]):
        col = df.iloc[:, i]
        if col.dtype == object or isinstance(col.dtype, (pd.StringDtype, pd.CategoricalDtype)):
            out.isetitem(i, col.astype(object).map(fn))
    return out


def neutralize_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells and column names went through :func:`neutralize_cell`;
    numeric columns are untouched (a negative float column stays numeric)."""
    return _map_text(df, neutralize_cell)


def restore_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` (read back as text) with :func:`neutralize_formulas` undone."""
    return _map_text(df, restore_cell)
