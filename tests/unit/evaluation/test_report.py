"""HTML report: sections, embedded PNGs, escaping, atomic write."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from medassist.evaluation import (
    ModelCard,
    default_card_texts,
    evaluate_classification,
    subgroup_metrics,
    write_report,
)
from medassist.exceptions import ConfigError, DataError
from medassist.pipeline.tabular import deployed_words

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def make_task(n_classes: int, n: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    z = rng.normal(size=(n, n_classes))
    z[np.arange(n), y] += 1.5
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    classes = ["no disease", "disease"] if n_classes == 2 else [f"type {k}" for k in "ABC"]
    task = "binary" if n_classes == 2 else "multiclass"
    card = ModelCard(
        name="demo", version="0.1", task=task, target="diagnosis", classes=classes,
        positive_class=classes[1] if n_classes == 2 else None,
        data={"source": "synthetic", "n_test": n}, model={"family": "mlp"},
        **default_card_texts(task, "diagnosis"),
    )
    return p, y, classes, card


HISTORY = [
    {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e + 0.05, "val_metric": 0.6 + 0.02 * e}
    for e in range(1, 9)
]


@pytest.mark.parametrize("n_classes", [2, 3])
def test_report_has_sections_and_embedded_plots(tmp_path, n_classes):
    p, y, classes, card = make_task(n_classes)
    evaluation = evaluate_classification(p, y, classes=classes, n_boot=100)
    groups = np.where(np.arange(len(y)) % 2 == 0, "female", "male")
    subgroups = subgroup_metrics(p, y, groups, classes=classes, positive_index=1)
    out = write_report(
        tmp_path / "reports" / "report.html", title="Diagnosis model", evaluation=evaluation,
        y_prob=p, y_true=y, classes=classes, positive_index=1, model_card=card,
        history=HISTORY, subgroups=subgroups,
    )
    assert out == tmp_path / "reports" / "report.html"
    html = out.read_text(encoding="utf-8")
    assert "Decision support, not a medical device" in html
    for section in ('id="summary"', 'id="roc"', 'id="pr"', 'id="calibration"',
                    'id="confusion"', 'id="training"', 'id="subgroups"', 'id="model-card"'):
        assert section in html, section
    for text in ("Discrimination (ROC AUC)", "95% range", "female", "Intended use",
                 "Ethical considerations", classes[-1]):
        assert text in html, text
    images = IMG.findall(html)
    assert len(images) == 5  # ROC, PR, calibration, confusion, training
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    if n_classes == 3:
        assert "vs rest" not in html  # legends live in the PNG; the page explains OvR
        assert "Each class is shown against all others" in html
    assert [f.name for f in out.parent.iterdir()] == ["report.html"]  # no temp file left


def test_report_without_history_or_subgroups_and_escapes_text(tmp_path):
    p, y, classes, card = make_task(2, seed=1)
    card.intended_use = "<script>alert('x')</script>"
    evaluation = evaluate_classification(p, y, classes=classes, n_boot=0)
    out = write_report(
        tmp_path / "r.html", title="A <b>bold</b> title", evaluation=evaluation, y_prob=p,
        y_true=y, classes=classes, positive_index=1, model_card=card,
    )
    html = out.read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>bold</b>" not in html
    assert 'id="training"' not in html and 'id="subgroups"' not in html
    assert len(IMG.findall(html)) == 4
    assert "not available" in html  # no bootstrap, no intervals


def test_report_rejects_mismatched_evaluation(tmp_path):
    p, y, classes, card = make_task(2, seed=2)
    other = evaluate_classification(p[:100], y[:100], classes=classes, n_boot=0)
    with pytest.raises(DataError, match="confusion matrix"):
        write_report(tmp_path / "r.html", title="t", evaluation=other, y_prob=p, y_true=y,
                     classes=classes, positive_index=1, model_card=card)
    with pytest.raises(ConfigError, match="evaluation"):
        write_report(tmp_path / "r.html", title="t", evaluation={}, y_prob=p, y_true=y,
                     classes=classes, positive_index=1, model_card=card)
    assert not (tmp_path / "r.html").exists()


# Issue 17: a report names the deployed model; curves that are not the deployed model's training
# (``--model auto`` chose the logistic regression) are labelled as a candidate's.

HISTORY = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e + 0.05, "val_metric": 0.6 + 0.02 * e} for e in range(1, 9)]


def _report(tmp_path, **kw) -> str:
    p, y, classes, card = make_task(2)
    ev = evaluate_classification(p, y, classes=classes, positive_index=1, n_boot=50)
    out = write_report(tmp_path / "r.html", title="t", evaluation=ev, y_prob=p, y_true=y, classes=classes,
                       positive_index=1, model_card=card, history=HISTORY, **kw)
    return out.read_text()


def test_logistic_deployed_by_auto_labels_the_deep_curves_as_a_candidate(tmp_path):
    deployed, note = deployed_words({"family": "logistic", "ensemble_members": 1, "selection": {
        "why": "chose the logistic regression: validation AUC 0.900 (logistic) vs 0.850 (tabm)",
        "validation_auc": {"tabm": 0.85, "logistic": 0.9}}})
    assert deployed.startswith("Logistic regression, chosen by --model auto (chose the logistic regression")
    assert note is not None and "deep model (tabm)" in note and "not chosen" in note
    html = _report(tmp_path, deployed=deployed, history_note=note)
    assert '<p id="deployed"><strong>Deployed model:</strong> Logistic regression, chosen by --model auto' in html
    assert "Training curves of a candidate that was not deployed" in html and "How did training go?" not in html


def test_a_deep_model_deployed_keeps_its_own_curves(tmp_path):
    deployed, note = deployed_words({"family": "tabm", "ensemble_members": 1})
    assert deployed == "Deep model (tabm)" and note is None
    assert deployed_words({"family": "mlp", "ensemble_members": 5})[0] == "Deep model (mlp), an ensemble of 5 cross-fitted members"
    html = _report(tmp_path, deployed=deployed)
    assert "How did training go?" in html and "not deployed" not in html and "Deep model (tabm)" in html


def test_without_curves_there_is_no_note(tmp_path):
    p, y, classes, card = make_task(2)
    ev = evaluate_classification(p, y, classes=classes, positive_index=1, n_boot=50)
    html = write_report(tmp_path / "r.html", title="t", evaluation=ev, y_prob=p, y_true=y, classes=classes, positive_index=1,
                        model_card=card, history_note="not deployed").read_text()
    assert 'id="history-note"' not in html and 'id="deployed"' not in html
