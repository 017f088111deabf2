"""Issue 17: every number honest. ``train`` fits a logistic regression and gradient-boosted trees
on the same split and shows them beside the deep model with a paired AUC difference, in words
when the deep model is not better; ``evaluate`` re-applies the stored logistic regression;
``--missing-values`` declares values that mean missing, counted, printed and kept with the model;
``--model auto`` chooses on the validation split and says why. Real subprocesses, seeded."""

import json

import numpy as np
import pandas as pd
import pytest

from medassist.testing import one_line_error

FAST = ["--epochs", "2", "--ensemble", "1", "--no-progress", "--seed", "0"]


def linear_table(n: int, seed: int) -> pd.DataFrame:
    """An outcome that is exactly logistic in the inputs: a linear model is the right model.
    ``insulin`` holds 0 for "not measured" (as in the Pima data), ``bp`` uses 0 and -99."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    logit = 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.8 * x[:, 2]
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    insulin = np.round(80 + 30 * rng.normal(size=n), 1)
    insulin[rng.random(n) < 0.2] = 0
    bp = np.round(70 + 10 * rng.normal(size=n))
    bp[rng.random(n) < 0.05] = 0
    bp[rng.random(n) < 0.05] = -99
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "d": x[:, 3], "insulin": insulin, "bp": bp,
                         "disease": np.where(y, "yes", "no")})


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    train, new = d / "linear.csv", d / "linear_new.csv"
    linear_table(400, seed=1).to_csv(train, index=False)
    linear_table(150, seed=2).to_csv(new, index=False)
    return train, new


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tables, cli):
    out = tmp_path_factory.mktemp("models") / "lin"
    proc = cli("train", "--data", tables[0], "--target", "disease", "--out", out,
               "--missing-values", "insulin=0", "--missing-values", "bp=0,-99", *FAST)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_the_card_lists_both_baselines_with_metrics_and_paired_differences(trained):
    out, _ = trained
    card = json.loads((out / "model_card.json").read_text())
    rows = card["baselines"]["comparators"]
    assert [r["name"] for r in rows] == ["logistic", "hgb"]
    for r in rows:
        assert 0.5 < r["metrics"]["auc"]["value"] <= 1 and r["metrics"]["auc"]["ci_low"] is not None
        d = r["auc_difference"]
        assert d["difference"] == pytest.approx(card["metrics"]["metrics"]["auc"]["value"] - r["metrics"]["auc"]["value"])
        assert d["ci_low"] <= d["difference"] <= d["ci_high"] and "paired" in d["method"]
        assert r["n"] == card["data"]["n_test"]
    assert "training split only" in card["baselines"]["fitted_on"] and "not stored" in card["baselines"]["evaluate"]
    md = (out / "model_card.md").read_text()
    assert "Compared with simple baselines" in md and "Logistic regression (baseline)" in md
    stored = json.loads((out / "baselines.json").read_text())
    assert len(stored["logistic"]["coef"][0]) == len(stored["feature_names"]) and stored["hgb"]["stored"] is False


def test_when_logistic_regression_does_as_well_report_card_and_terminal_say_so(trained):
    out, proc = trained
    lr = json.loads((out / "model_card.json").read_text())["baselines"]["comparators"][0]
    # on a truly linear outcome and 2 epochs, the deep model is not demonstrably better
    assert lr["auc_difference"]["ci_low"] <= 0 and not lr["model_better"]
    words = ("A simple logistic model does as well on these data", "A simple logistic model does better than the deep model")
    assert lr["verdict"].startswith(words)
    assert "for the deep model, difference" in lr["verdict"]
    assert lr["verdict"] in proc.stderr
    html = (out / "report.html").read_text()
    assert "Not better than a simple model" in html and lr["verdict"] in html and 'id="baselines"' in html
    assert lr["verdict"] in (out / "model_card.md").read_text()


def test_declared_missing_values_are_counted_printed_recorded_and_applied(trained, tables):
    out, proc = trained
    raw = pd.read_csv(tables[0])
    n_ins, n_bp = int((raw["insulin"] == 0).sum()), int(raw["bp"].isin([0, -99]).sum())
    assert n_ins > 0 and n_bp > 0
    assert f"insulin: 0 treated as missing in {n_ins} rows" in proc.stderr
    assert f"bp: 0 or -99 treated as missing in {n_bp} rows" in proc.stderr
    card = json.loads((out / "model_card.json").read_text())
    assert card["data"]["missing_values"]["insulin"] == f"0 treated as missing in {n_ins} rows"
    fz = json.loads((out / "featurizer.json").read_text())
    assert fz["params"]["missing_values"] == {"insulin": [0], "bp": [0, -99]}
    assert "insulin" in fz["state"]["indicator_"] and fz["state"]["range_"]["insulin"][0] > 0  # 0 was never a value
    assert (raw["insulin"] == 0).sum() == n_ins  # the user's file is untouched


def test_evaluate_shows_the_logistic_baseline_on_the_same_rows(trained, tables, cli, tmp_path):
    out, _ = trained
    proc = cli("evaluate", out, "--data", tables[1], "--n-boot", "200", "--out", tmp_path / "m.json", "--report", tmp_path / "r.html")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "m.json").read_text())
    [lr] = result["baselines"]
    assert lr["name"] == "logistic" and lr["n"] == result["n"] == 150
    assert "Logistic regression (baseline): AUC" in proc.stdout and lr["verdict"] in proc.stdout
    assert any("gradient-boosted trees: not shown" in n for n in result["baseline_notes"])
    new = pd.read_csv(tables[1])
    assert f"insulin: 0 treated as missing in {int((new['insulin'] == 0).sum())} rows" in proc.stdout
    assert lr["verdict"] in (tmp_path / "r.html").read_text()


def test_model_auto_chooses_on_validation_and_records_why(tables, cli, tmp_path):
    out = tmp_path / "auto"
    proc = cli("train", "--data", tables[0], "--target", "disease", "--out", out, "--model", "auto", *FAST)
    assert proc.returncode == 0, proc.stderr
    card = json.loads((out / "model_card.json").read_text())
    sel = card["model"]["selection"]
    assert "validation split" in sel["rule"] and set(sel["validation_auc"]) == {"tabm", "logistic"}  # the default deep model
    best = max(sel["validation_auc"], key=lambda k: (sel["validation_auc"][k], k == "tabm"))
    assert sel["chosen"] == best == card["model"]["family"]
    assert "model selection (--model auto)" in proc.stderr and sel["why"] in proc.stderr
    pred = cli("predict", out, "--data", tables[1], "--out", tmp_path / "p.csv")
    assert pred.returncode == 0, pred.stderr


def test_when_auto_deploys_logistic_regression_the_reports_say_so_and_label_the_deep_curves(tables, cli, tmp_path):
    out = tmp_path / "auto-lr"
    # one epoch of the deep model on a truly linear outcome: the logistic regression wins on validation
    proc = cli("train", "--data", tables[0], "--target", "disease", "--out", out, "--model", "auto",
               "--epochs", "1", "--ensemble", "1", "--no-progress", "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    card = json.loads((out / "model_card.json").read_text())
    assert card["model"]["family"] == "logistic" == card["model"]["selection"]["chosen"]
    assert card["training"]["of_model"].startswith("tabm (the deep candidate, not deployed")
    for html in ((out / "report.html").read_text(), _evaluate_report(cli, out, tables[1], tmp_path)):
        assert '<p id="deployed"><strong>Deployed model:</strong> Logistic regression, chosen by --model auto' in html
        assert "Training curves of a candidate that was not deployed" in html and 'id="history-note"' in html
        assert "these curves are the training of the deep model (tabm) it was compared with" in html
        assert "How did training go?" not in html


def _evaluate_report(cli, bundle, data, tmp_path) -> str:
    proc = cli("evaluate", bundle, "--data", data, "--n-boot", "100", "--report", tmp_path / "eval.html")
    assert proc.returncode == 0, proc.stderr
    return (tmp_path / "eval.html").read_text()


def test_a_malformed_missing_values_spec_is_refused_in_one_line(tables, cli, tmp_path):
    line = one_line_error(cli("train", "--data", tables[0], "--target", "disease", "--out", tmp_path / "x",
                              "--missing-values", "insulin", *FAST))
    assert "COLUMN=VALUE" in line and "'insulin'" in line
    line = one_line_error(cli("train", "--data", tables[0], "--target", "disease", "--out", tmp_path / "y",
                              "--missing-values", "glucose=0", *FAST))
    assert "'glucose'" in line
