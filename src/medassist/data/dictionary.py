"""Data dictionaries: what each column of a table means, in clinical words.

A :class:`DataDictionary` holds, per column, a label, a unit, a type (numeric, categorical,
binary, id, site, text), the allowed codes with their meanings, a plausible range and a
description; ``role`` marks columns that are not clinical factors (a patient ID, the site of
care, the outcome). Pages, model cards and CSV outputs read it so that a clinician sees
"Resting blood pressure (mm Hg)", not ``trestbps``.

Where dictionaries come from:

* every bundled data set ships one (``dictionaries/<name>.yaml``, package data);
* a user hands one in with ``medassist train --dictionary FILE``, or puts ``NAME.dictionary.csv``
  (or ``.yaml``/``.yml``/``.json``) beside ``NAME.csv``; it may be
  - YAML/JSON: ``{"columns": {"age": {"label": "Age", "unit": "years", ...}}}``,
  - a plain CSV with columns ``column,label,unit,type,codes,min,max,description,role``
    (``codes`` written ``1, Male | 2, Female``), or
  - a REDCap data-dictionary export (``Variable / Field Name``, ``Field Label``, ``Field Type``,
    ``Choices, Calculations, OR Slider Labels``, ``Text Validation Min``/``Max``, ``Field Note``
    read as the unit);
* the trained bundle stores the one it was trained with as ``dictionary.json``.

Example:
    >>> d = bundled_dictionary("heart_disease")
    >>> d.label_with_unit("trestbps"), d.meaning("exang", "True")
    ('Resting blood pressure (mm Hg)', 'yes (angina on exercise)')
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field, replace
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from medassist.exceptions import DataError

E = TypeVar("E", bound=StrEnum)

#: Suffixes tried beside a data file ``NAME.csv``: ``NAME.dictionary<suffix>``.
BESIDE_SUFFIXES = (".csv", ".yaml", ".yml", ".json")
#: Bundled data sets that share another's dictionary (same columns).
_SHARED = {"actg175_survival": "actg175", "solubility_train": "solubility", "solubility_test": "solubility"}


class ColumnType(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BINARY = "binary"
    ID = "id"
    SITE = "site"
    TEXT = "text"


class ColumnRole(StrEnum):
    FEATURE = "feature"        # a clinical factor the model may use and show
    ID = "id"                  # identifies a patient / record / molecule: never a clinical factor
    SITE = "site"              # the site of care (hospital, centre): not a clinical factor
    OUTCOME = "outcome"        # the target, an event or a follow-up time
    TREATMENT = "treatment"    # the arm a patient was given
    OTHER = "other"            # bookkeeping, post-treatment or otherwise not an input

    @property
    def note(self) -> str:
        return _ROLE_NOTES.get(self, "")


_ROLE_NOTES = {
    ColumnRole.ID: "identifier — not a clinical factor",
    ColumnRole.SITE: "site of care — not a clinical factor",
    ColumnRole.OUTCOME: "outcome — not an input",
    ColumnRole.OTHER: "not a clinical factor",
}


_BOOL_ALIASES = {"1": "True", "0": "False", "true": "1", "false": "0"}


def numeric_code(code: str) -> str:
    """The number a code stands for when the model reads the column as a number (True → 1)."""
    return {"true": "1", "false": "0"}.get(code.lower(), code)


def code_key(value: Any) -> str:
    """The string a value is looked up by among codes: ``1``, ``1.0`` and ``"1"`` all give ``"1"``."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    try:
        f = float(text)
    except ValueError:
        return text
    return str(int(f)) if math.isfinite(f) and f.is_integer() and "." in text else text


def _number(value: Any, *, where: str, what: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} must be a number, got {str(value)[:40]!r}.") from None
    if not math.isfinite(f):
        raise DataError(f"{where}: {what} must be a finite number, got {value!r}.")
    return f


def parse_choices(text: str, *, where: str) -> dict[str, str]:
    """``"1, Male | 2, Female"`` → ``{"1": "Male", "2": "Female"}`` (REDCap's choice syntax)."""
    codes: dict[str, str] = {}
    for part in str(text).split("|"):
        part = part.strip()
        if not part:
            continue
        code, sep, meaning = part.partition(",")
        code, meaning = code.strip(), meaning.strip()
        if not sep or not code or not meaning:
            raise DataError(f"{where}: choice {part[:60]!r} is not 'CODE, meaning' (expected e.g. '1, Male | 2, Female').")
        if code in codes:
            raise DataError(f"{where}: code {code!r} is listed twice in the choices.")
        codes[code] = meaning
    return codes


@dataclass(frozen=True, kw_only=True)
class ColumnEntry:
    """What one column means."""

    name: str
    label: str = ""
    unit: str = ""
    type: ColumnType = ColumnType.NUMERIC
    codes: dict[str, str] = field(default_factory=dict)
    min: float | None = None
    max: float | None = None
    description: str = ""
    role: ColumnRole = ColumnRole.FEATURE

    def __post_init__(self) -> None:
        where = f"data dictionary, column '{self.name}'"
        if not str(self.name).strip():
            raise DataError("data dictionary: a column has no name.")
        object.__setattr__(self, "type", _enum(self.type, ColumnType, where=where, what="type"))
        object.__setattr__(self, "role", _enum(self.role, ColumnRole, where=where, what="role"))
        object.__setattr__(self, "codes", {code_key(k): str(v) for k, v in dict(self.codes or {}).items()})
        object.__setattr__(self, "min", _number(self.min, where=where, what="min"))
        object.__setattr__(self, "max", _number(self.max, where=where, what="max"))
        if self.min is not None and self.max is not None and self.min > self.max:
            raise DataError(f"{where}: min ({self.min:g}) is above max ({self.max:g}).")
        if self.type is ColumnType.BINARY and len(self.codes) > 2:
            raise DataError(f"{where}: a binary column has two codes, got {len(self.codes)} ({', '.join(self.codes)}).")
        # An ID or site column is never a clinical factor, whatever role was written.
        if self.type is ColumnType.ID and self.role is ColumnRole.FEATURE:
            object.__setattr__(self, "role", ColumnRole.ID)
        if self.type is ColumnType.SITE and self.role is ColumnRole.FEATURE:
            object.__setattr__(self, "role", ColumnRole.SITE)

    @property
    def display_label(self) -> str:
        return self.label or self.name

    @property
    def label_with_unit(self) -> str:
        return f"{self.display_label} ({self.unit})" if self.unit else self.display_label

    @property
    def coded(self) -> bool:
        return bool(self.codes)

    def meaning(self, value: Any) -> str | None:
        if not self.codes:
            return None
        key = code_key(value)
        if key in self.codes:
            return self.codes[key]
        # A yes/no column is read as True/False or as 1/0 depending on the file: either spelling finds it.
        alias = _BOOL_ALIASES.get(key.lower())
        return self.codes.get(alias) if alias is not None else None

    def describe(self, value: Any) -> str:
        """A patient's value in words: ``140 mm Hg``, ``yes``, ``Male``; "not recorded" when missing."""
        if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) in ("", "nan", "NaN", "None"):
            return "not recorded"
        meaning = self.meaning(value)
        if meaning is not None:
            return meaning
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text = f"{value:.4g}"
        else:
            text = str(value)
        return f"{text} {self.unit}" if self.unit else text

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "unit": self.unit, "type": self.type.value}
        if self.codes:
            out["codes"] = dict(self.codes)
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.description:
            out["description"] = self.description
        if self.role is not ColumnRole.FEATURE:
            out["role"] = self.role.value
        return out


def _enum(value: Any, kind: type[E], *, where: str, what: str) -> E:
    if isinstance(value, kind):
        return value
    text = str(value or "").strip().lower()
    for m in kind:
        if m.value == text:
            return m
    raise DataError(f"{where}: {what} {str(value)[:40]!r} is not one of {', '.join(m.value for m in kind)}.")


@dataclass(frozen=True, kw_only=True)
class DataDictionary:
    """Column entries by column name, with the data set's title and time unit."""

    columns: dict[str, ColumnEntry] = field(default_factory=dict)
    title: str = ""
    time_unit: str = ""
    source: str = ""

    def __bool__(self) -> bool:
        return bool(self.columns)

    def get(self, column: str) -> ColumnEntry | None:
        return self.columns.get(str(column))

    def entry(self, column: str) -> ColumnEntry:
        """The column's entry; a bare one (label = the column name) when the dictionary lacks it."""
        return self.columns.get(str(column)) or ColumnEntry(name=str(column), type=ColumnType.TEXT)

    def label(self, column: str) -> str:
        return self.entry(column).display_label

    def label_with_unit(self, column: str) -> str:
        return self.entry(column).label_with_unit

    def unit(self, column: str) -> str:
        return self.entry(column).unit

    def meaning(self, column: str, value: Any) -> str | None:
        e = self.get(column)
        return e.meaning(value) if e else None

    def describe(self, column: str, value: Any) -> str:
        return self.entry(column).describe(value)

    def role(self, column: str) -> ColumnRole:
        e = self.get(column)
        return e.role if e else ColumnRole.FEATURE

    def is_clinical(self, column: str) -> bool:
        return self.role(column) in (ColumnRole.FEATURE, ColumnRole.TREATMENT)

    def role_note(self, column: str) -> str:
        return self.role(column).note

    def merged(self, other: DataDictionary | None) -> DataDictionary:
        """This dictionary with ``other``'s entries on top (a user's file over the bundled one)."""
        if not other:
            return self
        return DataDictionary(columns={**self.columns, **other.columns}, title=other.title or self.title,
                              time_unit=other.time_unit or self.time_unit, source=other.source or self.source)

    def restricted(self, columns: list[str]) -> DataDictionary:
        return replace(self, columns={c: e for c, e in self.columns.items() if c in set(columns)})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; ``{}`` for an empty dictionary (nothing to store)."""
        if not self.columns and not self.title:
            return {}
        return {"title": self.title, "time_unit": self.time_unit, "source": self.source,
                "columns": {c: e.to_dict() for c, e in self.columns.items()}}

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "data dictionary") -> DataDictionary:
        if not isinstance(data, dict) or not isinstance(data.get("columns", {}), dict):
            raise DataError(f"{source}: expected a mapping with a 'columns' mapping (column name → label, unit, type, ...).")
        columns: dict[str, ColumnEntry] = {}
        for name, raw in (data.get("columns") or {}).items():
            where = f"{source}, column '{name}'"
            if isinstance(raw, str):
                raw = {"label": raw}
            if not isinstance(raw, dict):
                raise DataError(f"{where}: expected a mapping (label, unit, type, codes, min, max, description, role).")
            unknown = set(raw) - {"label", "unit", "type", "codes", "min", "max", "description", "role"}
            if unknown:
                raise DataError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} (expected label, unit, type, "
                                "codes, min, max, description, role).")
            codes = raw.get("codes") or {}
            if isinstance(codes, str):
                codes = parse_choices(codes, where=where)
            if not isinstance(codes, dict):
                raise DataError(f"{where}: codes must map each code to its meaning (e.g. {{1: Male, 2: Female}}).")
            try:
                columns[str(name)] = ColumnEntry(
                    name=str(name), label=str(raw.get("label") or ""), unit=str(raw.get("unit") or ""),
                    type=raw.get("type") or (ColumnType.CATEGORICAL if codes else ColumnType.NUMERIC), codes=codes,
                    min=raw.get("min"), max=raw.get("max"), description=str(raw.get("description") or ""),
                    role=raw.get("role") or ColumnRole.FEATURE,
                )
            except DataError as e:
                raise DataError(str(e).replace("data dictionary", source, 1)) from None
        return cls(columns=columns, title=str(data.get("title") or ""), time_unit=str(data.get("time_unit") or ""),
                   source=str(data.get("source") or ""))


# --------------------------------------------------------------------------------------------
# Reading dictionaries


REDCAP_NAME = "Variable / Field Name"
_REDCAP_CHOICES = "Choices, Calculations, OR Slider Labels"
_REDCAP_VALIDATION = "Text Validation Type OR Show Slider Number"
_NUMERIC_VALIDATION = {"integer", "number", "number_1dp", "number_2dp", "number_3dp", "number_4dp", "number_comma_decimal"}
_PLAIN_HEADER = ("column", "label", "unit", "type", "codes", "min", "max", "description", "role")


def read_dictionary_text(text: str, *, kind: str, source: str) -> DataDictionary:
    """Parse a dictionary from text; ``kind`` is ``csv``, ``yaml`` or ``json``."""
    if kind == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{source}: not valid JSON ({e.msg} at line {e.lineno}).") from None
        return DataDictionary.from_dict(data, source=source)
    if kind == "yaml":
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise DataError(f"{source}: not valid YAML{at} ({getattr(e, 'problem', None) or e}).") from None
        return DataDictionary.from_dict(data, source=source)
    if kind == "csv":
        return _read_csv(text, source=source)
    raise DataError(f"{source}: a data dictionary must be .csv, .yaml/.yml or .json.")


def read_dictionary(path: str | Path) -> DataDictionary:
    """Read a dictionary file (REDCap or plain CSV, YAML, JSON); errors name the file and row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data dictionary not found.")
    suffix = path.suffix.lower()
    kind = {".csv": "csv", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}.get(suffix)
    if kind is None:
        raise DataError(f"{path}: a data dictionary must be .csv, .yaml/.yml or .json (got '{suffix or 'no suffix'}').")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}).") from None
    return read_dictionary_text(text, kind=kind, source=str(path))


def _read_csv(text: str, *, source: str) -> DataDictionary:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise DataError(f"{source}: empty; expected a header row (REDCap's 'Variable / Field Name', ... or {', '.join(_PLAIN_HEADER)}).")
    reader.fieldnames = header
    if REDCAP_NAME in header:
        return _read_redcap(reader, source=source)
    if "column" not in header:
        raise DataError(f"{source}: header has neither '{REDCAP_NAME}' (a REDCap data dictionary) nor 'column' "
                        f"(expected columns: {', '.join(_PLAIN_HEADER)}); it has: {', '.join(header[:10])}.")
    unknown = [h for h in header if h not in _PLAIN_HEADER]
    if unknown:
        raise DataError(f"{source}: unknown column(s) {', '.join(unknown)} (expected: {', '.join(_PLAIN_HEADER)}).")
    columns: dict[str, ColumnEntry] = {}
    for row in reader:
        line = reader.line_num
        where = f"{source}, row {line}"
        name = (row.get("column") or "").strip()
        if not name:
            raise DataError(f"{where}: the 'column' field is empty; every row names a column.")
        if name in columns:
            raise DataError(f"{where}: column '{name}' is described twice.")
        codes = parse_choices(row.get("codes") or "", where=where)
        columns[name] = _entry(where, name=name, label=(row.get("label") or "").strip(), unit=(row.get("unit") or "").strip(),
                               type=(row.get("type") or "").strip() or (ColumnType.CATEGORICAL if codes else ColumnType.NUMERIC),
                               codes=codes, min=row.get("min"), max=row.get("max"),
                               description=(row.get("description") or "").strip(), role=(row.get("role") or "").strip() or "feature")
    return DataDictionary(columns=columns, source=source)


def _entry(where: str, **kw: Any) -> ColumnEntry:
    try:
        return ColumnEntry(**kw)
    except DataError as e:
        message = str(e)
        detail = message.split(": ", 1)[1] if message.startswith("data dictionary") else message
        raise DataError(f"{where} ('{kw.get('name')}'): {detail}") from None


def _read_redcap(reader: csv.DictReader[str], *, source: str) -> DataDictionary:
    """REDCap's data-dictionary export. The first field of a REDCap project is its record ID."""
    columns: dict[str, ColumnEntry] = {}
    first = True
    for row in reader:
        line = reader.line_num
        where = f"{source}, row {line}"
        name = (row.get(REDCAP_NAME) or "").strip()
        if not name:
            raise DataError(f"{where}: '{REDCAP_NAME}' is empty; every row names a field.")
        label = " ".join((row.get("Field Label") or "").split())
        ftype = (row.get("Field Type") or "").strip().lower()
        choices = row.get(_REDCAP_CHOICES) or ""
        validation = (row.get(_REDCAP_VALIDATION) or "").strip().lower()
        unit = (row.get("Field Note") or "").strip()
        lo, hi = row.get("Text Validation Min"), row.get("Text Validation Max")
        if ftype == "descriptive":
            continue
        kw: dict[str, Any] = {"name": name, "label": label, "unit": unit, "min": lo, "max": hi}
        if first:
            kw.update(type=ColumnType.ID, role=ColumnRole.ID, unit="")
        elif ftype in ("dropdown", "radio"):
            codes = parse_choices(choices, where=f"{where} ('{name}')")
            if not codes:
                raise DataError(f"{where} ('{name}'): a {ftype} field needs choices ('1, Male | 2, Female').")
            kw.update(type=ColumnType.BINARY if len(codes) == 2 else ColumnType.CATEGORICAL, codes=codes, min=None, max=None)
        elif ftype == "yesno":
            kw.update(type=ColumnType.BINARY, codes={"1": "yes", "0": "no"}, min=None, max=None)
        elif ftype == "truefalse":
            kw.update(type=ColumnType.BINARY, codes={"1": "true", "0": "false"}, min=None, max=None)
        elif ftype == "checkbox":
            codes = parse_choices(choices, where=f"{where} ('{name}')")
            for code, meaning in codes.items():  # REDCap exports one 0/1 column per choice
                col = f"{name}___{code.lower()}"
                columns[col] = _entry(where, name=col, label=f"{label}: {meaning}", type=ColumnType.BINARY,
                                      codes={"1": "checked", "0": "not checked"})
            first = False
            continue
        elif ftype in ("calc", "slider") or (ftype == "text" and validation in _NUMERIC_VALIDATION):
            kw.update(type=ColumnType.NUMERIC)
        elif ftype in ("text", "notes", "file", "sql"):
            kw.update(type=ColumnType.TEXT, min=None, max=None)  # dates and free text: no numeric range
        else:
            raise DataError(f"{where} ('{name}'): unknown REDCap field type {ftype!r} (expected text, notes, dropdown, radio, "
                            "checkbox, yesno, truefalse, calc, slider, file, descriptive).")
        if name in columns:
            raise DataError(f"{where}: field '{name}' is described twice.")
        columns[name] = _entry(where, **kw)
        first = False
    if not columns:
        raise DataError(f"{source}: the REDCap data dictionary has no fields.")
    return DataDictionary(columns=columns, source=source)


# --------------------------------------------------------------------------------------------
# Finding dictionaries


def bundled_dictionary(name: str) -> DataDictionary:
    """The dictionary shipped for bundled data set ``name`` (empty if none ships)."""
    key = _SHARED.get(str(name).strip().lower(), str(name).strip().lower())
    try:
        text = resources.files("medassist.data").joinpath("dictionaries", f"{key}.yaml").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return DataDictionary()
    return read_dictionary_text(text, kind="yaml", source=f"bundled dictionary {key}.yaml")


def find_dictionary_beside(data_path: str | Path) -> Path | None:
    """``NAME.dictionary.csv|yaml|yml|json`` beside ``NAME.csv``, if there is one."""
    path = Path(data_path)
    for suffix in BESIDE_SUFFIXES:
        candidate = path.with_name(f"{path.stem}.dictionary{suffix}")
        if candidate.is_file():
            return candidate
    return None


def dictionary_for(*, dataset: str | None = None, data_path: str | Path | None = None,
                   explicit: str | Path | None = None) -> DataDictionary:
    """The dictionary of a training table: the bundled one of a named data set, overlaid by a
    file beside the data, overlaid by ``--dictionary FILE``."""
    out = bundled_dictionary(dataset) if dataset else DataDictionary()
    if data_path is not None:
        beside = find_dictionary_beside(data_path)
        if beside is not None:
            out = out.merged(read_dictionary(beside))
    if explicit is not None:
        out = out.merged(read_dictionary(explicit))
    return out


def bundle_dictionary(bundle_or_dir: Any) -> DataDictionary:
    """The dictionary stored in a model bundle (``dictionary.json``); for bundles written before
    dictionaries were stored, the bundled data set's one by the bundle's data source name."""
    path = getattr(bundle_or_dir, "path", bundle_or_dir)
    stored = getattr(bundle_or_dir, "dictionary", None)
    if isinstance(stored, dict) and stored:
        return DataDictionary.from_dict(stored, source=f"{path}/dictionary.json")
    meta = getattr(bundle_or_dir, "meta", None)
    if path is not None:
        p = Path(path) / "dictionary.json"
        if p.is_file():
            try:
                return DataDictionary.from_dict(json.loads(p.read_text()), source=str(p))
            except (ValueError, DataError):
                pass  # an unreadable dictionary must not stop predictions; pages fall back to column names
        if meta is None and (Path(path) / "bundle.json").is_file():
            try:
                meta = json.loads((Path(path) / "bundle.json").read_text())
            except ValueError:
                meta = None
    name = str((meta or {}).get("data_source") or "")
    return bundled_dictionary(name) if name and "/" not in name and "\\" not in name else DataDictionary()


# --------------------------------------------------------------------------------------------
# Clinical titles


_FAMILIES = {"mlp": "neural network (MLP)", "tabm": "neural network ensemble (TabM)", "ft": "FT-Transformer", "multiarm": "multi-arm outcome network",
             "survnet": "survival network", "gnn": "graph neural network"}


def model_title(*, subject: str, family: str, size: str = "") -> str:
    """``Breast biopsy malignancy — FT-Transformer (small)``."""
    fam = _FAMILIES.get(str(family).lower(), str(family))
    return f"{subject} — {fam}" + (f" ({size})" if size else "")


def subject_of(dictionary: DataDictionary, *, target: str, fallback: str) -> str:
    """What a model predicts, in words: the dictionary's title, else the target's label."""
    if dictionary.title:
        return dictionary.title
    e = dictionary.get(target)
    return e.display_label if e and e.label else fallback
