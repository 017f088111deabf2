"""Federated learning parts: FedAvg's weighted mean, the FedProx term, the summary-statistics
featurizer, the pooled AUC from histograms and the site-level DP accounting."""

import numpy as np
import pandas as pd
import pytest
import torch
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from torch import nn

from medassist.data.synthetic import messy_clinical_table
from medassist.evaluation.metrics import compute_roc_auc
from medassist.exceptions import DataError
from medassist.featurizers.tabular import TabularFeaturizer
from medassist.pipeline.federated import split_sites
from medassist.training.federated import (
    FederationConfig,
    ProximalLoss,
    auc_from_histograms,
    build_strategy,
    merge_summaries,
    site_level_epsilon,
    summarise_columns,
)


def _fit_res(arrays, n):
    return FitRes(status=Status(code=Code.OK, message=""), parameters=ndarrays_to_parameters(arrays), num_examples=n, metrics={})


def test_fedavg_aggregate_is_the_sample_weighted_mean():
    a = [np.array([1.0, 2.0]), np.array([[0.0]])]
    b = [np.array([4.0, -1.0]), np.array([[3.0]])]
    strategy = build_strategy(FederationConfig(min_clients=2, rounds=1))
    params, _ = strategy.aggregate_fit(1, [(None, _fit_res(a, 100)), (None, _fit_res(b, 300))], [])
    got = parameters_to_ndarrays(params)
    # by hand: (100 * a + 300 * b) / 400
    np.testing.assert_allclose(got[0], [3.25, -0.25])
    np.testing.assert_allclose(got[1], [[2.25]])


def test_fedprox_term_is_zero_at_the_global_weights_and_pulls_towards_them():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    loss_fn = ProximalLoss(base=nn.CrossEntropyLoss(), model=model, mu=0.5)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    model.train()
    assert loss_fn.proximal_term().item() == 0.0
    assert torch.allclose(loss_fn(model(x), y), nn.CrossEntropyLoss()(model(x), y))
    global_w = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    term = loss_fn.proximal_term()
    assert term.item() == pytest.approx(6.0)  # 6 weights, each 1 away
    term.backward()
    # the gradient points away from the anchor, so a descent step moves back towards it
    with torch.no_grad():
        before = (model.weight - global_w).norm()
        model.weight -= 0.1 * model.weight.grad
        assert (model.weight - global_w).norm() < before
    model.eval()  # the Trainer's validation loss leaves the term out
    assert torch.allclose(loss_fn(model(x), y), nn.CrossEntropyLoss()(model(x), y))


def test_featurizer_from_site_summaries_matches_fitting_on_pooled_rows():
    frame = messy_clinical_table(n_patients=240, seed=5)
    frame = frame.drop(columns=[c for c in frame.columns if frame[c].dtype == object and frame[c].nunique() > 40])
    target = "outcome"
    cols = [c for c in frame.columns if c not in (target, "mrn")]
    sites = split_sites(frame, target=target, n_sites=3, seed=0)
    summaries = {name: summarise_columns(f, columns=cols, source=name) for name, f in sites.items()}
    merged, _ = merge_summaries(summaries, columns=cols)
    pooled = TabularFeaturizer().fit(frame[cols])
    assert merged.feature_names_ == pooled.feature_names_ and merged.categories_ == pooled.categories_
    for col in pooled.numeric_:
        # medians are the count-weighted mean of site medians (approximate) ...
        assert merged.median_[col] == pytest.approx(pooled.median_[col], rel=0.15, abs=0.5)
        if pooled.missing_rate_[col] == 0:  # ... means and SDs exact when nothing is imputed
            assert merged.mean_[col] == pytest.approx(pooled.mean_[col], rel=1e-9)
            assert merged.scale_[col] == pytest.approx(pooled.scale_[col], rel=1e-9)
    x = merged.transform(frame[cols]).values
    assert x.shape == (len(frame), len(pooled.feature_names_)) and np.isfinite(x).all()


def test_a_column_numeric_at_one_site_and_text_at_another_is_refused():
    a = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    b = pd.DataFrame({"x": ["low", "high", "low"]})
    summaries = {"A": summarise_columns(a, columns=["x"], source="A"), "B": summarise_columns(b, columns=["x"], source="B")}
    with pytest.raises(DataError, match="'x' is numeric at some sites and categorical at others"):
        merge_summaries(summaries, columns=["x"])


def test_pooled_auc_from_histograms_matches_the_exact_auc():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    margin = rng.normal(size=400) + 1.2 * y
    edges = np.linspace(-30, 30, 1201)
    auc = auc_from_histograms(np.histogram(margin[y == 1], edges)[0], np.histogram(margin[y == 0], edges)[0])
    p = 1 / (1 + np.exp(-margin))
    exact = compute_roc_auc(np.stack([1 - p, p], axis=1), y, positive_index=1)
    assert auc == pytest.approx(exact, abs=0.005)


def test_site_level_epsilon_falls_with_noise_and_grows_with_rounds():
    e1 = site_level_epsilon(noise_multiplier=1.0, rounds=10, delta=1e-5)
    assert site_level_epsilon(noise_multiplier=4.0, rounds=10, delta=1e-5) < e1 < site_level_epsilon(noise_multiplier=1.0, rounds=40, delta=1e-5)


def test_dp_aggregation_clips_each_site_and_weights_sites_equally():
    strategy = build_strategy(FederationConfig(min_clients=2, rounds=1, dp_noise=1e-6, dp_clip=1.0))
    strategy.current_round_params = [np.zeros(2)]  # the round's global weights (set by configure_fit)
    big = [np.array([30.0, 40.0])]  # update norm 50: clipped to norm 1 → [0.6, 0.8]
    small = [np.array([0.0, 0.5])]  # inside the bound: unchanged
    params, _ = strategy.aggregate_fit(1, [(None, _fit_res(big, 1000)), (None, _fit_res(small, 10))], [])
    # uniform mean, not weighted by the sites' row counts
    np.testing.assert_allclose(parameters_to_ndarrays(params)[0], [0.3, 0.65], atol=1e-4)
