"""A tabular featurizer fitted across sites from summary statistics, never from rows.

Each site summarises its own *training* rows (``summarise_columns``); the server adds the
summaries up (``merge_summaries``) into the same ``TabularFeaturizer`` state that ``fit`` would
produce on pooled rows. What leaves a site, per input column:

- numeric: row count, missing count, sum, sum of squares and median of the observed values;
- categorical: the count of each level (a column with more than ``MAX_SHARED_LEVELS`` distinct
  values at a site sends no levels at all: it is free text or an identifier and is dropped).

Means and standard deviations are exact (the pooled values after median imputation, as
``fit`` computes them). The median is approximate: the count-weighted mean of the sites'
medians (an exact pooled median would need a further exchange of rank information).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medassist.exceptions import DataError
from medassist.featurizers.tabular import MISSING, OTHER, TabularFeaturizer, infer_column_kind, parse_numeric

#: A site never sends the levels of a column with more distinct values than this.
MAX_SHARED_LEVELS = 50


def summarise_columns(frame: pd.DataFrame, *, columns: list[str], source: str) -> dict[str, dict[str, Any]]:
    """Per-column summary statistics of ``frame`` (one site's training rows); plain JSON."""
    out: dict[str, dict[str, Any]] = {}
    n = int(len(frame))
    for col in columns:
        s = frame[col]
        missing = int(s.isna().sum())
        if missing == n:
            out[col] = {"kind": "empty", "n": n, "missing": missing}
            continue
        if infer_column_kind(s) == "numeric":
            x = parse_numeric(s, column=col, source=source).dropna().to_numpy(dtype=float)
            out[col] = {"kind": "numeric", "n": n, "missing": missing, "sum": float(x.sum()),
                        "sumsq": float((x ** 2).sum()), "median": float(np.median(x))}
        else:
            counts = s.dropna().astype(str).value_counts()
            if len(counts) > MAX_SHARED_LEVELS:
                out[col] = {"kind": "categorical", "n": n, "missing": missing, "too_many_levels": True}
            else:
                out[col] = {"kind": "categorical", "n": n, "missing": missing,
                            "levels": {str(k): int(v) for k, v in counts.items()}}
    return out


def merge_summaries(
    summaries: dict[str, dict[str, dict[str, Any]]], *, columns: list[str], max_categories: int = 30,
) -> tuple[TabularFeaturizer, list[str]]:
    """Build a fitted ``TabularFeaturizer`` from every site's ``summarise_columns`` output.

    Args:
        summaries: ``{site name: {column: summary}}``.
        columns: the input columns, in the order the feature matrix uses.

    Returns:
        The featurizer and notes on columns that were dropped.
    """
    notes: list[str] = []
    numeric: list[str] = []
    categorical: list[str] = []
    for col in columns:
        parts = {site: s[col] for site, s in summaries.items() if col in s}
        absent = sorted(set(summaries) - set(parts))
        if absent:
            raise DataError(f"Column '{col}' is missing at site(s) {', '.join(absent)}; every site needs the same input columns.")
        kinds = {site: p["kind"] for site, p in parts.items() if p["kind"] != "empty"}
        if not kinds:
            notes.append(f"Column '{col}' is empty at every site and was not used.")
            continue
        if len(set(kinds.values())) > 1:
            detail = ", ".join(f"{site}: {kind}" for site, kind in sorted(kinds.items()))
            raise DataError(f"Column '{col}' is numeric at some sites and categorical at others ({detail}); expected one kind everywhere.")
        kind = next(iter(kinds.values()))
        if kind == "categorical" and any(p.get("too_many_levels") for p in parts.values()):
            notes.append(f"Column '{col}' looks like free text or an identifier (over {MAX_SHARED_LEVELS} distinct values at a site) and was not used.")
            continue
        (numeric if kind == "numeric" else categorical).append(col)
    if not numeric and not categorical:
        raise DataError("No usable input columns at any site.")
    median, mean, scale, indicator, missing_rate = {}, {}, {}, [], {}
    for col in numeric:
        site_parts = [s[col] for s in summaries.values()]
        n_total = sum(p["n"] for p in site_parts)
        n_miss = sum(p["missing"] for p in site_parts)
        observed = [p for p in site_parts if p["kind"] == "numeric"]
        n_obs = sum(p["n"] - p["missing"] for p in observed)
        med = sum((p["n"] - p["missing"]) * p["median"] for p in observed) / n_obs
        total = sum(p["sum"] for p in observed) + n_miss * med
        total_sq = sum(p["sumsq"] for p in observed) + n_miss * med ** 2
        mu = total / n_total
        var = max(total_sq / n_total - mu ** 2, 0.0)
        median[col], mean[col] = float(med), float(mu)
        scale[col] = float(np.sqrt(var)) if np.sqrt(var) > 1e-12 else 1.0
        missing_rate[col] = n_miss / n_total
        if n_miss:
            indicator.append(col)
    categories: dict[str, list[str]] = {}
    for col in categorical:
        site_parts = [s[col] for s in summaries.values()]
        counts: dict[str, int] = {}
        for p in site_parts:
            for lev, c in p.get("levels", {}).items():
                counts[lev] = counts.get(lev, 0) + c
        n_miss = sum(p["missing"] for p in site_parts)
        ranked = sorted(counts, key=lambda lev: (-counts[lev], lev))
        levels = sorted(ranked[:max_categories])
        if len(ranked) > max_categories:
            levels.append(OTHER)
        if n_miss:
            levels.append(MISSING)
        categories[col] = levels
        missing_rate[col] = n_miss / sum(p["n"] for p in site_parts)
    ordered = [c for c in columns if c in set(numeric) | set(categorical)]
    num_ = [c for c in ordered if c in numeric]
    cat_ = [c for c in ordered if c in categorical]
    names, groups = [], []
    for col in num_:
        names.append(col)
        groups.append(col)
    for col in [c for c in num_ if c in indicator]:
        names.append(f"{col}__is_missing")
        groups.append(col)
    for col in cat_:
        for lev in categories[col]:
            names.append(f"{col}={lev}")
            groups.append(col)
    state = {
        "columns_": ordered, "numeric_": num_, "categorical_": cat_, "median_": median, "mean_": mean,
        "scale_": scale, "indicator_": [c for c in num_ if c in indicator], "missing_rate_": missing_rate,
        "categories_": categories, "feature_names_": names, "feature_groups_": groups,
    }
    featurizer = TabularFeaturizer.from_dict({
        "name": "tabular", "params": {"numeric": num_, "categorical": cat_, "max_categories": max_categories}, "state": state,
    })
    return featurizer, notes
