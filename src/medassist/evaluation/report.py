"""One self-contained HTML evaluation report, readable by a clinician.

Plots are drawn on ``matplotlib.figure.Figure`` objects (no pyplot, so no global backend or
figure registry is touched), saved as PNG and embedded as base64 ``data:`` URIs; the page is
rendered from the package template ``templates/report.html`` with autoescaping on and written
atomically (:func:`medassist.fileio.write_atomic`: a temporary file in the same folder, then a rename).

Example:
    >>> evaluation = evaluate_classification(y_prob, y_true, classes=["no", "yes"])
    >>> write_report("out/report.html", title="Diabetes model", evaluation=evaluation,
    ...              y_prob=y_prob, y_true=y_true, classes=["no", "yes"], positive_index=1,
    ...              model_card=card, history=history)
    PosixPath('out/report.html')
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medassist.evaluation.calibration import reliability_curve
from medassist.evaluation.metrics import METRIC_NAMES, check_classes, check_inputs
from medassist.evaluation.model_card import DISCLAIMER, ModelCard
from medassist.exceptions import ConfigError, DataError
from medassist.fileio import write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Plain-language name and explanation of each metric: (label, binary text, multiclass text).
METRIC_INFO: dict[str, tuple[str, str, str]] = {
    "auc": (
        "Discrimination (ROC AUC)",
        "Chance that a patient with the outcome gets a higher score than one without. "
        "0.5 is a coin toss, 1.0 is perfect.",
        "Average over classes of how well each class is ranked above the others. "
        "0.5 is a coin toss, 1.0 is perfect.",
    ),
    "pr_auc": (
        "Average precision (PR AUC)",
        "How precise positive flags stay as more true cases are found. Guessing scores the "
        "share of positives, so compare with that.",
        "Average over classes of how precise each class's flags stay as more cases are found.",
    ),
    "accuracy": (
        "Accuracy",
        "Share of all patients whose predicted class is correct. Misleading when one class is "
        "rare.",
        "Share of all patients whose predicted class is correct.",
    ),
    "sensitivity": (
        "Sensitivity (recall)",
        "Of the patients who have the outcome, the share the model flags.",
        "Average over classes of the share of each class's patients recognised.",
    ),
    "specificity": (
        "Specificity",
        "Of the patients without the outcome, the share the model correctly does not flag.",
        "Average over classes of the share of other patients correctly not put in that class.",
    ),
    "f1": (
        "F1 score",
        "Balance of precision and sensitivity for the positive class (0 to 1).",
        "Average over classes of the balance of precision and sensitivity (0 to 1).",
    ),
    "brier": (
        "Brier score (lower is better)",
        "Mean squared error of the predicted probabilities; 0 is perfect.",
        "Mean squared error of the predicted probabilities, summed over classes; 0 is perfect.",
    ),
    "ece": (
        "Calibration error (lower is better)",
        "Average gap between the predicted probability and how often the outcome really "
        "occurred; 0 means the probabilities can be taken at face value.",
        "Average gap between the model's confidence and how often it was right.",
    ),
}
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


# --------------------------------------------------------------------------- figures


def _new_figure(width: float, height: float, **kw: Any) -> Figure:
    from matplotlib.figure import Figure  # here: importing the module must stay cheap

    return Figure(figsize=(width, height), dpi=100, layout="constrained", **kw)


def _to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        fig.clear()  # free the artists now; the figure is not in any pyplot registry
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _one_vs_rest(y: np.ndarray, classes: list[str], pos: int) -> list[tuple[int, str]]:
    """(column, legend name) pairs to draw: the positive class, or every class."""
    if len(classes) == 2:
        return [(pos, classes[pos])]
    return [(k, f"{name} vs rest") for k, name in enumerate(classes)]


def _curve_counts(score: np.ndarray, is_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives (L,) when flagging at each distinct score, highest first."""
    order = np.argsort(-score, kind="mergesort")
    s = score[order]
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    tps = np.cumsum(is_pos[order])[last].astype(np.float64)
    return tps, (last + 1) - tps


def _plot_roc(p: np.ndarray, y: np.ndarray, classes: list[str], pos: int) -> str:
    fig = _new_figure(5.2, 4.4)
    ax = fig.subplots()
    for i, (k, name) in enumerate(_one_vs_rest(y, classes, pos)):
        is_pos = y == k
        if is_pos.all() or not is_pos.any():
            ax.plot([], [], color=_PALETTE[i % 10], label=f"{name}: not defined (one class only)")
            continue
        tps, fps = _curve_counts(p[:, k], is_pos)
        fpr, tpr = np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]
        auc = float(np.trapezoid(tpr, fpr))
        ax.plot(fpr, tpr, color=_PALETTE[i % 10], lw=2, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="coin toss")
    ax.set(xlabel="False positive rate (1 - specificity)", ylabel="True positive rate "
           "(sensitivity)", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _to_data_uri(fig)


def _plot_pr(p: np.ndarray, y: np.ndarray, classes: list[str], pos: int) -> str:
    fig = _new_figure(5.2, 4.4)
    ax = fig.subplots()
    for i, (k, name) in enumerate(_one_vs_rest(y, classes, pos)):
        is_pos = y == k
        color = _PALETTE[i % 10]
        if not is_pos.any():
            ax.plot([], [], color=color, label=f"{name}: not defined (no cases)")
            continue
        tps, fps = _curve_counts(p[:, k], is_pos)
        precision, recall = tps / (tps + fps), tps / tps[-1]
        ap = float(np.sum(np.diff(recall, prepend=0.0) * precision))
        # Precision P_k holds on (R_{k-1}, R_k], the steps that average precision sums.
        ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre", color=color,
                lw=2, label=f"{name} (AP {ap:.3f})")
        ax.axhline(is_pos.mean(), ls="--", lw=1, color=color, alpha=0.6)
    ax.plot([], [], ls="--", color="grey", lw=1, label="guessing (share of cases)")
    ax.set(xlabel="Recall (sensitivity)", ylabel="Precision (positive predictive value)",
           xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return _to_data_uri(fig)


def _plot_calibration(
    p: np.ndarray, y: np.ndarray, classes: list[str], pos: int, n_bins: int = 10
) -> str:
    mean_pred, frac, counts = reliability_curve(p, y, positive_index=pos, n_bins=n_bins)
    binary = len(classes) == 2
    fig = _new_figure(5.2, 5.2)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    top.plot(mean_pred, frac, marker="o", color=_PALETTE[0], lw=2, label="model")
    top.set(ylabel=f"Observed share of '{classes[pos]}'" if binary else "Observed accuracy",
            xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    edges = np.linspace(0, 1, n_bins + 1)
    bottom.bar(edges[:-1], counts, width=1 / n_bins, align="edge", color=_PALETTE[0],
               alpha=0.6, edgecolor="white")
    bottom.set(xlabel=f"Predicted probability of '{classes[pos]}'" if binary
               else "Model confidence (probability of its top class)", ylabel="Patients")
    return _to_data_uri(fig)


def _plot_confusion(cm: np.ndarray, classes: list[str]) -> str:
    support = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(support > 0, cm / support, np.nan)
    size = max(3.6, 0.9 * len(classes) + 1.8)
    fig = _new_figure(2 * size, size)
    axes = fig.subplots(1, 2)
    for ax, values, heading, fmt in (
        (axes[0], cm.astype(float), "Number of patients", "{:.0f}"),
        (axes[1], rates, "Share of each actual class", "{:.0%}"),
    ):
        ax.imshow(np.nan_to_num(values / max(np.nanmax(values), 1e-12)), cmap="Blues",
                  vmin=0, vmax=1)
        for i in range(len(classes)):
            for j in range(len(classes)):
                v = values[i, j]
                dark = not math.isnan(v) and v / max(np.nanmax(values), 1e-12) > 0.6
                ax.text(j, i, "–" if math.isnan(v) else fmt.format(v), ha="center",
                        va="center", color="white" if dark else "black", fontsize=9)
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set(xlabel="Predicted class", ylabel="Actual class", title=heading)
    return _to_data_uri(fig)


def _history_words(card: ModelCard) -> dict[str, Any]:
    """The validation metric's name and the best epoch, from the card's training section."""
    training = card.training or {}
    name = training.get("val_metric_name") or ("validation AUC" if card.task in ("binary", "multiclass", "multilabel")
                                               else "validation metric")
    best = training.get("best_epoch")
    return {"metric_name": str(name), "best_epoch": int(best) if isinstance(best, int | float) and best > 0 else None}


#: Per-epoch bookkeeping that is not a curve to judge training by (cumulative wall time).
_NOT_PLOTTED = {"epoch", "seconds"}


def _plot_history(history: list[dict[str, Any]], *, metric_name: str = "validation metric",
                  best_epoch: int | None = None) -> str | None:
    """Training curves: losses together; the validation metric alone on its own axis, named, with
    the best epoch marked; the learning rate in a small panel of its own. Never wall time: on a
    shared axis, cumulative seconds or the learning rate flatten the metric into a line."""
    def numeric(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    keys = sorted({k for row in history for k, v in row.items() if numeric(v)} - _NOT_PLOTTED)
    if not keys:
        return None
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]

    def series(k: str) -> list[float]:
        return [row[k] if numeric(row.get(k)) else math.nan for row in history]

    loss_keys = [k for k in keys if "loss" in k]
    metric_keys = [k for k in keys if "loss" not in k and k != "lr"]
    panels = [(ks, label) for ks, label in [(loss_keys, "Loss (lower is better)"), (metric_keys, metric_name)] if ks]
    has_lr = "lr" in keys
    if not panels and not has_lr:
        return None
    fig = _new_figure(4.6 * max(len(panels), 1) + (2.6 if has_lr else 0), 3.8)
    widths = [1.0] * len(panels) + ([0.55] if has_lr else [])
    axes = np.atleast_1d(fig.subplots(1, len(widths), gridspec_kw={"width_ratios": widths}))
    for ax, (ks, label) in zip(axes, panels):
        for i, k in enumerate(ks):
            name = {"train_loss": "training loss", "val_loss": "validation loss", "val_metric": metric_name}.get(k, k)
            ax.plot(epochs, series(k), marker="o", ms=3, color=_PALETTE[i % 10], label=name)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})")
        ax.set(xlabel="Epoch", ylabel=label, title=label)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if has_lr:
        ax = axes[-1]
        ax.plot(epochs, series("lr"), color="grey")
        ax.set_title("Learning rate", fontsize=9)
        ax.set_xlabel("Epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.grid(alpha=0.3)
    return _to_data_uri(fig)


# --------------------------------------------------------------------------- page content


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "not defined"
    return f"{x:.{digits}f}"


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items()) if value else "none"
    return "not recorded" if value is None else str(value)


def _metric_rows(evaluation: dict[str, Any], binary: bool) -> list[dict[str, str]]:
    rows = []
    for name in METRIC_NAMES:
        m = evaluation["metrics"].get(name)
        if m is None:
            continue
        label, text_binary, text_multi = METRIC_INFO[name]
        low, high = m.get("ci_low"), m.get("ci_high")
        rows.append({
            "label": label,
            "value": _fmt(m.get("value")),
            "ci": "not available" if low is None or high is None
            else f"{_fmt(low)} to {_fmt(high)}",
            "explanation": text_binary if binary else text_multi,
        })
    return rows


def _confusion_table(cm: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name, counts in zip(classes, cm):
        total = int(counts.sum())
        rows.append({
            "actual": name,
            "cells": [
                f"{int(c)} ({c / total:.0%})" if total else f"{int(c)}" for c in counts
            ],
            "total": total,
        })
    return rows


def _subgroup_rows(subgroups: list[dict[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for g in subgroups:
        suppressed = bool(g.get("suppressed"))
        row = {"group": str(g.get("group", "?")), "n": str(g.get("n", "?"))}
        for k in ("auc", "accuracy", "sensitivity", "specificity"):
            row[k] = "too few patients" if suppressed else _fmt(g.get(k))
        rows.append(row)
    return rows


def _comparison_context(comparison: dict[str, Any] | None, evaluation: dict[str, Any]) -> dict[str, Any] | None:
    """Rows for the "compared with simple baselines" table: the model first, then each baseline."""
    if not comparison or not (comparison.get("comparators") or comparison.get("notes")):
        return None

    def auc_cells(m: dict[str, Any]) -> tuple[str, str]:
        a = m.get("auc", {})
        low, high = a.get("ci_low"), a.get("ci_high")
        return _fmt(a.get("value")), ("not available" if low is None or high is None else f"{_fmt(low)} to {_fmt(high)}")

    own = evaluation["metrics"]
    auc, ci = auc_cells(own)
    rows = [{"label": comparison.get("model_label", "This model"), "auc": auc, "auc_ci": ci,
             "accuracy": _fmt(own.get("accuracy", {}).get("value")), "brier": _fmt(own.get("brier", {}).get("value")),
             "diff": "", "diff_ci": ""}]
    for r in comparison.get("comparators") or []:
        auc, ci = auc_cells(r["metrics"])
        d = r.get("auc_difference", {})
        rows.append({
            "label": r.get("label", r.get("name", "baseline")), "auc": auc, "auc_ci": ci,
            "accuracy": _fmt(r["metrics"].get("accuracy", {}).get("value")),
            "brier": _fmt(r["metrics"].get("brier", {}).get("value")),
            "diff": "not defined" if d.get("difference") is None else f"{d['difference']:+.3f}",
            "diff_ci": "not available" if d.get("ci_low") is None else f"{d['ci_low']:+.3f} to {d['ci_high']:+.3f}",
        })
    comparators = comparison.get("comparators") or []
    return {
        "rows": rows, "verdicts": [r["verdict"] for r in comparators if r.get("verdict")],
        "not_better": [r["verdict"] for r in comparators if not r.get("model_better")],
        "notes": list(comparison.get("notes") or []),
    }


def _card_sections(card: ModelCard) -> list[dict[str, Any]]:
    sections = []
    for title, d in (("Data", card.data), ("Model", card.model), ("Training", card.training),
                     ("Calibration", card.calibration), ("Privacy", card.privacy)):
        sections.append({"title": title, "items": [(str(k), _plain(v)) for k, v in d.items()]})
    return sections


def _render(context: dict[str, Any]) -> str:
    import jinja2

    source = (
        resources.files("medassist.evaluation").joinpath("templates", "report.html")
        .read_text(encoding="utf-8")
    )
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    return env.from_string(source).render(**context)


def write_report(
    path: str | os.PathLike[str],
    *,
    title: str,
    evaluation: dict[str, Any],
    y_prob: Any,
    y_true: Any,
    classes: Sequence[str],
    positive_index: int,
    model_card: ModelCard,
    history: list[dict[str, Any]] | None = None,
    subgroups: list[dict[str, Any]] | None = None,
    rows_note: str | None = None,
    warnings: Sequence[str] = (),
    comparison: dict[str, Any] | None = None,
    deployed: str | None = None,
    history_note: str | None = None,
) -> Path:
    """Write one self-contained HTML report and return its path.

    Args:
        path: output file (its folder is created if needed).
        title: page title.
        evaluation: ``evaluate_classification`` output for the same predictions.
        y_prob: probabilities (N, C).
        y_true: class indices (N,).
        classes: C class names.
        positive_index: column of the positive class (binary; ignored for multiclass).
        model_card: card shown at the end of the report.
        history: per-epoch dicts (``epoch``, ``train_loss``, ``val_loss``, ``val_metric``, ...).
        subgroups: ``subgroup_metrics`` output.
        rows_note: which rows were evaluated, shown in place of "N patients in the test set"
            (e.g. "150 patients evaluated, never seen in training; 39 seen in training were
            excluded").
        warnings: lines shown prominently above the summary (poor calibration, rows seen in
            training included, ...).
        comparison: the simple baselines scored on the same rows: ``{"model_label",
            "comparators": [medassist.evaluation.comparison.compare(...)], "notes": [...]}``;
            shown beside the model, and said at the top when the model is not better.
        deployed: which model the bundle deploys, stated at the top (e.g. "logistic regression,
            chosen by --model auto ...").
        history_note: set when ``history`` is not the deployed model's training (``--model auto``
            chose a model without epochs): the curves are then labelled as the training of a
            candidate that was not deployed, with this explanation.

    Returns:
        The path written.
    """
    owner = "write_report"
    p, y = check_inputs(y_prob, y_true, positive_index=positive_index, owner=owner)
    names = check_classes(classes, p.shape[1], owner=owner)
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("metrics"), dict):
        raise ConfigError(f"{owner}: 'evaluation' must be evaluate_classification() output.")
    if not isinstance(model_card, ModelCard):
        raise ConfigError(f"{owner}: 'model_card' must be a ModelCard. Got {type(model_card)}.")
    if history is not None and not all(isinstance(row, dict) for row in history):
        raise ConfigError(f"{owner}: 'history' must be a list of per-epoch dicts.")
    pos = int(positive_index) if len(names) == 2 else 0
    binary = len(names) == 2

    cm = np.asarray(evaluation.get("confusion_matrix", []), dtype=np.int64)
    if cm.shape != (len(names), len(names)) or int(cm.sum()) != len(y):
        raise DataError(
            f"{owner}: the evaluation's confusion matrix {cm.shape} does not match these "
            f"{len(y)} predictions over {len(names)} classes; pass the evaluation of the same data."
        )
    boot = evaluation.get("bootstrap", {})
    figures = {
        "roc": _plot_roc(p, y, names, pos),
        "pr": _plot_pr(p, y, names, pos),
        "calibration": _plot_calibration(p, y, names, pos),
        "confusion": _plot_confusion(cm, names),
        "history": _plot_history(history, **_history_words(model_card)) if history else None,
    }
    card = model_card
    context = {
        "title": title,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "binary": binary,
        "n": len(y),
        "rows_note": rows_note,
        "warnings": list(warnings),
        "classes": names,
        "class_counts": [(c, int(k)) for c, k in zip(names, np.bincount(y, minlength=len(names)))],
        "positive_class": names[pos] if binary else None,
        "threshold": evaluation.get("threshold"),
        "ci_level": f"{100 * (1 - float(boot.get('alpha', 0.05))):g}%",
        "n_boot": boot.get("n_boot"),
        "metric_rows": _metric_rows(evaluation, binary),
        "figures": figures,
        "confusion_rows": _confusion_table(cm, names),
        "subgroup_rows": _subgroup_rows(subgroups) if subgroups else None,
        "comparison": _comparison_context(comparison, evaluation),
        "deployed": deployed,
        "history_note": history_note if figures["history"] else None,
        "card": {
            "name": card.name, "version": card.version, "created": card.created,
            "task": card.task, "target": card.target, "classes": ", ".join(card.classes),
            "positive_class": card.positive_class,
            "intended_use": card.intended_use or "Not stated.",
            "out_of_scope": card.out_of_scope or "Not stated.",
            "sections": _card_sections(card),
            "limitations": card.limitations,
            "ethical_considerations": card.ethical_considerations,
        },
    }
    out = Path(path)
    write_atomic(out, _render(context), mode=0o644)  # an ordinary document, readable by all
    return out
