"""The model beside simple baselines: paired AUC differences, said in words a clinician reads.

Every tabular diagnosis report, model card and ``evaluate`` shows the deployed model next to a
logistic regression and gradient-boosted trees fitted on the same split. The difference in AUC
(model − baseline) comes with a paired bootstrap interval (:func:`paired_auc_difference`); when
that interval includes 0 or lies below it, the text says plainly that the simple model does as
well (or better).

Example:
    >>> row = compare(p_mlp, p_lr, y, model="mlp", baseline="logistic", classes=["no", "yes"])
    >>> row["verdict"]
    'A simple logistic model does as well on these data (AUC 0.85 vs 0.84 for the deep model, difference −0.01 [−0.04, +0.02]).'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medassist.evaluation.metrics import evaluate_classification, paired_auc_difference

#: How a model is named in a sentence (the subject, with its article) and in a table.
MODEL_WORDS: dict[str, tuple[str, str]] = {
    "logistic": ("a simple logistic model", "Logistic regression (baseline)"),
    "hgb": ("a gradient-boosted tree model", "Gradient-boosted trees (HistGradientBoosting, baseline)"),
}
DEEP_WORDS = ("the deep model", "Deep model")


def model_words(name: str) -> tuple[str, str]:
    """(phrase, table label) for a model family name; any other family is "the deep model"."""
    return MODEL_WORDS.get(name, (DEEP_WORDS[0], f"{DEEP_WORDS[1]} ({name})"))


def _num(x: float) -> str:
    return f"{x:.2f}"


def _signed(x: float) -> str:
    return ("+" if x >= 0 else "−") + f"{abs(x):.2f}"


def verdict(diff: dict[str, Any], *, model: str, baseline: str) -> str:
    """One sentence on ``diff`` (:func:`paired_auc_difference` of model − baseline).

    Better only when the whole interval lies above 0; "does as well" when it includes 0; "does
    better" when it lies below 0.
    """
    subject, _ = model_words(model)
    other, _ = model_words(baseline)
    a, b, d, lo, hi = (diff.get(k) for k in ("auc_a", "auc_b", "difference", "ci_low", "ci_high"))
    if a is None or b is None or d is None:
        return f"{subject[0].upper() + subject[1:]} and {other} could not be compared: the AUC is not defined on these rows."
    if lo is None or hi is None:
        return (f"{other[0].upper() + other[1:]} reaches AUC {_num(b)} vs {_num(a)} for {subject} "
                f"(difference {_signed(d)}; no interval, so no conclusion).")
    ci = f"[{_signed(lo)}, {_signed(hi)}]"
    if lo > 0:
        return (f"{subject[0].upper() + subject[1:]} ranks patients better than {other} on these data "
                f"(AUC {_num(a)} vs {_num(b)}, difference {_signed(d)} {ci}).")
    if hi < 0:
        return (f"{other[0].upper() + other[1:]} does better than {subject} on these data "
                f"(AUC {_num(b)} vs {_num(a)} for {subject}, difference {_signed(d)} {ci}); prefer the simpler model.")
    return (f"{other[0].upper() + other[1:]} does as well on these data "
            f"(AUC {_num(b)} vs {_num(a)} for {subject}, difference {_signed(d)} {ci}).")


def compare(
    p_model: np.ndarray, p_baseline: np.ndarray, y: np.ndarray, *, model: str, baseline: str, classes: list[str],
    positive_index: int, n_boot: int = 1000, seed: int = 0, fitted_on: str = "",
) -> dict[str, Any]:
    """The baseline's own metrics (with intervals), the paired AUC difference and the verdict.

    ``n_boot`` and ``seed`` should be those of the model's own evaluation: the resamples are then
    the very ones its intervals were computed on.
    """
    evaluation = evaluate_classification(p_baseline, y, classes=classes, positive_index=positive_index, n_boot=n_boot, seed=seed)
    diff = paired_auc_difference(p_model, p_baseline, y, positive_index=positive_index, n_boot=n_boot, seed=seed)
    return {
        "name": baseline, "label": model_words(baseline)[1], "fitted_on": fitted_on,
        "metrics": evaluation["metrics"], "n": evaluation["n"],
        "auc_difference": diff, "verdict": verdict(diff, model=model, baseline=baseline),
        "model_better": bool(diff["ci_low"] is not None and diff["ci_low"] > 0),
    }


def comparison_lines(rows: list[dict[str, Any]], *, model: str) -> list[str]:
    """Terminal lines: each baseline's AUC, the paired difference, and the verdict."""
    lines = []
    for r in rows:
        m, d = r["metrics"].get("auc", {}), r["auc_difference"]
        auc = "n/a" if m.get("value") is None else f"{m['value']:.3f}" + (
            f" [{m['ci_low']:.3f}, {m['ci_high']:.3f}]" if m.get("ci_low") is not None else "")
        dd = "n/a" if d.get("difference") is None else f"{d['difference']:+.3f}" + (
            f" [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]" if d.get("ci_low") is not None else "")
        lines.append(f"{r['label']}: AUC {auc}; difference ({model} − it) {dd}")
        lines.append(f"  {r['verdict']}")
    return lines
