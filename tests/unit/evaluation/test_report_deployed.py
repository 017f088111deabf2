"""Issue 17: a report names the deployed model, and curves that are not the deployed model's
training (``--model auto`` chose the logistic regression) are labelled as a candidate's."""

import numpy as np

from medassist.evaluation import ModelCard, default_card_texts, evaluate_classification, write_report
from medassist.pipeline.tabular import deployed_words

HISTORY = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e + 0.05, "val_metric": 0.6 + 0.02 * e} for e in range(1, 9)]


def make_task(n_classes: int, n: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    z = rng.normal(size=(n, n_classes))
    z[np.arange(n), y] += 1.5
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    classes = ["no disease", "disease"]
    card = ModelCard(name="demo", version="0.1", task="binary", target="diagnosis", classes=classes, positive_class=classes[1],
                     data={"source": "synthetic", "n_test": n}, model={"family": "tabm"}, **default_card_texts("binary", "diagnosis"))
    return p, y, classes, card


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
