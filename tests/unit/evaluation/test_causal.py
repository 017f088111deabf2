"""Doubly robust pseudo-outcomes, policy values, calibration and censoring weights."""

import numpy as np
import pytest

from medassist.evaluation.bootstrap import bootstrap
from medassist.evaluation.causal import (
    ate_error,
    blp_calibration,
    calibration_groups,
    dr_pseudo_outcomes,
    interval_coverage,
    ipcw_weights,
    kaplan_meier,
    policy_value,
    sqrt_pehe,
)
from medassist.exceptions import DataError


def _confounded(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    e1 = 1 / (1 + np.exp(-1.5 * x))
    arm = (rng.random(n) < e1).astype(int)
    tau = 1.0 + x
    y = 2 * x + arm * tau + rng.normal(size=n)
    return x, arm, np.column_stack([1 - e1, e1]), tau, y


def test_dr_pseudo_outcomes_recover_the_ate_under_confounding_even_with_a_wrong_outcome_model():
    x, arm, e, tau, y = _confounded()
    naive = y[arm == 1].mean() - y[arm == 0].mean()
    wrong_mu = np.zeros((len(y), 2))  # outcome model says nothing: DR leans on the propensities
    phi = dr_pseudo_outcomes(y, arm, wrong_mu, e, ref=0)
    assert phi.shape == (len(y), 1)
    assert abs(phi.mean() - 1.0) < 0.1 < abs(naive - 1.0)
    right_mu = np.column_stack([2 * x, 2 * x + tau])  # right outcome model, wrong propensities
    phi2 = dr_pseudo_outcomes(y, arm, right_mu, np.full((len(y), 2), 0.5), ref=0)
    assert abs(phi2.mean() - 1.0) < 0.05


def test_policy_value_ipw_and_dr_agree_with_the_truth():
    x, arm, e, tau, y = _confounded(seed=1)
    treat_if_helps = (tau > 0).astype(int)
    truth = np.mean(2 * x + treat_if_helps * tau)
    assert abs(policy_value(y, arm, treat_if_helps, e) - truth) < 0.15
    mu = np.column_stack([2 * x, 2 * x + tau])
    assert abs(policy_value(y, arm, treat_if_helps, e, mu=mu) - truth) < 0.05
    assert policy_value(y, arm, treat_if_helps, e, mu=mu) > policy_value(y, arm, np.zeros(len(y), int), e, mu=mu)


def test_scores_and_calibration():
    tau = np.linspace(-1, 1, 400)
    assert sqrt_pehe(tau, tau) == 0 and sqrt_pehe(tau + 0.5, tau) == pytest.approx(0.5)
    assert ate_error(tau + 0.2, tau) == pytest.approx(0.2)
    rng = np.random.default_rng(0)
    pseudo = tau + rng.normal(scale=0.5, size=len(tau))
    blp = blp_calibration(tau, pseudo)
    assert abs(blp["slope"] - 1) < 3 * blp["slope_se"] and blp["slope_se"] < 0.2
    flat = blp_calibration(rng.normal(size=len(tau)), pseudo)
    assert abs(flat["slope"]) < 0.3
    groups = calibration_groups(tau, pseudo, n_groups=4, n_boot=50)
    assert [g["n"] for g in groups] == [100] * 4 and groups[0]["observed"] < groups[-1]["observed"]
    assert interval_coverage(tau - 1, tau + 1, tau) == 1.0
    point, lo, hi = bootstrap(lambda r: pseudo[r].mean(), len(pseudo), n_boot=200)
    assert lo < point < hi
    with pytest.raises(DataError):
        sqrt_pehe(tau, tau[:-1])


def test_kaplan_meier_and_censoring_weights():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    grid, s = kaplan_meier(t, np.array([1, 1, 0, 1]))
    assert grid.tolist() == [1.0, 2.0, 4.0] and s.tolist() == pytest.approx([0.75, 0.5, 0.0])
    w, capped = ipcw_weights(t, np.ones(4), horizon=10.0)
    assert w.tolist() == [1.0, 1.0, 1.0, 1.0] and capped == 0
    # censored at 2 before the horizon 3: that row is unknown (0); later rows are up-weighted 1/G
    w, _ = ipcw_weights(np.array([1.0, 2.0, 3.5, 5.0]), np.array([1, 0, 1, 0]), horizon=3.0)
    assert w[1] == 0 and w[0] == 1.0 and w[2] == pytest.approx(1 / (1 - 1 / 3)) and w[3] == w[2]
