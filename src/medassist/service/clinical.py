"""Clinical words for the pages: form fields with labels, units, codes and plausible ranges;
factors with the patient's value and a plain direction; model titles; numbers with sensible
significant figures and their unit. Everything comes from the bundle's data dictionary
(``medassist.data.dictionary``); a column it does not describe keeps its name.
"""

from __future__ import annotations

import math
from typing import Any

from medassist.data.dictionary import ColumnRole, DataDictionary, bundle_dictionary, model_title, numeric_code
from medassist.service.bundles import BundleInfo
from medassist.service.context import ServiceContext


def dictionary_of(ctx: ServiceContext, info: BundleInfo) -> DataDictionary:
    """The bundle's dictionary, read once per bundle version."""
    cache = ctx.state.setdefault("dictionaries", {})
    key = (info.bundle_id, info.mtime_ns)
    if key not in cache:
        cache[key] = bundle_dictionary(info.path)
    return cache[key]


def clinical_title(info: BundleInfo, dictionary: DataDictionary) -> str:
    """``Breast biopsy malignancy — FT-Transformer (small)``; the card's name when the
    dictionary has no title."""
    if not dictionary.title:
        return info.name
    model = info.model_card.get("model") or {}
    family = str(model.get("family") or "").split(" ")[0] or "model"
    return model_title(subject=dictionary.title, family=family, size=str(model.get("size") or ""))


def sig(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant figures, never in e-notation for everyday sizes:
    171.244 → "171", 0.012345 → "0.0123", 1210.4 → "1,210"."""
    if value is None:
        return "n/a"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "n/a"
    if v == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - magnitude)
    if abs(v) >= 1e7 or abs(v) < 1e-4:
        return f"{v:.{digits}g}"
    rounded = round(v, decimals) if decimals else round(v, digits - 1 - magnitude)
    text = f"{rounded:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "-0.0") else text


def with_unit(value: Any, unit: str, digits: int = 3) -> str:
    text = sig(value, digits)
    return f"{text} {unit}" if unit and text != "n/a" else text


def clinical_fields(fields: list[dict[str, Any]], dictionary: DataDictionary) -> list[dict[str, Any]]:
    """Add what a form shows to ``plugin_common.input_fields``: ``label`` (with unit), ``hint``
    (plausible range), ``options`` (value, words) for coded or categorical fields, ``note``
    (site or ID columns)."""
    out = []
    for f in fields:
        e = dictionary.get(f["column"])
        g = dict(f)
        g["label"] = e.label_with_unit if e else f["column"]
        g["description"] = e.description if e else ""
        g["note"] = e.role.note if e and e.role in (ColumnRole.ID, ColumnRole.SITE, ColumnRole.OTHER) else ""
        g["options"] = None
        g["hint"] = ""
        if f["kind"] == "numeric":
            if e and e.codes:  # a coded number (0/1, 1-3): a select of its meanings
                g["options"] = [{"value": numeric_code(code), "text": meaning if code.lower() in ("true", "false") else f"{meaning} ({code})"}
                                for code, meaning in e.codes.items()]
            elif e and (e.min is not None or e.max is not None):
                lo = sig(e.min, 4) if e.min is not None else "…"
                hi = sig(e.max, 4) if e.max is not None else "…"
                g["hint"] = f"plausible {lo}–{hi}" + (f" {e.unit}" if e.unit else "")
                g["min"], g["max"] = e.min, e.max
        else:
            g["options"] = [{"value": c, "text": (e.meaning(c) if e and e.meaning(c) else c)} for c in f["categories"]]
        if f["kind"] == "numeric" and f.get("median") is not None:
            g["placeholder"] = f"median {e.describe(f['median']) if e and not e.codes else sig(f['median'], 4)}"
        else:
            g["placeholder"] = ""
        out.append(g)
    return out


def json_value(v: Any) -> float | str | None:
    """A cell as a JSON value (NaN → None)."""
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v if isinstance(v, (int, float, str)) else str(v)


def factor_rows(factors: list[dict[str, Any]], dictionary: DataDictionary, *, prediction: str, classes: list[str],
                positive_class: str | None, class_words: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Factors in words: label, the patient's value, and which way it moves the probability.

    A factor's weight is an attribution to the predicted class; for a binary model it is shown
    against the positive class ("raises the probability of malignant")."""
    words = class_words or {}
    target = positive_class if positive_class in classes and len(classes) == 2 else prediction
    sign = 1.0 if target == prediction else -1.0
    out = []
    for f in factors:
        col = f["column"]
        e = dictionary.get(col)
        w = sign * float(f["weight"])
        role = dictionary.role(col)
        out.append({
            "column": col, "label": e.label_with_unit if e else col, "weight": float(f["weight"]),
            "value": dictionary.describe(col, f.get("value")) if "value" in f else "",
            "direction": f"{'raises' if w > 0 else 'lowers'} the probability of {words.get(target, target)}",
            "note": role.note if role in (ColumnRole.ID, ColumnRole.SITE, ColumnRole.OTHER, ColumnRole.OUTCOME) else "",
        })
    return out


def missing_words(columns: list[str], dictionary: DataDictionary) -> str:
    """"3 values were missing: serum cholesterol, ..." (labels in lower case after the count)."""
    if not columns:
        return ""
    labels = [dictionary.label(c) for c in columns]
    n = len(labels)
    return f"{n} value{'s were' if n > 1 else ' was'} missing and imputed: {', '.join(labels)}"


def horizon_words(horizon: float | None, unit: str) -> str:
    """1826 days → "5 years"; 900 days → "900 days"."""
    if horizon is None:
        return ""
    if unit == "days" and horizon >= 365:
        years = horizon / 365.25
        if abs(years - round(years)) < 0.02:
            n = int(round(years))
            return f"{n} year{'s' if n != 1 else ''}"
    return f"{sig(horizon, 4)} {unit}".strip()
