"""The treatment pipeline recovers known effects and refuses data it cannot use."""

import numpy as np
import pandas as pd
import pytest

from medassist.data.datasets.trials import synthetic_trial
from medassist.evaluation.treatment_policy import summarise, t_multiplier
from medassist.exceptions import ConfigError, DataError
from medassist.pipeline.treatment import TreatmentSpec, fit_treatment, prepare_treatment
from medassist.training import TrainConfig

#: Short schedules keep the suite fast; the defaults (patience 30, lr 5e-4) are for real runs.
FAST = TrainConfig(epochs=50, patience=8, lr=1e-3, weight_decay=1e-4)
FAST_EFFECT = TrainConfig(epochs=20, patience=5, lr=3e-4, weight_decay=1e-2)


def _spec(**kw):
    base = dict(n_members=3, train=FAST, effect_train=FAST_EFFECT, n_boot=50)
    return TreatmentSpec(**{**base, **kw})


@pytest.fixture(scope="module")
def continuous_fit():
    df, tau = synthetic_trial(n=900, n_arms=3, kind="continuous", noise=0.5, seed=1)
    prep = prepare_treatment(df, spec=_spec(treatment="arm", outcome="outcome", assignment="randomised"), source="syn")
    pool, test = np.arange(700), np.arange(700, 900)
    fitted = fit_treatment(prep, pool=pool, spec=_spec(treatment="arm", outcome="outcome", assignment="randomised"))
    return prep, fitted, tau, test


def test_effects_are_recovered_on_a_trial_with_known_heterogeneous_effects(continuous_fit):
    prep, fitted, tau, test = continuous_fit
    assert prep.arms == ["arm0", "arm1", "arm2"] and prep.ref == 0 and prep.kind == "continuous"
    x = fitted.model.features(prep.data, source="test")
    d = fitted.model.draws(x[test])
    est = d["pred"].mean(0)[:, 1:] - d["pred"].mean(0)[:, [0]]
    truth = tau[test][:, 1:]
    pehe = np.sqrt(np.mean((est - truth) ** 2))
    pehe_of_the_ate = np.sqrt(np.mean((truth.mean(0) - truth) ** 2))  # knowing only the average effect
    assert pehe < 0.5 * pehe_of_the_ate
    assert np.all(np.abs(est.mean(0) - truth.mean(0)) < 0.25)
    corr = np.corrcoef(est[:, 1], truth[:, 1])[0, 1]
    assert corr > 0.9
    lo, hi = summarise(d["pred"][:, :, 1:] - d["pred"][:, :, [0]], t_multiplier(3))[1:]
    assert np.all(lo <= hi) and 0.5 < np.mean((lo <= truth) & (truth <= hi))


def test_dr_stage_leaves_out_of_fold_pseudo_outcomes_for_every_training_row(continuous_fit):
    prep, fitted, tau, test = continuous_fit
    pool = fitted.pool
    assert np.isfinite(fitted.oof["pseudo"][pool]).all() and np.isnan(fitted.oof["pseudo"][test]).all()
    assert abs(fitted.oof["pseudo"][pool, 1].mean() - tau[pool, 2].mean()) < 0.3
    assert fitted.model.trees is not None  # continuous outcome: the backfitted effect trees are the second stage


def test_survival_outcome_ranks_the_protective_arm_first():
    df, tau = synthetic_trial(n=700, n_arms=2, kind="survival", seed=2)
    spec = _spec(treatment="arm", time="time", event="status", horizon=2.0, assignment="randomised", n_bins=10)
    prep = prepare_treatment(df, spec=spec, source="syn")
    fitted = fit_treatment(prep, pool=np.arange(700), spec=spec)
    x = fitted.model.features(prep.data, source="syn")
    d = fitted.model.draws(x)
    rmst_mean = d["pred"].mean(0)
    risk = d["risk"].mean(0)
    helped = df["marker"].to_numpy() > 0.5  # tau = 0.5 + marker on the log-hazard scale: arm1 protects
    hurt = df["marker"].to_numpy() < -1.5
    assert (rmst_mean[helped, 1] > rmst_mean[helped, 0]).mean() > 0.8
    assert (rmst_mean[hurt, 1] < rmst_mean[hurt, 0]).mean() > 0.5
    assert np.all((risk >= 0) & (risk <= 1)) and np.all(rmst_mean <= 2.0 + 1e-3)


def test_observational_dr_estimate_corrects_confounding():
    rng = np.random.default_rng(5)
    n = 1000
    sev = rng.normal(size=n)
    treated = rng.random(n) < 1 / (1 + np.exp(-1.5 * sev))  # sicker patients are treated more often
    y = -2.0 * sev + 1.0 * treated + rng.normal(scale=0.5, size=n)  # true effect +1
    df = pd.DataFrame({"severity": sev.round(4), "age": rng.normal(60, 8, n).round(0), "drug": np.where(treated, "yes", "no"), "y": y})
    naive = y[treated].mean() - y[~treated].mean()
    spec = _spec(treatment="drug", outcome="y", assignment="observational")
    prep = prepare_treatment(df, spec=spec, source="obs")
    fitted = fit_treatment(prep, pool=np.arange(n), spec=spec)
    dr_ate = fitted.oof["pseudo"][:, 0].mean()
    assert naive < 0 and abs(dr_ate - 1.0) < 0.25
    e = fitted.oof["propensity"][:, 1]
    assert np.corrcoef(e, sev)[0, 1] > 0.8  # the propensity head saw the confounder


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.assign(arm="arm0"), "has one arm"),
    (lambda d: d.assign(arm=np.where(np.arange(len(d)) < 8, "rare", d["arm"])), "fewer than 20 patients"),
    (lambda d: d.assign(outcome=np.where(d["arm"] == "arm1", np.nan, d["outcome"])), "every outcome ('outcome') is missing in arm 'arm1'"),
    (lambda d: d.assign(outcome=np.where(np.arange(len(d)) == 4, np.nan, d["outcome"])), "missing in 1 row(s) (rows 5)"),
    (lambda d: d.assign(arm=np.where(np.arange(len(d)) == 2, None, d["arm"])), "treatment 'arm' is missing in 1 row(s) (rows 3)"),
    (lambda d: d.assign(age=d["age"].astype(object).where(np.arange(len(d)) != 6, "old")), "column 'age' is numeric"),
])
def test_clear_errors_for_unusable_trials(mutate, message):
    df, _ = synthetic_trial(n=200, n_arms=2, seed=0)
    with pytest.raises(DataError) as err:
        prepare_treatment(mutate(df), spec=_spec(treatment="arm", outcome="outcome"), source="trial.csv")
    assert message in str(err.value) and "trial.csv" in str(err.value)


def test_spec_and_reference_errors():
    df, _ = synthetic_trial(n=200, n_arms=2, seed=0)
    with pytest.raises(ConfigError, match="not an arm"):
        prepare_treatment(df, spec=_spec(treatment="arm", outcome="outcome", reference="placebo"), source="t")
    with pytest.raises(ConfigError, match="both --time and --event"):
        _spec(treatment="arm", time="time")
    with pytest.raises(ConfigError, match="n_members"):
        _spec(treatment="arm", outcome="outcome", n_members=1)
    with pytest.raises(ConfigError, match="did you mean 'randomised'"):
        _spec(treatment="arm", outcome="outcome", assignment="randomsed")
    assert _spec(treatment="arm", outcome="outcome", assignment="randomized").assignment == "randomised"
