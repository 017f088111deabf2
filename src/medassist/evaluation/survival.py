"""Survival evaluation: concordance, integrated Brier score, Kaplan-Meier with intervals,
log-rank tests, Cox hazard ratios, and the PNG plots that show them.

Numbers come from the reference implementations, not from re-derivations: scikit-survival for
C-index (Harrell's and Uno's) and the integrated Brier score, lifelines for Kaplan-Meier
(Greenwood / exponential ("log-log") 95% intervals), the log-rank test and the Cox model.

Conventions: ``time`` (N,) follow-up, ``event`` (N,) 1 = event, 0 = censored; ``risk`` (N,)
higher means an earlier event is expected; survival curves are (N, T) on a ``times`` grid.

Example:
    >>> harrell_c(risk, time, event)
    0.74
    >>> km = kaplan_meier_groups(time, event, groups)
    >>> plot_km(km, Path("km.png"), title="WHAS500 by sex")
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medassist.exceptions import DataError
from medassist.fileio import atomic_path

#: Penalizer of every Cox fit (lifelines' L2 penalty on standardised coefficients): enough to keep
#: separable or collinear covariates finite, small enough to leave ordinary hazard ratios alone.
COX_PENALIZER = 0.01


def _survival_array(time: Any, event: Any) -> np.ndarray:
    from sksurv.util import Surv

    return Surv.from_arrays(event=np.asarray(event).astype(bool), time=np.asarray(time, dtype=float))


def _check(time: Any, event: Any, *, owner: str) -> tuple[np.ndarray, np.ndarray]:
    t, d = np.asarray(time, dtype=float), np.asarray(event, dtype=float)
    if t.ndim != 1 or t.shape != d.shape:
        raise DataError(f"{owner}: expected time (N,) and event (N,); got {t.shape} and {d.shape}.")
    if len(t) == 0:
        raise DataError(f"{owner}: no rows.")
    if np.isnan(t).any() or np.isnan(d).any():
        raise DataError(f"{owner}: time or event has missing values; drop those rows first.")
    if (t < 0).any():
        raise DataError(f"{owner}: negative follow-up times; expected times >= 0.")
    if not np.isin(d, (0.0, 1.0)).all():
        raise DataError(f"{owner}: event must be 1 (event) or 0 (censored).")
    return t, d


# ============================================================================ discrimination and calibration


def harrell_c(risk: Any, time: Any, event: Any) -> float:
    """Harrell's C-index (scikit-survival ``concordance_index_censored``); NaN with a warning when no pair is comparable."""
    from sksurv.metrics import concordance_index_censored

    t, d = _check(time, event, owner="harrell_c")
    if d.sum() == 0:
        warnings.warn("harrell_c: no events, so no comparable pairs; C-index is undefined (NaN).", stacklevel=2)
        return math.nan
    return float(concordance_index_censored(d.astype(bool), t, np.asarray(risk, dtype=float))[0])


def uno_c(risk: Any, time: Any, event: Any, *, train_time: Any, train_event: Any, tau: float | None = None) -> float:
    """Uno's IPCW C-index up to ``tau`` (default: the largest test time below the training follow-up)."""
    from sksurv.metrics import concordance_index_ipcw

    t, d = _check(time, event, owner="uno_c")
    tt, td = _check(train_time, train_event, owner="uno_c (training rows)")
    if tau is None:
        tau = float(min(t.max(), tt.max()) * 0.999)
    keep = t < tt.max()  # the censoring distribution is only known inside the training follow-up
    return float(concordance_index_ipcw(_survival_array(tt, td), _survival_array(t[keep], d[keep]),
                                        np.asarray(risk, dtype=float)[keep], tau=tau)[0])


def brier_times(time: Any, event: Any, *, train_time: Any | None = None, n: int = 50) -> np.ndarray:
    """An evaluation grid inside the test follow-up: ``n`` points from its 10th to 90th percentile."""
    t = np.asarray(time, dtype=float)
    lo, hi = np.quantile(t, [0.1, 0.9])
    if train_time is not None:
        hi = min(hi, float(np.max(train_time)) * 0.999)
    grid = np.unique(np.linspace(lo, hi, n))
    return grid[(grid >= t.min()) & (grid < t.max())]


def integrated_brier(
    surv: Any, times: Any, time: Any, event: Any, *, train_time: Any, train_event: Any
) -> float:
    """Integrated Brier score (scikit-survival, IPCW by the training censoring distribution).

    Args:
        surv: (N, T) predicted S(t | x_i) at ``times``.
        times: (T,) grid strictly inside the test follow-up (see :func:`brier_times`).
    """
    from sksurv.metrics import integrated_brier_score

    t, d = _check(time, event, owner="integrated_brier")
    tt, td = _check(train_time, train_event, owner="integrated_brier (training rows)")
    s = np.asarray(surv, dtype=float)
    if s.shape != (len(t), len(times)):
        raise DataError(f"integrated_brier: expected survival (N={len(t)}, T={len(times)}); got {s.shape}.")
    keep = t < tt.max()
    return float(integrated_brier_score(_survival_array(tt, td), _survival_array(t[keep], d[keep]), s[keep], np.asarray(times)))


# ============================================================================ Kaplan-Meier and log-rank


@dataclass
class KMCurve:
    """One group's Kaplan-Meier estimate with 95% pointwise intervals."""

    label: str
    n: int
    events: int
    timeline: np.ndarray
    survival: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    median: float
    median_ci: tuple[float, float]
    #: sorted follow-up times of the group (for the numbers at risk; never serialised)
    durations: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def at_risk(self, t: float) -> int:
        """How many of the group were still followed at ``t`` (time >= t)."""
        return int(len(self.durations) - np.searchsorted(self.durations, t, side="left"))

    def at(self, t: float) -> float:
        """S(t): the step function's value at ``t``."""
        k = int(np.searchsorted(self.timeline, t, side="right")) - 1
        return float(self.survival[max(k, 0)])

    def to_dict(self) -> dict[str, Any]:
        def f(x: float) -> float | None:
            return None if not np.isfinite(x) else float(x)

        return {"label": self.label, "n": self.n, "events": self.events, "median": f(self.median),
                "median_ci": [f(self.median_ci[0]), f(self.median_ci[1])]}


@dataclass
class KMResult:
    curves: list[KMCurve]
    logrank: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)


def kaplan_meier(time: Any, event: Any, *, label: str = "all") -> KMCurve:
    """Kaplan-Meier curve with lifelines' 95% intervals and the median survival time with its CI."""
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

    t, d = _check(time, event, owner="kaplan_meier")
    kmf = KaplanMeierFitter(alpha=0.05).fit(t, d, label=label)
    ci = kmf.confidence_interval_survival_function_
    med = float(kmf.median_survival_time_)
    med_ci = median_survival_times(kmf.confidence_interval_)
    return KMCurve(
        label=label, n=int(len(t)), events=int(d.sum()), timeline=kmf.timeline.astype(float),
        survival=kmf.survival_function_.iloc[:, 0].to_numpy(float), lower=ci.iloc[:, 0].to_numpy(float),
        upper=ci.iloc[:, 1].to_numpy(float), median=med, median_ci=(float(med_ci.iloc[0, 0]), float(med_ci.iloc[0, 1])),
        durations=np.sort(t),
    )


def logrank(time: Any, event: Any, groups: Any) -> dict[str, float]:
    """Log-rank test of equal survival across groups (lifelines ``multivariate_logrank_test``)."""
    from lifelines.statistics import multivariate_logrank_test

    t, d = _check(time, event, owner="logrank")
    g = np.asarray(groups).astype(str)
    if len(np.unique(g)) < 2:
        raise DataError("logrank: needs at least two groups.")
    res = multivariate_logrank_test(t, g, d)
    return {"statistic": float(res.test_statistic), "p_value": float(res.p_value), "df": int(res.degrees_of_freedom)}


def kaplan_meier_groups(time: Any, event: Any, groups: Any | None = None) -> KMResult:
    """One Kaplan-Meier curve per group (in sorted order) and the log-rank test between them."""
    t, d = _check(time, event, owner="kaplan_meier_groups")
    if groups is None:
        return KMResult(curves=[kaplan_meier(t, d)])
    g = np.asarray(groups).astype(str)
    labels = sorted(np.unique(g), key=_natural)
    curves = [kaplan_meier(t[g == lab], d[g == lab], label=lab) for lab in labels]
    return KMResult(curves=curves, logrank=logrank(t, d, g) if len(labels) > 1 else None)


def _natural(s: str) -> tuple:
    try:
        return (0, float(s.split()[-1]) if s[:1] in "<>≤" else float(s), s)
    except ValueError:
        return (1, 0.0, s)


# ============================================================================ Cox model


def cox_hazard_ratios(
    design: pd.DataFrame, time: Any, event: Any, *, penalizer: float = COX_PENALIZER
) -> pd.DataFrame:
    """Cox proportional hazards fit (lifelines ``CoxPHFitter``, L2 ``penalizer`` on standardised
    coefficients); returns one row per design column: ``hr``, ``ci_low``, ``ci_high``, ``p``.

    Args:
        design: (N, P) numeric design matrix (one-hot categoricals with a reference dropped).
    """
    from lifelines import CoxPHFitter

    t, d = _check(time, event, owner="cox_hazard_ratios")
    if design.isna().any().any():
        bad = [c for c in design.columns if design[c].isna().any()]
        raise DataError(f"cox_hazard_ratios: design columns {bad} have missing values; impute or drop them first.")
    const = [c for c in design.columns if design[c].nunique() <= 1]
    x = design.drop(columns=const).astype(float).reset_index(drop=True)
    if x.shape[1] == 0:
        raise DataError("cox_hazard_ratios: no covariate varies in these rows.")
    df = x.assign(__time=t, __event=d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines' convergence chatter; non-finite results are checked below
        cph = CoxPHFitter(penalizer=penalizer).fit(df, duration_col="__time", event_col="__event")
    s = cph.summary
    out = pd.DataFrame({
        "hr": s["exp(coef)"], "ci_low": s["exp(coef) lower 95%"], "ci_high": s["exp(coef) upper 95%"], "p": s["p"],
    })
    out.index = out.index.astype(str)
    out.index.name = "covariate"
    return out


def cox_design(frame: pd.DataFrame, columns: list[str], *, max_levels: int = 12) -> tuple[pd.DataFrame, list[str]]:
    """Numeric columns as they are (median-imputed, a note says so); categoricals one-hot with the
    most frequent level as reference (levels past ``max_levels`` merged into 'other')."""
    parts, notes = [], []
    for c in columns:
        s = frame[c]
        num = pd.to_numeric(s, errors="coerce") if not pd.api.types.is_bool_dtype(s) else s.astype(float)
        if num.notna().sum() >= 0.9 * s.notna().sum() and s.notna().any() and s.nunique() > 2:
            if num.isna().any():
                notes.append(f"'{c}': {int(num.isna().sum())} missing value(s) set to the median for the Cox fit.")
            parts.append(num.fillna(num.median()).rename(c).astype(float))
            continue
        text = s.astype("string").fillna("missing")
        top = text.value_counts()
        keep = list(top.index[:max_levels])
        text = text.where(text.isin(keep), "other")
        ref = text.value_counts().index[0]
        dummies = pd.get_dummies(text, prefix=c, prefix_sep="=", dtype=float)
        parts.append(dummies.drop(columns=[f"{c}={ref}"]))
        notes.append(f"'{c}': reference level '{ref}'.")
    if not parts:
        raise DataError("cox_design: no covariates.")
    return pd.concat(parts, axis=1).reset_index(drop=True), notes


# ============================================================================ plots (PNG, atomically)


def _figure(width: float, height: float, **kw: Any):
    from matplotlib.figure import Figure  # imported here: importing this module stays cheap

    return Figure(figsize=(width, height), dpi=110, layout="constrained", **kw)


def save_png(fig: Any, path: Path) -> Path:
    """Write a figure to ``path`` through a temporary sibling and a rename."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            FigureCanvasAgg(fig)
            fig.savefig(tmp, format="png")
    finally:
        fig.clear()
    return path


#: Follow-up longer than this many days is drawn in months; longer than ``_YEARS_AFTER`` in years.
_MONTHS_AFTER, _YEARS_AFTER = 540.0, 1460.0
_DAYS_PER = {"days": 1.0, "months": 365.25 / 12, "years": 365.25}


def time_axis(t_max: float, time_unit: str = "days", *, n_ticks: int = 6) -> tuple[str, float, np.ndarray]:
    """How to draw a time axis up to ``t_max``: (unit shown, divisor from ``time_unit``, tick
    positions in ``time_unit``). Ticks are round numbers in the unit shown (0, 50, 100 days;
    0, 2, 4, 6 years), never 0, 40, 79, 119; days become months or years when follow-up is long.

    Example:
        >>> time_axis(198.0)[0], time_axis(198.0)[2].tolist()
        ('days', [0.0, 50.0, 100.0, 150.0])
        >>> time_axis(2358.0)[0], (time_axis(2358.0)[2] / 365.25).tolist()
        ('years', [0.0, 2.0, 4.0, 6.0])
    """
    from matplotlib.ticker import MaxNLocator

    unit, div = time_unit, 1.0
    if time_unit == "days" and t_max > _YEARS_AFTER:
        unit, div = "years", _DAYS_PER["years"]
    elif time_unit == "days" and t_max > _MONTHS_AFTER:
        unit, div = "months", _DAYS_PER["months"]
    steps = [1, 1.2, 2, 3, 6, 10] if unit == "months" else [1, 2, 2.5, 5, 10]
    top = max(float(t_max) / div, 1e-9)
    ticks = np.asarray(MaxNLocator(nbins=n_ticks, steps=steps, integer=top >= 3).tick_values(0.0, top), dtype=float)
    ticks = ticks[(ticks >= 0) & (ticks <= top * 1.0001)]
    return unit, div, ticks * div


def _time_ticks(ax: Any, ticks: np.ndarray, div: float) -> None:
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{x / div:g}" for x in ticks])


def plot_km(km: KMResult, path: Path, *, title: str = "Kaplan-Meier", time_unit: str = "days", n_ticks: int = 6,
            ylabel: str = "survival probability", legend_title: str = "") -> Path:
    """KM curves with 95% bands, the legend beside the axes (never over the curves), and the
    numbers at risk under the axis at round times.

    Args:
        ylabel: what the curve is a probability of, in the endpoint's words
            ("probability free of first dermatologic event"; "survival probability" for death).
        legend_title: what the groups are ("Treatment arm"); long group labels are wrapped.
    """
    import textwrap

    def short(label: str) -> str:
        return textwrap.fill(str(label), width=26, max_lines=2, placeholder="…")

    fig = _figure(9.0, 5.2 + 0.22 * len(km.curves))
    gs = fig.add_gridspec(2, 1, height_ratios=[4, 0.35 + 0.3 * len(km.curves)])
    ax, table = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    t_max = max(float(c.timeline.max()) for c in km.curves)
    unit, div, ticks = time_axis(t_max, time_unit, n_ticks=n_ticks)
    colors = [f"C{i}" for i in range(10)]
    for i, c in enumerate(km.curves):
        col = colors[i % 10]
        ax.step(c.timeline, c.survival, where="post", color=col, label=f"{short(c.label)}\n(n={c.n}, events={c.events})")
        ax.fill_between(c.timeline, c.lower, c.upper, step="post", color=col, alpha=0.15, linewidth=0)
    pad = 0.03 * max(t_max, float(ticks[-1]))
    right = max(t_max, float(ticks[-1])) + pad
    ax.set_ylim(0, 1.02)
    ax.set_xlim(-pad, right)
    _time_ticks(ax, ticks, div)
    ax.set_xlabel(f"time ({unit})")
    ax.set_ylabel(ylabel)
    sub = f"log-rank p = {km.logrank['p_value']:.3g}" if km.logrank else ""
    ax.set_title(f"{title}{'  (' + sub + ')' if sub else ''}", fontsize=10)
    ax.grid(alpha=0.3)
    # beside the axes: a legend inside covers the tails of the curves, where the numbers are fewest
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8, frameon=False,
              title=textwrap.fill(legend_title, width=26) if legend_title else None, title_fontsize=8, alignment="left")
    table.set_xlim(-pad, right)
    table.set_ylim(-0.5, len(km.curves) - 0.5)
    table.set_xticks([])
    table.set_yticks(range(len(km.curves)))
    table.set_yticklabels([short(c.label) for c in reversed(km.curves)], fontsize=8)
    table.set_title("numbers at risk", fontsize=8, loc="left")
    for spine in table.spines.values():
        spine.set_visible(False)
    table.tick_params(length=0)
    for row, c in enumerate(reversed(km.curves)):
        for x in ticks:
            table.text(x, row, str(c.at_risk(x)), ha="center", va="center", fontsize=8, color=colors[(len(km.curves) - 1 - row) % 10])
    return save_png(fig, path)


def plot_forest(hr: pd.DataFrame, path: Path, *, title: str = "Cox hazard ratios (95% CI)") -> Path:
    """Hazard-ratio forest plot on a log axis, one row per covariate."""
    rows = hr.iloc[::-1]
    fig = _figure(7.0, 1.2 + 0.3 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    hr, lo, hi = (rows[c].to_numpy(float) for c in ("hr", "ci_low", "ci_high"))
    ax.errorbar(hr, y, xerr=np.vstack([hr - lo, hi - hr]), fmt="s", color="C0",
                ecolor="C0", capsize=3, markersize=4)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(FormatStrFormatter(""))
    ax.set_yticks(y)
    ax.set_yticklabels(rows.index, fontsize=8)
    ax.set_xlabel("hazard ratio (log scale); > 1 means a higher hazard")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return save_png(fig, path)


def plot_risk_curve(
    times: np.ndarray, survival: np.ndarray, path: Path, *, reference: KMCurve | None = None, title: str = "Predicted survival",
    time_unit: str = "days", ylabel: str = "survival probability",
) -> Path:
    """A patient's predicted S(t) beside the cohort's Kaplan-Meier curve (legend below the axes)."""
    fig = _figure(7.0, 4.8)
    ax = fig.add_subplot()
    ax.plot(times, survival, color="C3", label="this patient (model)")
    if reference is not None:
        ax.step(reference.timeline, reference.survival, where="post", color="grey", label=f"cohort Kaplan-Meier (n={reference.n})")
        ax.fill_between(reference.timeline, reference.lower, reference.upper, step="post", color="grey", alpha=0.15, linewidth=0)
    t_max = max(float(np.max(times)), float(reference.timeline.max()) if reference is not None else 0.0)
    unit, div, ticks = time_axis(t_max, time_unit)
    ax.set_ylim(0, 1.02)
    _time_ticks(ax, ticks, div)
    ax.set_xlabel(f"time ({unit})")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
    return save_png(fig, path)
