"""The bundled trials load from the installed packages' files with their declared design."""

import pytest

from medassist.data.catalog import get_dataset, list_datasets

TRIALS = ["actg175", "actg175_survival", "colon", "gbsg2", "nhefs"]


@pytest.mark.parametrize("name", TRIALS)
def test_bundled_trial_matches_its_declared_design(name):
    info = get_dataset(name)
    df = info.load()
    ex = info.extras
    assert info.assistant == "treatment" and len(df) == info.n_rows
    arms = sorted(df[ex["treatment"]].map(lambda v: str(int(v)) if isinstance(v, float) else str(v)).unique())
    assert sorted(ex["arms"]) == arms and ex["reference"] in ex["arms"]
    assert all(c in df.columns for c in ex["exclude"])
    assert ex["assignment"] in ("randomised", "observational")
    if ex["assignment"] == "randomised":
        assert abs(sum(ex["arm_probabilities"].values()) - 1) < 1e-9
    if ex["outcome_kind"] == "survival":
        assert {ex["time"], ex["event"]} <= set(df.columns) and set(df[ex["event"]].unique()) <= {0, 1}
        assert ex["horizon"] > 0
    else:
        assert info.target in df.columns and info.target not in ex["exclude"]
    assert info.licence and info.source and info.citation


def test_actg175_never_uses_post_randomisation_measurements_as_covariates():
    ex = get_dataset("actg175").extras
    assert {"cd496", "cd820", "offtrt", "days", "cens", "treat", "r"} <= set(ex["exclude"])
    surv = get_dataset("actg175_survival").extras
    assert "cd420" in surv["exclude"] and "days" not in surv["exclude"]


def test_colon_keeps_one_death_record_per_patient():
    df = get_dataset("colon").load()
    assert df["id"].is_unique and set(df["etype"]) == {2}


def test_treatment_sets_are_listed_for_their_assistant():
    assert {d.name for d in list_datasets("treatment")} >= set(TRIALS)
