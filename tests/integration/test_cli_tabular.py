"""The CLI contract, end to end, in real subprocesses: train → evaluate → predict on a CSV that
nobody prepared for medassist, and one clear line for every kind of bad input."""

import json

import pandas as pd
import pytest

from medassist.testing import one_line_error

FAST = ["--model", "mlp", "--size", "small", "--epochs", "12", "--no-progress"]




@pytest.fixture(scope="module")
def bundle(tmp_path_factory, messy_csv, cli):
    out = tmp_path_factory.mktemp("models") / "hospital"
    proc = cli("train", "--data", messy_csv, "--target", "outcome", "--id-column", "mrn", "--out", out, *FAST)
    assert proc.returncode == 0, proc.stderr
    assert f"bundle: {out}" in proc.stdout
    return out


def test_train_writes_a_complete_bundle_with_report_and_card(bundle):
    names = {p.name for p in bundle.iterdir()}
    assert {"bundle.json", "model.safetensors", "featurizer.json", "report.html", "model_card.md", "metrics.json", "quality.json"} <= names
    card = json.loads((bundle / "model_card.json").read_text())
    assert card["positive_class"] == "disease" and card["data"]["id_column"] == "mrn"
    assert "mrn" not in card["data"]["features"]
    assert "comment" in card["data"]["features"] or any("comment" in n for n in card["limitations"])
    html = (bundle / "report.html").read_text()
    assert "not a medical device" in html.lower() and "data:image/png;base64," in html
    splits = json.loads((bundle / "splits.json").read_text())
    assert set(splits) == {"train", "val", "test"}


def test_grouped_split_keeps_repeat_visits_of_a_patient_together(bundle, messy_csv):
    df = pd.read_csv(messy_csv, keep_default_na=False)
    splits = json.loads((bundle / "splits.json").read_text())
    sets = {k: set(df["mrn"].iloc[v]) for k, v in splits.items()}
    assert not (sets["train"] & sets["test"]) and not (sets["train"] & sets["val"])


def test_evaluate_prints_metrics_json_with_intervals(bundle, messy_csv, cli, tmp_path):
    proc = cli("evaluate", bundle, "--data", messy_csv, "--report", tmp_path / "eval.html", "--n-boot", "200", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    auc = result["metrics"]["auc"]
    assert auc["ci_low"] <= auc["value"] <= auc["ci_high"]
    assert set(result["metrics"]) >= {"auc", "accuracy", "sensitivity", "specificity", "f1", "brier", "ece"}
    assert (tmp_path / "eval.html").exists()


def test_predict_keeps_every_row_in_order_with_probabilities_and_factors(bundle, messy_csv, cli, tmp_path):
    out = tmp_path / "preds.csv"
    proc = cli("predict", bundle, "--data", messy_csv, "--out", out)
    assert proc.returncode == 0, proc.stderr
    src = pd.read_csv(messy_csv, keep_default_na=False)
    preds = pd.read_csv(out, keep_default_na=False)
    assert len(preds) == len(src) and preds["mrn"].tolist() == src["mrn"].tolist()
    assert {"prediction", "prob_disease", "prob_healthy", "factor_1", "factor_1_weight", "n_imputed"} <= set(preds.columns)
    assert ((preds["prob_disease"] + preds["prob_healthy"]).sub(1).abs() < 1e-4).all()
    assert (preds["member_sd"] >= 0).all() and preds["member_sd"].max() > 0  # mlp: a 5-member cross-fitted ensemble by default
    assert set(preds["prediction"]) <= {"disease", "healthy"}
    assert (preds["n_imputed"] > 0).sum() > 0  # the export has missing values and we say so per row
    cm = json.loads((bundle / "model_card.json").read_text())
    assert set(preds["factor_1"]) <= set(cm["data"]["features"])


def test_python_dash_m_and_version(cli):
    proc = cli("version")
    assert proc.returncode == 0 and proc.stdout.strip() == "0.1.0"


# ---- bad input: non-zero exit, one clear line, no traceback, nothing half-written ------------

def test_missing_file(cli, tmp_path):
    line = one_line_error(cli("train", "--data", tmp_path / "nope.csv", "--target", "y", "--out", tmp_path / "m", *FAST))
    assert "nope.csv" in line
    assert not (tmp_path / "m").exists()


def test_unknown_target_column(cli, messy_csv, tmp_path):
    line = one_line_error(cli("train", "--data", messy_csv, "--target", "outcom", "--out", tmp_path / "m", *FAST))
    assert "'outcom'" in line and "outcome" in line
    assert list(tmp_path.iterdir()) == []


def test_target_with_one_class(cli, tmp_path):
    p = tmp_path / "one.csv"
    pd.DataFrame({"a": range(30), "y": ["sick"] * 30}).to_csv(p, index=False)
    line = one_line_error(cli("train", "--data", p, "--target", "y", "--out", tmp_path / "m", *FAST))
    assert "one class" in line and "'sick'" in line
    assert not (tmp_path / "m").exists()


def test_junk_in_numeric_column_names_column_and_row(cli, tmp_path):
    p = tmp_path / "junk.csv"
    df = pd.DataFrame({"age": [str(40 + i) for i in range(40)], "y": ["a", "b"] * 20})
    df.loc[6, "age"] = "forty"
    df.to_csv(p, index=False)
    line = one_line_error(cli("train", "--data", p, "--target", "y", "--out", tmp_path / "m", *FAST))
    assert "'age'" in line and "row 7" in line and "'forty'" in line
    assert not (tmp_path / "m").exists() and not any(x.name.startswith(".m.tmp") for x in tmp_path.iterdir())


def test_empty_file(cli, tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("")
    line = one_line_error(cli("train", "--data", p, "--target", "y", "--out", tmp_path / "m", *FAST))
    assert "empty.csv" in line and "empty" in line


def test_predict_with_different_columns_writes_nothing(cli, bundle, tmp_path):
    p = tmp_path / "other.csv"
    pd.DataFrame({"age": [50], "sex": ["F"]}).to_csv(p, index=False)
    out = tmp_path / "preds.csv"
    line = one_line_error(cli("predict", bundle, "--data", p, "--out", out))
    assert "glucose" in line
    assert not out.exists() and list(tmp_path.iterdir()) == [p]


def test_existing_out_is_not_overwritten(cli, bundle, messy_csv):
    before = (bundle / "model.safetensors").read_bytes()
    line = one_line_error(cli("train", "--data", messy_csv, "--target", "outcome", "--out", bundle, *FAST))
    assert "already exists" in line and "--overwrite" in line
    assert (bundle / "model.safetensors").read_bytes() == before


def test_unknown_model_name_suggests(cli, messy_csv, tmp_path):
    line = one_line_error(cli("train", "--data", messy_csv, "--target", "outcome", "--out", tmp_path / "m", "--model", "mpl"))
    assert "did you mean 'mlp'" in line


def test_debug_shows_traceback(cli, tmp_path):
    proc = cli("--debug", "train", "--data", tmp_path / "nope.csv", "--target", "y", "--out", tmp_path / "m")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_data_list_and_check(cli, messy_csv):
    proc = cli("data", "list", "--json")
    assert proc.returncode == 0
    names = {d["name"] for d in json.loads(proc.stdout)}
    assert {"wdbc", "pima", "biopsy", "heart_disease"} <= names
    proc = cli("data", "check", messy_csv, "--target", "outcome", "--json")
    report = json.loads(proc.stdout)
    codes = {f["code"] for f in report["findings"]}
    assert "id_like_column" in codes or "duplicate_ids" in codes
    assert "missing_values" in codes
    proc = cli("data", "check", messy_csv, "--target", "outcome")
    assert "glucose" in proc.stdout


def test_bundled_dataset_needs_no_target_and_demo_runs(cli, tmp_path):
    proc = cli("demo", "--out", tmp_path / "demo", "--epochs", "3", "--model", "mlp:small", "--dataset", "pima")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "demo" / "pima-mlp" / "report.html").exists()
    assert "pima" in proc.stdout and "AUC" in proc.stdout


def test_differentially_private_training_spends_and_guards_the_budget(cli, messy_csv, tmp_path):
    env = {"MEDASSIST_HOME": str(tmp_path / "home"), "MEDASSIST_PRIVACY_BUDGET_EPSILON": "4"}
    args = ["train", "--data", messy_csv, "--target", "outcome", "--id-column", "mrn", "--epochs", "3", "--no-progress",
            "--dp-epsilon", "3"]
    proc = cli(*args, "--out", tmp_path / "dp1", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "differential privacy: spent ε = 3" in proc.stderr
    card = json.loads((tmp_path / "dp1" / "model_card.json").read_text())
    assert 0 < card["privacy"]["epsilon"] <= 3.001 and card["model"]["ensemble_members"] == 1
    # the default model (TabM) trains under DP-SGD, its bins kept data-independent
    assert card["model"]["family"] == "tabm" and any("standard-normal quantiles" in x for x in card["limitations"])
    line = one_line_error(cli(*args, "--out", tmp_path / "dp2", env=env))
    assert "Privacy budget exceeded" in line and "of ε = 4 already spent" in line
    assert not (tmp_path / "dp2").exists()
