"""Small helpers shared by the imaging, treatment and screening plugins: the bundle reference every
answer carries, a private scratch folder for files an assistant must read from disk, and the
checks on JSON table rows (one patient's values) that the treatment plugin shares with forms.

Nothing here is ever named after a client's file: scratch files get fixed names inside a fresh
folder under ``MEDASSIST_HOME/work`` (owner only), removed when the request ends.
"""

from __future__ import annotations

import base64
import math
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medassist.exceptions import DataError
from medassist.featurizers.tabular import OTHER, category_key
from medassist.service.bundles import BundleInfo
from medassist.service.context import ServiceContext

MAX_TEXT = 200  # characters of a form field


def bundle_ref(info: BundleInfo) -> dict[str, str]:
    return {"id": info.bundle_id, "name": info.name, "task": info.task, "created": info.created, "data_source": info.data_source}


@contextmanager
def scratch_dir(ctx: ServiceContext, prefix: str) -> Iterator[Path]:
    """A fresh owner-only folder under ``MEDASSIST_HOME/work``, deleted afterwards."""
    root = ctx.settings.home / "work"
    root.mkdir(mode=0o700, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def scrub_path(message: str, path: Path, shown: str) -> str:
    """An assistant's message names the scratch file; the user knows it by their file name."""
    return message.replace(str(path), shown).replace(str(path.parent), "upload")


def check_category(fz: Any, column: str, value: Any, *, where: str) -> None:
    """A category the model never saw is refused (unless training collapsed rare levels into
    'other'): a typo or an injected string must not pass as a patient's value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return
    levels = fz.categories_.get(column, [])
    if category_key(value) in levels or OTHER in levels:  # 1.0 is the code 1
        return
    known = [v for v in levels if not v.startswith("__")]
    shown = repr(str(value)[:40]) + ("…" if len(str(value)) > 40 else "")
    raise DataError(f"{where}, column '{column}': {shown} is not a value the model knows "
                    f"(expected one of: {', '.join(known[:20])}; send null if it is not known).")


def check_rows(rows: list[dict[str, Any]], *, fz: Any, columns: list[str], extra: set[str], max_rows: int,
               source: str) -> list[dict[str, Any]]:
    """Every row must give every model input (null = unknown, imputed), nothing else; numbers
    must be finite numbers and categories ones the model knows. Returns clean copies."""
    if len(rows) > max_rows:
        raise DataError(f"{source}: {len(rows)} rows in one request; at most {max_rows} are accepted.")
    allowed = set(columns) | extra
    numeric = set(fz.numeric_)
    clean = []
    for i, row in enumerate(rows, start=1):
        unknown = sorted(set(row) - allowed)
        if unknown:
            raise DataError(f"{source}: row {i} has field(s) {', '.join(repr(c[:60]) for c in unknown[:5])} that the model "
                            f"does not use (expected: {', '.join(columns)}).")
        absent = [c for c in columns if c not in row]
        if absent:
            raise DataError(f"{source}: row {i} lacks field(s) {', '.join(repr(c) for c in absent[:10])}; "
                            "send null for a value that is not known (it is then imputed and counted).")
        out: dict[str, Any] = {}
        for c in columns:
            v = row[c]
            if c in numeric:
                if v is not None and (isinstance(v, str) or not isinstance(v, (int, float)) or not math.isfinite(float(v))):
                    raise DataError(f"{source}: row {i}, field '{c}': expected a number or null, got {str(v)[:60]!r}.")
                out[c] = None if v is None else float(v)
            else:
                if v is not None and not isinstance(v, str):
                    v = str(v)
                check_category(fz, c, v, where=f"{source}: row {i}")
                out[c] = v
        for c in extra:
            if c in row:
                ref = row[c]
                if ref is not None and len(str(ref)) > 64:
                    raise DataError(f"{source}: row {i}, field '{c}': longer than 64 characters.")
                out[c] = ref
        clean.append(out)
    return clean


def input_fields(fz: Any, columns: list[str]) -> list[dict[str, Any]]:
    """The form fields of a table model: numeric (training median) or categorical (its levels)."""
    fields = []
    for i, c in enumerate(columns):
        if c in fz.numeric_:
            fields.append({"index": i, "column": c, "kind": "numeric", "median": fz.median_.get(c)})
        else:
            cats = [v for v in fz.categories_.get(c, []) if not v.startswith("__")]
            fields.append({"index": i, "column": c, "kind": "categorical", "categories": cats})
    return fields


def example_values(fields: list[dict[str, Any]]) -> dict[int, str]:
    """A form's example: training medians and each category's first level (a neutral starting
    point, not a patient)."""
    values: dict[int, str] = {}
    for f in fields:
        if f["kind"] == "numeric" and f["median"] is not None:
            values[f["index"]] = f"{f['median']:g}"
        elif f["kind"] == "categorical" and f["categories"]:
            values[f["index"]] = f["categories"][0]
    return values


def parse_form_row(form: Any, fields: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[int, str], dict[int, str]]:
    """(row, values as typed, errors by field index) from a submitted form (``c<index>`` names)."""
    row: dict[str, Any] = {}
    values: dict[int, str] = {}
    errors: dict[int, str] = {}
    for f in fields:
        raw = form.get(f"c{f['index']}", "")
        raw = raw.strip() if isinstance(raw, str) else ""
        values[f["index"]] = raw[:MAX_TEXT]
        if raw == "":
            row[f["column"]] = None
        elif f["kind"] == "numeric":
            try:
                v = float(raw)
            except ValueError:
                errors[f["index"]] = f"expected a number, got {raw[:40]!r}"
                continue
            if not math.isfinite(v):
                errors[f["index"]] = "expected a finite number"
                continue
            row[f["column"]] = v
        elif raw not in f["categories"]:
            errors[f["index"]] = "not one of the offered values"
        else:
            row[f["column"]] = raw
    return row, values, errors
