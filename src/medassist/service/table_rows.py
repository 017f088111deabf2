"""What the plugins that take a patient's table row (diagnosis, prognosis, treatment) share beyond
the plugin kit: the ``row``/``rows`` request body, the bundle reference of an answer, JSON rows
and CSV uploads checked against a model's inputs, the refusal of a form with bad values, and the
columns every download of predictions starts and ends with.

Example (``service/prognosis.py``)::

    class SurvivalPredictBody(RowsBody):
        curve: bool = False

    columns, refs = gather_rows(rows, fz=fz, columns=covariates, id_column="pid", max_rows=100, source="request")

Nothing here guesses a value: a row without a model input, or with one the model does not use,
is refused with a message that names the row and the column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import Any

import numpy as np
import pandas as pd
from fastapi import Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from medassist.data.dictionary import DataDictionary
from medassist.data.io.tables import read_table
from medassist.exceptions import DataError
from medassist.service.bundles import BundleInfo
from medassist.service.clinical import dictionary_of
from medassist.service.context import ServiceContext
from medassist.service.plugin_common import check_category, check_row_keys
from medassist.service.rendering import is_htmx, render
from medassist.service.uploads import CheckedUpload, FileKind, read_upload

Value = StrictStr | StrictInt | StrictFloat | StrictBool | None


class RowsBody(BaseModel):
    """One row (``row``) or several (``rows``): column name → value; ``null`` = unknown (imputed)."""

    model_config = ConfigDict(extra="forbid")

    row: dict[str, Value] | None = None
    rows: list[dict[str, Value]] | None = Field(None, min_length=1)
    explain: bool = True
    top_k: int = Field(3, ge=1, le=20)

    @model_validator(mode="after")
    def _one_of(self) -> RowsBody:
        if (self.row is None) == (self.rows is None):
            raise ValueError("send exactly one of 'row' (an object) or 'rows' (a list of objects)")
        return self

    def all_rows(self) -> list[dict[str, Any]]:
        return [self.row] if self.row is not None else list(self.rows or [])


class BundleRef(BaseModel):
    id: str
    name: str
    task: str
    created: str
    data_source: str


def gather_rows(rows: list[dict[str, Any]], *, fz: Any, columns: list[str], id_column: str | None, max_rows: int, source: str,
                codes: Collection[str] = ()) -> tuple[dict[str, np.ndarray], list[Any]]:
    """Check JSON rows against a model's inputs and gather them into columns (nothing is guessed).

    Every row must give every one of ``columns`` (null = unknown) and nothing but those, the
    optional ``codes`` columns (codes joined by ';', or null) and ``id_column``.

    Returns:
        Each of ``columns`` then ``codes`` as an (N,) array (numeric: float64 with NaN for null;
        otherwise the values as objects, ``None`` for null), and the N patient references
        (``None`` where a row gives none, or the model has no id column).
    """
    if len(rows) > max_rows:
        raise DataError(f"{source}: {len(rows)} rows in one request; at most {max_rows} are accepted.")
    allowed = set(columns) | set(codes) | ({id_column} if id_column else set())
    numeric = set(fz.numeric_)
    data: dict[str, list[Any]] = {c: [] for c in [*columns, *codes]}
    refs: list[Any] = []
    for i, row in enumerate(rows, start=1):
        check_row_keys(row, i, allowed=allowed, columns=columns, source=source)
        for c in columns:
            v = row[c]
            if c in numeric:
                # true/false count as 1/0, as they do when a CSV column of booleans is read for training
                if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(float(v))):
                    raise DataError(f"{source}: row {i}, column '{c}': expected a number or null, got {str(v)[:60]!r}.")
                data[c].append(np.nan if v is None else float(v))
            else:
                check_category(fz, c, v, where=f"{source}: row {i}")
                data[c].append(v)
        for c in codes:
            v = row.get(c)
            if v is not None and not isinstance(v, str):
                raise DataError(f"{source}: row {i}, column '{c}': expected codes joined by ';' or null, got {str(v)[:60]!r}.")
            data[c].append(v)
        ref = row.get(id_column) if id_column else None
        if ref is not None and len(str(ref)) > 64:
            raise DataError(f"{source}: row {i}, column '{id_column}': longer than 64 characters.")
        refs.append(ref)
    return {c: np.asarray(v, dtype=float if c in numeric else object) for c, v in data.items()}, refs


async def read_csv_upload(ctx: ServiceContext, file: UploadFile) -> CheckedUpload:
    """A CSV upload, checked (kind and the service's size limit)."""
    return await read_upload(file, expected={FileKind.CSV}, max_bytes=ctx.settings.max_upload_bytes)


def read_csv_rows(data: bytes, *, filename: str, needed: list[str], max_rows: int) -> pd.DataFrame:
    """Parse an uploaded CSV with the reader ``medassist predict`` uses, with messages naming it;
    every one of ``needed`` must be a column."""
    frame = read_table(data, name=filename, max_rows=max_rows)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{filename}: the model needs column(s) {', '.join(repr(c) for c in missing[:10])}, which the file "
                        f"does not have (it has: {', '.join(map(str, frame.columns[:20]))}).")
    return frame


def check_categories(fz: Any, column: str, values: list[Any], *, source: str) -> None:
    """:func:`check_category` for each value of a file's column (rows counted from 1)."""
    for i, v in enumerate(values, start=1):
        check_category(fz, column, v, where=f"{source}: row {i}")


def frame_refs(frame: pd.DataFrame, id_column: str | None) -> list[Any]:
    """The patient reference of each row of a table (``None`` without an id column)."""
    return frame[id_column].tolist() if id_column and id_column in frame.columns else [None] * len(frame)


def patient_ref(ref: Any) -> str | None:
    return None if ref is None or pd.isna(ref) else str(ref)


def refuse_form(request: Request, ctx: ServiceContext, info: BundleInfo, fields: list[dict[str, Any]], errors: dict[int, str],
                show_form: Callable[[str], Response]) -> Response:
    """A form with values that could not be used: a 422 naming each field in clinical words; htmx
    gets the message alone, a plain browser the form again (``show_form(message)``)."""
    dd = dictionary_of(ctx, info)
    message = "Some values could not be used: " + "; ".join(f"{dd.label_with_unit(fields[i]['column'])}: {m}" for i, m in errors.items())
    if is_htmx(request):
        return render(request, "partials/error.html", status_code=422, status=422, message=message)
    return show_form(message)


def download_dictionary(ctx: ServiceContext, bundle_id: str) -> DataDictionary | None:
    """The data dictionary of a download's bundle (``None`` once the bundle is gone: raw names)."""
    info = ctx.catalog.get(bundle_id)
    return dictionary_of(ctx, info) if info is not None else None


def labels(dd: DataDictionary | None, columns: list[str]) -> str:
    return "; ".join(dd.label(c) if dd else c for c in columns)


def factor_columns(row: dict[str, Any], factors: list[dict[str, Any]], dd: DataDictionary | None, *, weight: str,
                   digits: int) -> None:
    """Add each factor's input, its value in words and its ``weight`` (rounded) to a download row."""
    for k, f in enumerate(factors, start=1):
        col = f.get("column", "")
        row[f"factor {k}"] = dd.label_with_unit(col) if dd else col
        row[f"factor {k} value"] = dd.describe(col, f.get("value")) if dd else f.get("value")
        row[f"factor {k} {weight}"] = round(float(f.get("weight", 0.0)), digits)
