"""The treatment CLI end to end, in real subprocesses: train on a survival-trial export nobody
prepared for medassist and on a bundled trial, advise, evaluate, and one clear line per bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from medassist.data.datasets.trials import synthetic_trial
from medassist.testing import one_line_error

FAST = ["--epochs", "20", "--ensemble", "3", "--no-progress"]




@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A trial export: text arm names, an MRN, missing values written three ways, a comment column."""
    df, _ = synthetic_trial(n=500, n_arms=2, kind="survival", seed=11)
    rng = np.random.default_rng(0)
    df.insert(0, "mrn", [f"MRN{100000 + i}" for i in range(len(df))])
    df["therapy"] = df.pop("arm").map({"arm0": "Placebo", "arm1": "Drug A"})
    df["followup_days"] = (df.pop("time") * 365).round(0)
    df["died"] = df.pop("status").map({1: "yes", 0: "no"})
    df["comment"] = rng.choice(["", "seen by GP", "n/a"], len(df))
    df["age"] = df["age"].astype(object)
    df.loc[rng.choice(len(df), 25, replace=False), "age"] = "NA"
    df["marker"] = df["marker"].astype(object)
    df.loc[rng.choice(len(df), 20, replace=False), "marker"] = "?"
    path = tmp_path_factory.mktemp("data") / "trial_export.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def bundle(export, tmp_path_factory, cli):
    out = tmp_path_factory.mktemp("models") / "trial"
    proc = cli("train", "--data", export, "--task", "treatment", "--treatment", "therapy", "--time", "followup_days",
               "--event", "died", "--id-column", "mrn", "--reference", "Placebo", "--assignment", "randomised",
               "--horizon", "730", "--out", out, *FAST)
    assert proc.returncode == 0, proc.stderr
    assert f"bundle: {out}" in proc.stdout and "policy gain" in proc.stderr
    return out


def test_train_writes_a_treatment_bundle_with_card_and_overlap(bundle):
    names = {p.name for p in bundle.iterdir()}
    assert {"bundle.json", "model.safetensors", "featurizer.json", "model_card.md", "metrics.json", "overlap.json"} <= names
    assert json.loads((bundle / "bundle.json").read_text())["task"] == "treatment"
    card = json.loads((bundle / "model_card.json").read_text())
    assert card["data"]["reference"] == "Placebo" and card["data"]["outcome_kind"] == "survival"
    assert "mrn" not in card["data"]["covariates"] and "followup_days" not in card["data"]["covariates"]
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert "c_index" in metrics["test"]["outcome_fit"] and "Drug A vs Placebo" in metrics["test"]["effects"]


def test_advise_writes_every_patient_in_order_with_intervals_flags_and_modifiers(bundle, export, cli, tmp_path):
    patients = pd.read_csv(export, keep_default_na=False).drop(columns=["followup_days", "died"]).head(40)
    pfile = tmp_path / "patients.csv"
    patients.to_csv(pfile, index=False)
    out = tmp_path / "advice.csv"
    proc = cli("advise", bundle, "--data", pfile, "--out", out)
    assert proc.returncode == 0, proc.stderr
    advice = pd.read_csv(out, keep_default_na=False)
    assert advice["mrn"].tolist() == patients["mrn"].tolist()
    for arm in ("Placebo", "Drug A"):
        assert {f"pred_{arm}", f"lo_{arm}", f"hi_{arm}", f"risk_{arm}"} <= set(advice.columns)
        assert (advice[f"pred_{arm}"] <= 730 + 1e-6).all()  # RMST up to the horizon
    assert {"recommended", "benefit", "benefit_lo", "benefit_hi", "flags", "modifier_1"} <= set(advice.columns)
    assert set(advice["recommended"]) <= {"Placebo", "Drug A"}
    p_best = advice[["p_best_Placebo", "p_best_Drug A"]].to_numpy(dtype=float)
    assert np.allclose(p_best.sum(axis=1), 1.0, atol=1e-2)
    assert {"ranking", "p_better_than_reference", "p_better_than_runner_up", "confidence_flag"} <= set(advice.columns)
    safe = tmp_path / "safe.csv"
    proc = cli("advise", bundle, "--data", pfile, "--out", safe, "--min-confidence", "0.9", "--no-explain")
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(safe, keep_default_na=False)["ranking"].tolist() == advice["ranking"].tolist()
    assert (advice["n_imputed"] > 0).any()  # 'NA' and '?' were imputed and counted, never overwritten


def test_predict_and_evaluate_use_the_same_bundle(bundle, export, cli, tmp_path):
    out = tmp_path / "pred.csv"
    assert cli("predict", bundle, "--data", export, "--out", out, "--no-explain").returncode == 0
    assert len(pd.read_csv(out)) == 500
    proc = cli("evaluate", bundle, "--data", export, "--n-boot", "30", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["n"] == 500 and {"model", "all Placebo", "all Drug A"} <= set(result["policy_value"])


def test_bundled_trial_trains_with_its_declared_design(cli, tmp_path):
    out = tmp_path / "actg"
    proc = cli("train", "--data", "actg175", "--out", out, "--epochs", "4", "--ensemble", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    card = json.loads((out / "model_card.json").read_text())
    assert card["data"]["assignment"] == "randomised" and card["data"]["reference"] == "0"
    assert not {"cd420", "cd496", "cd820", "offtrt", "days", "cens"} & set(card["data"]["covariates"])


def _bad(export, tmp_path, mutate):
    df = mutate(pd.read_csv(export, keep_default_na=False))
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d.assign(therapy="Drug A"), "has one arm ('Drug A')"),
    (lambda d: d.assign(therapy=np.where(np.arange(len(d)) < 6, "Drug B", d["therapy"])), "'Drug B' (6)"),
    (lambda d: d.assign(followup_days=np.where(d["therapy"] == "Drug A", "", d["followup_days"].astype(str))),
     "missing in arm 'Drug A'"),
])
def test_unusable_trials_get_one_clear_line(export, tmp_path, cli, mutate, expected):
    proc = cli("train", "--data", _bad(export, tmp_path, mutate), "--task", "treatment", "--treatment", "therapy",
               "--time", "followup_days", "--event", "died", "--out", tmp_path / "m", *FAST)
    line = one_line_error(proc)
    assert expected in line and "bad.csv" in line
    assert not (tmp_path / "m").exists()


def test_patient_rows_with_unknown_columns_are_refused(bundle, export, tmp_path, cli):
    path = _bad(export, tmp_path, lambda d: d.head(3).rename(columns={"marker": "biomarker"}))
    line = one_line_error(cli("advise", bundle, "--data", path, "--out", tmp_path / "a.csv"))
    assert "'biomarker' are unknown to this model" in line
    assert not (tmp_path / "a.csv").exists()


def test_a_size_the_treatment_networks_lack_is_refused_in_one_line(export, tmp_path, cli):
    proc = cli("train", "--data", export, "--task", "treatment", "--treatment", "therapy", "--time", "followup_days",
               "--event", "died", "--out", tmp_path / "m", "--size", "base", *FAST)
    assert one_line_error(proc) == "error: Model size 'base' is not available for task 'treatment'; it accepts: small, large."
    assert not (tmp_path / "m").exists()
