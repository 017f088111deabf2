"""Prognosis through the same contract as every task, in real subprocesses: train → evaluate →
predict a survival model on a messy CSV (ID column, text categories, missing values, a yes/no
event), and one clear line, with nothing at --out, for every kind of bad outcome column."""

import json

import numpy as np
import pandas as pd
import pytest

from medassist.testing import one_line_error

FAST = ["--epochs", "3", "--ensemble", "2", "--no-progress"]


@pytest.fixture(scope="module")
def survival_csvs(tmp_path_factory):
    """GBSG2 (scikit-survival) as a hospital might export it: split into a training and a new file."""
    from medassist.pipeline.survival import sksurv_case_frame

    df = sksurv_case_frame("gbsg2").reset_index(drop=True)
    rng = np.random.default_rng(0)
    df.insert(0, "pid", [f"P{i:04d}" for i in range(len(df))])
    df = df.rename(columns={"time": "days", "event": "relapse"})
    df["relapse"] = df["relapse"].map({1: "yes", 0: "no"})
    for c in ("pnodes", "progrec"):
        df.loc[rng.choice(len(df), 30, replace=False), c] = np.nan
    df.loc[rng.choice(len(df), 20, replace=False), "tgrade"] = None
    d = tmp_path_factory.mktemp("survival")
    df.iloc[:400].to_csv(d / "train.csv", index=False)
    df.iloc[400:].to_csv(d / "new.csv", index=False)
    return d / "train.csv", d / "new.csv"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, survival_csvs, cli):
    out = tmp_path_factory.mktemp("models") / "gbsg"
    # no --task: --time and --event on a table choose survival
    proc = cli("train", "--data", survival_csvs[0], "--time", "days", "--event", "relapse", "--id-column", "pid", "--out", out, *FAST)
    assert proc.returncode == 0, proc.stderr
    assert f"bundle: {out}" in proc.stdout
    assert "Harrell's C" in proc.stderr and "horizons: 365, 730, 1826 days" in proc.stderr
    return out


def test_train_records_the_survival_task_and_leaves_the_id_out_of_the_features(bundle):
    from medassist.assistants.prognosis import DEFAULT_LINEAR_PATH

    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["task"] == "survival"
    # what the benchmark measures (prognosis_spec) is what the CLI wrote
    assert meta["model"]["params"]["survival"]["params"].get("linear", False) is DEFAULT_LINEAR_PATH
    card = json.loads((bundle / "model_card.json").read_text())
    assert "pid" not in card["data"]["covariates"] and {"horTh", "tgrade", "pnodes"} <= set(card["data"]["covariates"])
    assert (bundle / "training_rows.json").is_file()


def test_evaluate_prints_concordance_auc_and_brier_with_intervals(bundle, survival_csvs, cli):
    proc = cli("evaluate", bundle, "--data", survival_csvs[1], "--n-boot", "30")
    assert proc.returncode == 0, proc.stderr
    assert "286 of 286 rows evaluated" in proc.stdout
    assert "Harrell's C 0." in proc.stdout and "Uno's C" in proc.stdout and "integrated Brier" in proc.stdout
    assert "at 365 days: AUC" in proc.stdout and "at 1826 days: AUC" in proc.stdout
    res = json.loads(cli("evaluate", bundle, "--data", survival_csvs[1], "--n-boot", "30", "--json").stdout)
    c = res["metrics"]["harrell_c"]
    assert 0.5 < c["value"] < 1 and c["ci_low"] <= c["value"] <= c["ci_high"]
    assert {"uno_c", "auc_365", "brier_730", "integrated_brier"} <= set(res["metrics"])


def test_evaluate_on_the_training_file_counts_only_unseen_rows(bundle, survival_csvs, cli):
    res = json.loads(cli("evaluate", bundle, "--data", survival_csvs[0], "--n-boot", "10", "--json").stdout)
    assert res["n_seen_in_training"] == 320 and res["n_evaluated"] == 80


def test_predict_writes_every_row_in_order_with_survival_intervals_and_imputation_counts(bundle, survival_csvs, cli, tmp_path):
    out = tmp_path / "p.csv"
    proc = cli("predict", bundle, "--data", survival_csvs[1], "--out", out)
    assert proc.returncode == 0, proc.stderr
    src = pd.read_csv(survival_csvs[1])
    p = pd.read_csv(out)
    assert list(p["pid"]) == list(src["pid"])
    for t in ("365", "730", "1826"):
        assert {f"surv_{t}", f"surv_{t}_low", f"surv_{t}_high"} <= set(p.columns)
        assert ((p[f"surv_{t}_low"] <= p[f"surv_{t}"] + 1e-9) & (p[f"surv_{t}"] <= p[f"surv_{t}_high"] + 1e-9)).all()
    assert (p["surv_365"] >= p["surv_1826"]).all()
    assert np.allclose(p["risk"], 1 - p["surv_1826"])
    assert "median_survival" in p.columns
    expected = src[["pnodes", "progrec", "tgrade"]].isna().sum(axis=1)
    assert (p["n_imputed"].to_numpy() == expected.to_numpy()).all() and p["n_imputed"].max() > 0


def test_predict_without_the_outcome_columns_works(bundle, survival_csvs, cli, tmp_path):
    rows = pd.read_csv(survival_csvs[1]).drop(columns=["days", "relapse"]).head(5)
    rows.to_csv(tmp_path / "in.csv", index=False)
    proc = cli("predict", bundle, "--data", tmp_path / "in.csv", "--out", tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(tmp_path / "p.csv")) == 5


def test_predict_flags_values_outside_training_and_names_the_top_factors(bundle, survival_csvs, cli, tmp_path):
    rows = pd.read_csv(survival_csvs[1]).head(4)
    rows.loc[0, "age"] = 140  # older than anyone in training
    rows.loc[1, "tgrade"] = "IV"  # a grade training never saw
    rows.to_csv(tmp_path / "in.csv", index=False)
    proc = cli("predict", bundle, "--data", tmp_path / "in.csv", "--out", tmp_path / "p.csv", "--top-k", "2")
    assert proc.returncode == 0, proc.stderr
    p = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert list(p["n_out_of_range"]) == [1, 0, 0, 0] and p.loc[0, "out_of_range"] == "age"
    assert p.loc[1, "n_unknown_categories"] == 1 and "tgrade" in p.loc[1, "unknown_categories"]
    covariates = {"horTh", "age", "menostat", "tsize", "tgrade", "pnodes", "progrec", "estrec"}
    assert set(p["factor_1"]) <= covariates and set(p["factor_2"]) <= covariates
    assert (p["factor_1"] != p["factor_2"]).all()
    w1, w2 = p["factor_1_weight"].astype(float).abs(), p["factor_2_weight"].astype(float).abs()
    assert (w1 >= w2).all() and (w1 > 0).all()
    quiet = cli("predict", bundle, "--data", tmp_path / "in.csv", "--out", tmp_path / "q.csv", "--no-explain")
    assert quiet.returncode == 0, quiet.stderr
    assert not any(c.startswith("factor_") for c in pd.read_csv(tmp_path / "q.csv").columns)


def _bad(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    df = df.copy()
    if kind == "negative time":
        df.loc[3, "days"] = -5
    elif kind == "missing time":
        df.loc[3, "days"] = np.nan
    elif kind == "non-numeric time":
        df["days"] = df["days"].astype(object)
        df.loc[3, "days"] = "about a year"
    elif kind == "event not 0/1":
        df.loc[3, "relapse"] = "maybe"
    elif kind == "no events":
        df["relapse"] = "no"
    return df


@pytest.mark.parametrize("kind, words", [
    ("negative time", "negative"),
    ("missing time", "outcome"),
    ("non-numeric time", "days"),
    ("event not 0/1", "must be 1 (event) or 0 (censored)"),
    ("no events", "no events"),
])
def test_a_bad_outcome_gives_one_line_and_no_bundle(kind, words, survival_csvs, cli, tmp_path):
    path = tmp_path / "bad.csv"
    _bad(pd.read_csv(survival_csvs[0]).head(120), kind).to_csv(path, index=False)
    line = one_line_error(cli("train", "--task", "survival", "--data", path, "--time", "days", "--event", "relapse",
                              "--id-column", "pid", "--out", tmp_path / "m", *FAST))
    assert words in line
    assert not (tmp_path / "m").exists()


def test_dp_epsilon_and_foreign_options_are_refused_by_name(survival_csvs, cli, tmp_path):
    line = one_line_error(cli("train", "--task", "survival", "--data", survival_csvs[0], "--time", "days", "--event", "relapse",
                              "--out", tmp_path / "m", "--dp-epsilon", "3"))
    assert line.startswith("error: --dp-epsilon is not supported for task 'survival': ") and "train without it" in line
    line = one_line_error(cli("train", "--task", "survival", "--data", survival_csvs[0], "--time", "days", "--event", "relapse",
                              "--out", tmp_path / "m", "--target", "days"))
    assert "train --task survival does not accept --target" in line
    line = one_line_error(cli("train", "--task", "survival", "--data", survival_csvs[0], "--time", "days", "--event", "relapse",
                              "--out", tmp_path / "m", "--horizon", "99999"))
    assert "beyond the longest follow-up" in line
    assert not (tmp_path / "m").exists()


def test_treatment_takes_one_horizon(cli, tmp_path):
    line = one_line_error(cli("train", "--task", "treatment", "--data", "actg175", "--horizon", "300", "--horizon", "600",
                              "--out", tmp_path / "m"))
    assert "takes one --horizon" in line


def test_a_size_the_survival_networks_lack_is_refused_in_one_line(survival_csvs, cli, tmp_path):
    line = one_line_error(cli("train", "--task", "survival", "--data", survival_csvs[0], "--time", "days", "--event", "relapse",
                              "--out", tmp_path / "m", "--size", "base", *FAST))
    assert line == "error: Model size 'base' is not available for task 'survival'; it accepts: small, large."
    assert not (tmp_path / "m").exists()
