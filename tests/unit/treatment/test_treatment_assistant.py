"""The treatment assistant's advice: intervals, recommendation, flags, modifiers, bundle round trip."""

import numpy as np
import pytest

from medassist.assistants.treatment import FLAG_FEW_SIMILAR, FLAG_NO_DIFFERENCE, FLAG_OUTSIDE, TreatmentAssistant
from medassist.data.datasets.trials import synthetic_trial
from medassist.data.sources import DataSource
from medassist.exceptions import SchemaError
from medassist.pipeline.treatment import TreatmentSpec, train_treatment
from medassist.training import TrainConfig


@pytest.fixture(scope="module")
def trial():
    df, tau = synthetic_trial(n=800, n_arms=2, kind="continuous", noise=0.5, seed=7)
    return df, tau


@pytest.fixture(scope="module")
def assistant(trial, tmp_path_factory):
    df, _ = trial
    spec = TreatmentSpec(treatment="arm", outcome="outcome", assignment="randomised", n_members=3, n_boot=50,
                         train=TrainConfig(epochs=50, patience=8, lr=1e-3, weight_decay=1e-4),
                         effect_train=TrainConfig(epochs=20, patience=5, lr=3e-4, weight_decay=1e-2))
    out = tmp_path_factory.mktemp("models") / "syn"
    train_treatment(df, spec=spec, source=DataSource(name="synthetic.csv"), out_dir=out, progress=False)
    return TreatmentAssistant.load(out)


def _patients(trial, rows):
    df, _ = trial
    return df.iloc[rows].drop(columns=["outcome"]).reset_index(drop=True)


def test_advice_has_every_arm_with_intervals_and_a_consistent_benefit(assistant, trial):
    advice = assistant.advise(_patients(trial, range(60)), source="patients.csv")
    assert len(advice) == 60
    for a in ("arm0", "arm1"):
        assert (advice[f"lo_{a}"] <= advice[f"pred_{a}"]).all() and (advice[f"pred_{a}"] <= advice[f"hi_{a}"]).all()
    assert set(advice["recommended"]) <= {"arm0", "arm1"} and (advice["reference"] == "arm0").all()
    diff = advice["pred_arm1"] - advice["pred_arm0"]
    assert np.allclose(diff, advice["diff_arm1"], atol=1e-3)
    picked1 = advice["recommended"] == "arm1"
    assert np.allclose(advice.loc[picked1, "benefit"], advice.loc[picked1, "diff_arm1"], atol=1e-3)
    assert (advice.loc[~picked1, "benefit"] == 0).all()
    assert (advice["benefit_lo"] <= advice["benefit"] + 1e-6).all() and (advice["benefit"] <= advice["benefit_hi"] + 1e-6).all()


def test_recommendation_follows_the_known_effect_and_flags_a_null_difference(assistant, trial):
    df, tau = trial
    patients = _patients(trial, range(800))
    advice = assistant.advise(patients, source="patients.csv", explain=False)
    marker = patients["marker"].to_numpy()
    strong = marker > 1.0  # true effect of arm1 > 1.5, noise sd 0.5: clearly better
    assert (advice.loc[strong, "recommended"] == "arm1").mean() > 0.9
    assert advice.loc[strong, "flags"].str.contains(FLAG_NO_DIFFERENCE).mean() < 0.1
    null = np.abs(marker + 0.5) < 0.1  # true effect about 0
    # with 3 members and a short schedule the 95% intervals cover a null effect ~75% of the time
    assert advice.loc[null, "flags"].str.contains(FLAG_NO_DIFFERENCE).mean() > 0.65


def test_effect_modifier_is_the_covariate_that_drives_the_effect(assistant, trial):
    patients = _patients(trial, range(120))
    advice = assistant.advise(patients, source="patients.csv")
    far = np.abs(patients["marker"].to_numpy() + 0.5) > 1.0
    assert (advice.loc[far, "modifier_1"] == "marker").mean() > 0.7
    assert {"effect_explained", "modifier_1_weight", "modifier_3"} <= set(advice.columns)


def test_patients_outside_the_trial_and_sparse_arms_are_flagged(assistant, trial):
    patients = _patients(trial, range(3))
    patients.loc[0, "age"] = 130
    patients.loc[1, "site"] = "Z"
    advice = assistant.advise(patients, source="patients.csv", explain=False)
    assert FLAG_OUTSIDE in advice.loc[0, "flags"] and "age 130 outside the trial's range" in advice.loc[0, "flags"]
    assert FLAG_OUTSIDE in advice.loc[1, "flags"] and "never seen" in advice.loc[1, "flags"]
    assert FLAG_OUTSIDE not in advice.loc[2, "flags"]
    many = assistant.advise(patients, source="patients.csv", explain=False, min_similar=10_000)
    assert many["flags"].str.contains(f"{FLAG_FEW_SIMILAR} arm1").all()
    assert (advice["similar_arm0"] >= 5).all()


def test_unknown_and_missing_columns_are_refused(assistant, trial):
    patients = _patients(trial, range(3))
    with pytest.raises(SchemaError, match="'markr' are unknown to this model"):
        assistant.advise(patients.rename(columns={"marker": "markr"}), source="patients.csv")
    with pytest.raises(SchemaError, match="covariate\\(s\\) 'age' are missing"):
        assistant.advise(patients.drop(columns=["age"]), source="patients.csv")


def test_bundle_stores_no_training_rows_and_evaluates_on_labelled_data(assistant, trial):
    df, _ = trial
    support = assistant.bundle.calibration["support"]
    x = assistant.model.features(df, source="t")
    centroids = np.asarray(support["centroids"])
    nearest_row = np.sqrt(((centroids[:, None, :] - x[None]) ** 2).sum(-1)).min(1)
    assert (nearest_row > 1e-3).all()  # centroids are averages, not patients
    assert min(sum(c) for c in support["arm_counts"]) >= support["min_cluster"]
    result = assistant.evaluate(df.iloc[:300], source="labelled.csv", n_boot=30)
    assert result["n"] == 300 and "arm1 vs arm0" in result["effects"]
    pv = result["policy_value"]
    assert pv["model"]["dr"]["ci_low"] <= pv["model"]["dr"]["value"] <= pv["model"]["dr"]["ci_high"]
    assert assistant.model_card["task"] == "treatment_effect"
