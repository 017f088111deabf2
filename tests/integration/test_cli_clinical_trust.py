"""Issue 13 ("clinical trust"), end to end in real subprocesses on MASS ``birthwt`` (189 births):
a leaking column stops training; evaluate on the training file counts and leaves out the rows
the model saw; coded categories are categories and novel values are flagged; poor calibration
is said with every answer; evaluate prints a summary (JSON on request)."""

import json
import shutil

import pandas as pd
import pytest

from medassist.data.catalog import rdata_csv
from medassist.testing import one_line_error

FAST = ["--model", "mlp", "--size", "small", "--epochs", "8", "--ensemble", "1", "--no-progress"]


@pytest.fixture(scope="module")
def birthwt(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "birthwt.csv"
    rdata_csv("MASS", "birthwt").to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, birthwt, cli):
    out = tmp_path_factory.mktemp("models") / "bw"
    proc = cli("train", "--data", birthwt, "--target", "low", "--exclude", "bwt", "--out", out, *FAST)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_a_leaking_column_stops_training_with_one_line_naming_it_and_the_fix(birthwt, cli, tmp_path):
    out = tmp_path / "bw"
    line = one_line_error(cli("train", "--data", birthwt, "--target", "low", "--out", out, *FAST))
    assert "'bwt'" in line and "AUC 1.000" in line
    assert "--exclude bwt" in line and "--allow-leaky-column bwt" in line
    assert not out.exists()


def test_a_leaking_column_kept_knowingly_is_recorded_in_card_and_bundle(birthwt, cli, tmp_path):
    out = tmp_path / "bw_leaky"
    proc = cli("train", "--data", birthwt, "--target", "low", "--allow-leaky-column", "bwt", "--numeric", "ftv",
               "--out", out, *FAST[:-3], "--epochs", "2", "--ensemble", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    card = json.loads((out / "model_card.json").read_text())
    assert card["data"]["allowed_leaky_columns"] == ["bwt"]
    assert any("bwt" in lim and "--allow-leaky-column" in lim for lim in card["limitations"])
    assert json.loads((out / "bundle.json").read_text())["allowed_leaky_columns"] == ["bwt"]
    fz = json.loads((out / "featurizer.json").read_text())["state"]
    assert "ftv" in fz["numeric_"] and "race" in fz["categorical_"]  # --numeric overrides the inference


def test_coded_integer_columns_become_categories_with_a_notice(trained):
    out, proc = trained
    assert "'race'" in proc.stderr and "--numeric" in proc.stderr
    fz = json.loads((out / "featurizer.json").read_text())["state"]
    assert "race" in fz["categorical_"] and fz["categories_"]["race"] == ["1", "2", "3"]
    assert fz["range_"]["lwt"][1] >= 200  # training ranges are stored as JSON state
    rows = json.loads((out / "training_rows.json").read_text())
    assert rows["columns"][-1] == "low" and all(len(h) == 16 for h in rows["rows"])
    assert "2523" not in (out / "training_rows.json").read_text()  # hashes, never values


def test_evaluate_on_the_training_file_leaves_out_seen_rows_and_says_so(trained, birthwt, cli, tmp_path):
    out, _ = trained
    card = json.loads((out / "model_card.json").read_text())
    proc = cli("evaluate", out, "--data", birthwt, "--n-boot", "100", "--report", tmp_path / "r.html", "--out", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["n_rows"] == 189
    assert result["n_seen_in_training"] == card["data"]["n_train"] + card["data"]["n_val"]
    assert result["n_evaluated"] == result["n"] == 189 - result["n_seen_in_training"] == card["data"]["n_test"]
    # a readable summary on the terminal, not JSON
    assert f"{result['n_evaluated']} of 189 rows evaluated" in proc.stdout
    assert f"{result['n_seen_in_training']} rows seen in training were excluded" in proc.stdout
    assert "AUC" in proc.stdout and not proc.stdout.lstrip().startswith("{")
    html = (tmp_path / "r.html").read_text()
    assert f"{result['n_seen_in_training']} of the 189 rows were seen in training and excluded" in html
    assert "189 patients in the test set" not in html


def test_include_training_rows_evaluates_all_and_labels_them(trained, birthwt, cli):
    out, _ = trained
    proc = cli("evaluate", out, "--data", birthwt, "--n-boot", "50", "--include-training-rows", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["n_evaluated"] == result["n"] == 189 and result["n_seen_in_training"] > 0
    assert any("seen in training" in w and "optimistic" in w for w in result["warnings"])


def test_evaluate_on_training_rows_only_is_refused_in_one_line(trained, birthwt, cli, tmp_path):
    out, _ = trained
    splits = json.loads((out / "splits.json").read_text())
    seen = pd.read_csv(birthwt).iloc[sorted(splits["train"] + splits["val"])]
    path = tmp_path / "seen.csv"
    seen.to_csv(path, index=False)
    line = one_line_error(cli("evaluate", out, "--data", path, "--n-boot", "50"))
    assert f"all {len(seen)} rows were seen in training" in line and "--include-training-rows" in line


def test_predict_flags_unknown_categories_and_values_outside_the_training_range(trained, birthwt, cli, tmp_path):
    out, _ = trained
    rows = pd.read_csv(birthwt).head(4)
    rows.loc[0, "race"], rows.loc[1, "ftv"], rows.loc[2, "lwt"] = 4, 9, 400
    src, dst = tmp_path / "new.csv", tmp_path / "preds.csv"
    rows.to_csv(src, index=False)
    proc = cli("predict", out, "--data", src, "--out", dst, "--no-explain")
    assert proc.returncode == 0, proc.stderr
    preds = pd.read_csv(dst, keep_default_na=False)
    assert preds.loc[0, "unknown_categories"] == "race=4" and preds.loc[0, "n_unknown_categories"] == 1
    assert "ftv" in preds.loc[1, "out_of_range"].split("; ")  # 9 visits: training max is 6
    assert preds.loc[2, "out_of_range"] == "lwt" and preds.loc[2, "n_out_of_range"] == 1
    assert preds.loc[3, "n_unknown_categories"] == 0 and preds.loc[3, "n_out_of_range"] == 0
    assert "category never seen in training" in proc.stderr and "outside the training range" in proc.stderr


def test_every_answer_of_a_poorly_calibrated_model_says_so(trained, birthwt, cli, tmp_path):
    out, _ = trained
    poor = tmp_path / "poor"
    shutil.copytree(out, poor)
    metrics = json.loads((poor / "metrics.json").read_text())
    metrics["test"]["metrics"]["ece"]["value"] = 0.349
    (poor / "metrics.json").write_text(json.dumps(metrics))
    proc = cli("predict", poor, "--data", birthwt, "--out", tmp_path / "p.csv", "--no-explain")
    assert proc.returncode == 0, proc.stderr
    want = "model calibration is poor on its test set (ECE 0.349): treat probabilities as rankings"
    assert want in " ".join(proc.stderr.split())
    preds = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert (preds["warnings"] == want).all() and len(preds) == 189


def test_a_redcap_data_dictionary_declares_column_types_and_labels(birthwt, cli, tmp_path):
    """A hospital's REDCap dictionary (``--dictionary``) decides how a column is encoded: ``ftv``
    declared as a count stays a number (though it holds few integer values), and the card names
    the inputs in clinical words. REDCap's first field is the record ID."""
    dictionary = tmp_path / "birthwt_dictionary.csv"
    pd.DataFrame([
        {"Variable / Field Name": "record_id", "Form Name": "pregnancy", "Field Type": "text",
         "Field Label": "Record ID", "Choices, Calculations, OR Slider Labels": "", "Field Note": "",
         "Text Validation Type OR Show Slider Number": "", "Text Validation Min": "", "Text Validation Max": ""},
        {"Variable / Field Name": "ftv", "Form Name": "pregnancy", "Field Type": "text",
         "Field Label": "Physician visits in the first trimester", "Choices, Calculations, OR Slider Labels": "",
         "Field Note": "visits", "Text Validation Type OR Show Slider Number": "integer",
         "Text Validation Min": "0", "Text Validation Max": "10"},
        {"Variable / Field Name": "ht", "Form Name": "pregnancy", "Field Type": "radio",
         "Field Label": "History of hypertension", "Choices, Calculations, OR Slider Labels": "0, No | 1, Yes",
         "Field Note": "", "Text Validation Type OR Show Slider Number": "",
         "Text Validation Min": "", "Text Validation Max": ""},
    ]).to_csv(dictionary, index=False)
    out = tmp_path / "bw_dict"
    proc = cli("train", "--data", birthwt, "--target", "low", "--exclude", "bwt", "--dictionary", dictionary,
               "--out", out, "--model", "mlp", "--size", "small", "--epochs", "2", "--ensemble", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    fz = json.loads((out / "featurizer.json").read_text())["state"]
    assert "ftv" in fz["numeric_"]          # declared a quantity: not one-hot, though it has few values
    assert "ht" in fz["numeric_"]           # a two-code radio field: 0/1 as a number
    assert "race" in fz["categorical_"]     # not in the dictionary: inferred as before
    assert "Physician visits in the first trimester" in (out / "model_card.json").read_text()
