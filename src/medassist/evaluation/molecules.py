"""Evaluation of molecular property models: metrics per target (bootstrap CIs, missing labels
skipped), the headline number, the model card and the self-contained HTML report with parity
plots, training curves and the applicability-domain analysis.

Example:
    >>> metrics = evaluate_predictions(pred, y, names=["logS"], kind="regression", classes={}, n_boot=1000)
    >>> headline(metrics, "regression")
    {'logS': 0.71}
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np

from medassist.evaluation.metrics import evaluate_classification
from medassist.evaluation.model_card import DISCLAIMER, ModelCard, default_card_texts
from medassist.evaluation.regression import evaluate_regression


def evaluate_predictions(pred: np.ndarray, y: np.ndarray, *, names: list[str], kind: str,
                         classes: dict[str, list[str]], n_boot: int, seed: int = 0) -> dict[str, Any]:
    """Metrics per task (NaN targets skipped) with bootstrap CIs."""
    out: dict[str, Any] = {}
    for t, name in enumerate(names):
        m = ~np.isnan(y[:, t])
        if m.sum() < 2:
            out[name] = {"n": int(m.sum()), "note": "fewer than two measured molecules; no metrics"}
            continue
        if kind == "regression":
            out[name] = evaluate_regression(pred[m, t], y[m, t], n_boot=n_boot, seed=seed)
        else:
            p = pred[m, t]
            out[name] = evaluate_classification(np.column_stack([1 - p, p]), y[m, t].astype(int), classes=classes[name],
                                                positive_index=1, n_boot=n_boot, seed=seed)
    return out


def headline(metrics: dict[str, Any], kind: str) -> dict[str, float | None]:
    """One number per task: RMSE (regression) or AUC (classification)."""
    key = "rmse" if kind == "regression" else "auc"
    return {t: (m.get("metrics", {}).get(key, {}) or {}).get("value") for t, m in metrics.items()}


def molecule_card(*, family: str, size: str, names: list[str], classification: bool, classes: dict[str, list[str]], source: Any,
                  data: dict[str, Any], model: dict[str, Any], training: dict[str, Any], metrics: dict[str, Any],
                  calibration: dict[str, Any], limitations: list[str]) -> tuple[dict[str, Any], str]:
    """The model card of a screening model (``family``-``size`` for targets ``names``) as JSON and
    Markdown. Regression cards are written as plain dicts with the ModelCard layout, because
    ModelCard requires class names."""
    target = ", ".join(names)
    kind = "binary" if classification else "regression"
    texts = default_card_texts(kind, target)
    texts["intended_use"] = (f"Research and decision support in drug discovery: ranks molecules by predicted '{target}' with an "
                             "uncertainty and an applicability-domain flag, to help a qualified scientist prioritise which "
                             "molecules to make or test. It does not replace measurement.")
    texts["out_of_scope"] = ("Decisions about patients; safety or dosing decisions; molecules unlike the training set (flagged "
                             "out of domain); any use as a certified medical device.")
    common = dict(name=f"{family}-{size} for {target} ({source.name})", version="1",
                  created=datetime.now(UTC).isoformat(timespec="seconds"), target=target,
                  intended_use=texts["intended_use"], out_of_scope=texts["out_of_scope"], data=data, model=model,
                  training=training, metrics=metrics, calibration=calibration,
                  limitations=limitations + texts["limitations"][:1], ethical_considerations=[
                      "A ranked list can make a model look more certain than it is; read each score with its uncertainty and domain flag.",
                  ], privacy={})
    if classification and len(names) == 1:
        cls = classes[names[0]]
        card = ModelCard(task="binary", classes=cls, positive_class=cls[1], **common)
        return card.to_dict(), card.to_markdown()
    d = {**common, "task": "regression" if not classification else "binary", "classes": [], "positive_class": None, "schema_version": 1}
    lines = [f"# Model card: {d['name']} (version 1)", "", f"> **{DISCLAIMER}**", "", f"- **Task:** {d['task']} of `{target}`",
             f"- **Created:** {d['created']}", "", "## Intended use", "", d["intended_use"], "", "## Out of scope", "", d["out_of_scope"], ""]
    for title in ("data", "model", "training", "calibration"):
        lines += [f"## {title.capitalize()}", ""] + [f"- **{k}:** {v}" for k, v in d[title].items()] + [""]
    lines += ["## Performance on the test split", ""]
    for t, m in metrics.items():
        for name, v in (m.get("metrics") or {}).items():
            if v.get("value") is not None:
                ci = "" if v.get("ci_low") is None else f" (95% CI {v['ci_low']:.3f} to {v['ci_high']:.3f})"
                lines.append(f"- {t} {name}: {v['value']:.3f}{ci}")
    lines += ["", "## Limitations", ""] + [f"- {x}" for x in d["limitations"]]
    return d, "\n".join(lines) + "\n"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def molecule_report(title: str, metrics: dict[str, Any], pred: np.ndarray, y: np.ndarray, *, names: list[str], classification: bool,
                    card_md: str, ad: dict[str, Any], history: list[dict[str, Any]]) -> bytes:
    """A self-contained HTML report: metrics with CIs, parity (regression) plots, AD analysis."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             "<style>body{font-family:sans-serif;max-width:980px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p><b>{html.escape(DISCLAIMER)}</b></p>"]
    for t, m in metrics.items():
        parts.append(f"<h2>{html.escape(t)} (test split, n = {m.get('n')})</h2><table><tr><th>metric</th><th>value</th><th>95% CI</th></tr>")
        for name, v in (m.get("metrics") or {}).items():
            val = "n/a" if v.get("value") is None else f"{v['value']:.3f}"
            ci = "n/a" if v.get("ci_low") is None else f"{v['ci_low']:.3f} to {v['ci_high']:.3f}"
            parts.append(f"<tr><td>{name}</td><td>{val}</td><td>{ci}</td></tr>")
        parts.append("</table>")
        j = names.index(t)
        mask = ~np.isnan(y[:, j])
        if not classification and mask.any():
            fig = Figure(figsize=(4, 4))
            ax = fig.subplots()
            ax.scatter(y[mask, j], pred[mask, j], s=8, alpha=0.6)
            lo, hi = float(np.nanmin(y[mask, j])), float(np.nanmax(y[mask, j]))
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
            ax.set_xlabel(f"measured {t}")
            ax.set_ylabel(f"predicted {t}")
            parts.append(f"<img alt='parity plot' src='data:image/png;base64,{_png(fig)}'>")
    if history:
        fig = Figure(figsize=(5, 3))
        ax = fig.subplots()
        ax.plot([h["epoch"] for h in history], [h["train_loss"] for h in history], label="train")
        ax.plot([h["epoch"] for h in history], [h["val_loss"] for h in history], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
        parts.append(f"<h2>Training</h2><img alt='training curves' src='data:image/png;base64,{_png(fig)}'>")
    parts.append(f"<h2>Applicability domain</h2><pre>{html.escape(json.dumps(ad, indent=1))}</pre>")
    parts.append(f"<h2>Model card</h2><pre>{html.escape(card_md)}</pre></body></html>")
    return "".join(parts).encode()
