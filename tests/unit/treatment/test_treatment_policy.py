"""Recommendation rule and interval calibration on small synthetic trials with known truth."""

import numpy as np
import pytest

from medassist.assistants.treatment import TreatmentAssistant
from medassist.data.datasets.trials import synthetic_trial
from medassist.data.sources import DataSource
from medassist.evaluation.treatment_policy import interval_multipliers, jackknife_factor, rank_arms, summarise, t_multiplier
from medassist.pipeline.treatment import TreatmentSpec, train_treatment
from medassist.training import TrainConfig

FAST = TrainConfig(epochs=50, patience=8, lr=1e-3, weight_decay=1e-4)
FAST_EFFECT = TrainConfig(epochs=20, patience=5, lr=3e-4, weight_decay=1e-2)


def _base(df):
    """The synthetic trial's expected outcome under arm 0 (see synthetic_trial)."""
    return (0.03 * (df["age"] - 55) + 0.5 * (df["sex"] == "M") + 0.3 * np.sin(2 * df["marker"])).to_numpy()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    df, tau = synthetic_trial(n=800, n_arms=2, kind="continuous", noise=0.5, seed=3)
    spec = TreatmentSpec(treatment="arm", outcome="outcome", assignment="randomised", n_members=5, n_boot=20, seed=0,
                         train=FAST, effect_train=FAST_EFFECT)
    out = tmp_path_factory.mktemp("models") / "policy"
    train_treatment(df, spec=spec, source=DataSource(name="synthetic.csv"), out_dir=out, progress=False)
    fresh, tau_new = synthetic_trial(n=600, n_arms=2, kind="continuous", noise=0.5, seed=11)
    return TreatmentAssistant.load(out), fresh, tau_new


def test_recommendation_recovers_a_policy_that_flips_with_a_covariate(fitted):
    assistant, fresh, tau = fitted
    advice = assistant.advise(fresh.drop(columns=["outcome"]), source="patients.csv", explain=False)
    truth = np.where(tau[:, 1] > 0, "arm1", "arm0")  # arm1 better exactly when marker > -0.5
    clear = np.abs(tau[:, 1]) > 0.7
    assert (advice.loc[clear, "recommended"].to_numpy() == truth[clear]).mean() > 0.9
    assert {"arm0", "arm1"} <= set(advice["recommended"])  # it personalises: not one arm for all
    p = advice[["p_best_arm0", "p_best_arm1"]].to_numpy()
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-3) and ((p >= 0) & (p <= 1)).all()
    assert (advice.loc[clear, "confidence_flag"] == "clear").mean() > 0.8
    top1 = advice["ranking"].str.startswith("arm1")
    assert (advice.loc[top1, "p_better_than_reference"] >= 0.5).all() and advice.loc[~top1, "p_better_than_reference"].isna().all()


def test_min_confidence_falls_back_to_the_arm_best_on_average_and_says_so(fitted):
    assistant, fresh, _ = fitted
    patients = fresh.drop(columns=["outcome"])
    top = assistant.advise(patients, explain=False)
    safe = assistant.advise(patients, explain=False, min_confidence=0.99)
    default = assistant.arms[int(assistant.info["default_arm"])]
    moved = top["recommended"] != safe["recommended"]
    assert (safe.loc[moved, "recommended"] == default).all()
    assert safe.loc[moved, "recommendation_basis"].str.contains("--min-confidence").all()
    assert (top["ranking"] == safe["ranking"]).all()  # the ranking is never hidden


def test_intervals_cover_the_true_expected_outcome_and_effect(fitted):
    assistant, fresh, tau = fitted
    info = assistant.info
    cal = info["interval_scale"]
    assert cal["arm"] >= 1.0 and cal["effect"] >= 1.0 and assistant.bundle.calibration["interval_scale"] == cal
    # the spread is widened at least to the delete-a-group jackknife's standard error (5 members: (5 - 1)/sqrt(5))
    assert cal["jackknife"] == pytest.approx(4 / np.sqrt(5)) and min(cal["arm"], cal["effect"]) >= cal["jackknife"]
    assert "jackknife" in assistant.bundle.model_card["calibration"]["interval"]
    m_arm, m_eff = interval_multipliers(info)
    x = assistant.model.features(fresh, source="fresh")
    d = assistant.model.draws(x)
    mu = _base(fresh)[:, None] + tau
    lo, hi = summarise(d["pred"], m_arm)[1:]
    # loose bounds: a 5-member ensemble on 800 patients; the benchmark measures the real figures
    assert 0.85 < np.mean((lo <= mu) & (mu <= hi)) <= 1.0
    dlo, dhi = summarise(d["pred"][:, :, 1] - d["pred"][:, :, 0], m_eff)[1:]
    assert 0.85 < np.mean((dlo <= tau[:, 1]) & (tau[:, 1] <= dhi)) <= 1.0
    assert np.mean(hi - lo) < 4 * 0.5  # not absurdly wide: well under four noise sd


def test_bundles_keep_the_interval_factors_they_were_saved_with():
    t = t_multiplier(5)
    before_jackknife = {"n_members": 5, "interval_scale": {"arm": 1.0, "effect": 1.3, "z": t}}  # a bundle from before version 2
    assert interval_multipliers(before_jackknife) == pytest.approx((t, 1.3 * t))
    assert interval_multipliers({"n_members": 5}) == pytest.approx((t, t))  # uncalibrated: plain t(0.975, K-1)
    assert jackknife_factor(5) == pytest.approx(1.7889, abs=1e-4) and jackknife_factor(2) == pytest.approx(1 / np.sqrt(2))


def test_rank_arms_probabilities_on_hand_made_draws():
    # 3 members, 2 patients, 3 arms: patient 0 clearly prefers arm 2, patient 1 cannot tell arms 0 and 1 apart
    draws = np.array([[[0.0, 0.1, 2.0], [1.0, 1.1, -3]], [[0.1, 0.0, 2.1], [1.1, 1.0, -3]], [[0.0, 0.05, 1.9], [1.0, 1.05, -3]]])
    r = rank_arms(draws, "higher", ref=0, default_arm=0, effect_scale=1.0)
    assert r.order[0, 0] == 2 and r.p_best[0, 2] > 0.99 and r.p_vs_runner_up[0] > 0.99
    assert r.p_vs_runner_up[1] < 0.9 and r.p_best[1, 2] == 0 and np.allclose(r.p_best.sum(1), 1)
    low = rank_arms(draws, "lower", ref=0, default_arm=0, effect_scale=1.0)
    assert low.order[1, 0] == 2
    cons = rank_arms(draws, "higher", ref=0, default_arm=0, effect_scale=1.0, min_confidence=0.95)
    assert cons.recommended[0] == 2 and cons.recommended[1] == 0 and cons.fallback[1]


def test_intervals_span_the_networks_own_where_effect_trees_are_blended_in():
    from medassist.evaluation.treatment_policy import outcome_intervals, summarise

    rng = np.random.default_rng(0)
    blend = rng.normal(size=(5, 40, 3))
    network = blend + rng.normal(0.5, 0.2, size=(5, 40, 3))
    # without the networks' draws: exactly the members' mean ± t·sd
    for got, want in zip(outcome_intervals({"pred": blend}, 2.0), summarise(blend, 2.0), strict=True):
        np.testing.assert_array_equal(got, want)
    mean, lo, hi = outcome_intervals({"pred": blend, "pred_network": network}, 2.0)
    _, lo_b, hi_b = summarise(blend, 2.0)
    _, lo_n, hi_n = summarise(network, 2.0)
    np.testing.assert_array_equal(mean, blend.mean(axis=0))  # the estimate stays the blend's
    np.testing.assert_array_equal(lo, np.minimum(lo_b, lo_n))
    np.testing.assert_array_equal(hi, np.maximum(hi_b, hi_n))
    # effects against arm 0: the same rule on the differences
    _, dlo, dhi = outcome_intervals({"pred": blend, "pred_network": network}, 2.0, contrast_to=0)
    _, dlo_n, dhi_n = summarise(network - network[:, :, [0]], 2.0)
    assert np.all(dlo <= dlo_n) and np.all(dhi >= dhi_n)
