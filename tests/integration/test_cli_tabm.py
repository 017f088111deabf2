"""Issue 17: ``medassist train --task diagnosis`` trains TabM by default (one network holding 16
weight-sharing members, its quantile bins saved with the weights), and ``predict`` / ``evaluate``
work from the saved bundle. Real subprocesses, few epochs."""

import json

import pandas as pd
import pytest

from medassist.assistants.diagnosis import DEFAULT_ENSEMBLE, DEFAULT_MODEL
from medassist.data.catalog import get_dataset
from medassist.pipeline import TabularSpec


@pytest.fixture(scope="module")
def tabm_bundle(tmp_path_factory, cli):
    out = tmp_path_factory.mktemp("models") / "heart"
    proc = cli("train", "--task", "diagnosis", "--data", "heart_disease", "--out", out, "--epochs", "3", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return out


def test_tabm_is_the_default_everywhere():
    assert DEFAULT_MODEL == "tabm" and TabularSpec(target="y").model == "tabm" and DEFAULT_ENSEMBLE["tabm"] == 1


def test_train_without_model_trains_one_tabm_with_its_bins_in_the_bundle(tabm_bundle):
    meta = json.loads((tabm_bundle / "bundle.json").read_text())
    assert meta["model"]["name"] == "tabm" and meta["model"]["params"]["k"] == 16
    card = json.loads((tabm_bundle / "model_card.json").read_text())
    assert card["model"]["family"] == "tabm" and card["model"]["ensemble_members"] == 1
    html = (tabm_bundle / "report.html").read_text()
    assert 'id="deployed"' in html and "Deep model (tabm)" in html and "not deployed" not in html


def test_predict_and_evaluate_from_the_saved_bundle(tabm_bundle, cli, tmp_path):
    frame = get_dataset("heart_disease").load()
    data = tmp_path / "heart.csv"
    frame.to_csv(data, index=False)
    proc = cli("predict", tabm_bundle, "--data", data, "--out", tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    preds = pd.read_csv(tmp_path / "p.csv")
    probs = preds[[c for c in preds.columns if c.startswith("prob_")]]
    assert len(preds) == len(frame) and probs.shape[1] == 2 and ((probs.sum(axis=1) - 1).abs() < 1e-3).all()
    assert preds["factor_1"].notna().all()
    proc = cli("evaluate", tabm_bundle, "--data", data, "--n-boot", "100", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    card = json.loads((tabm_bundle / "model_card.json").read_text())
    assert result["n_evaluated"] == card["data"]["n_test"]  # only the rows it never saw
    assert 0.5 < result["metrics"]["auc"]["value"] <= 1
