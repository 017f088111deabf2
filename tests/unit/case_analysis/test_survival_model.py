"""The discrete-time survival network: its loss by hand, its time grid, that it learns (beats a
random C-index on WHAS500 in a few epochs), the large preset's size, and a bundle round trip."""

import json
import math

import numpy as np
import pytest
import torch

from medassist.evaluation.survival import harrell_c
from medassist.exceptions import BundleError, DataError
from medassist.models import build_model, count_parameters
from medassist.models.survival import (
    discrete_time_nll,
    discretise,
    interpolate_survival,
    mixture_nll,
    survival_at_edges,
    time_grid,
)
from medassist.pipeline.survival import (
    SurvivalSpec,
    default_encoder_config,
    default_survival_config,
    fit_survival,
    load_survival_model,
    outcome_rows,
    select_covariates,
    sksurv_case_frame,
    split_rows,
    train_survival_bundle,
)
from medassist.training import TrainConfig


def _sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def test_discrete_time_loss_matches_a_hand_computed_likelihood():
    logits = torch.tensor([[0.0, 1.0, -1.0], [2.0, -0.5, 0.3]])
    # row 0: event in interval 1 -> survived interval 0, failed in 1
    # row 1: censored in interval 2 -> survived intervals 0 and 1, nothing known about 2
    target = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    ll0 = math.log(1 - _sig(0.0)) + math.log(_sig(1.0))
    ll1 = math.log(1 - _sig(2.0)) + math.log(1 - _sig(-0.5))
    assert discrete_time_nll(logits, target).item() == pytest.approx(-(ll0 + ll1) / 2, rel=1e-6)
    # an event in the first interval only counts its hazard
    assert discrete_time_nll(torch.tensor([[0.3, 9.0]]), torch.tensor([[0.0, 1.0]])).item() == pytest.approx(-math.log(_sig(0.3)), rel=1e-6)


def test_time_grid_and_targets():
    t = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0])
    d = np.array([1, 1, 0, 1, 1, 0, 0])
    edges = time_grid(t, d, n_bins=4)
    assert edges[0] == 0 and edges[-1] == 10.0 and np.all(np.diff(edges) > 0)
    y = discretise(t, d, edges)
    assert y.shape == (7, 2) and y[:, 1].tolist() == d.tolist()
    assert y[-1, 0] == len(edges) - 2  # the longest follow-up falls in the last interval
    assert np.all(np.diff(y[:, 0]) >= 0)
    with pytest.raises(DataError, match="event"):
        time_grid(t, np.zeros(7), n_bins=4)


def test_time_grid_cut_at_a_horizon_and_rows_past_it_survive_every_interval():
    # the treatment task's grid: the same core, ending at its horizon
    t = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0])
    d = np.array([1, 1, 0, 1, 1, 1, 0])
    edges = time_grid(t, d, n_bins=4, horizon=5.0)
    assert edges[0] == 0 and edges[-1] == 5.0 and np.all(np.diff(edges) > 0) and edges.max() <= 5.0
    y = discretise(t, d, edges, past_end="survived")
    past = t >= 5.0
    assert np.all(y[past, 0] == len(edges) - 1) and np.all(y[past, 1] == 0)  # the event at 6 lies past the horizon
    assert np.array_equal(y[~past], discretise(t, d, edges)[~past])
    # no event before the horizon: one interval, nothing to raise about
    assert time_grid(t, np.zeros(7), n_bins=4, horizon=3.0).tolist() == [0.0, 3.0]
    with pytest.raises(ValueError, match="past_end"):
        discretise(t, d, edges, past_end="drop")


def test_linear_path_starts_at_zero_and_old_specs_build_without_it():
    torch.manual_seed(0)
    with_linear, spec = build_model("survnet", size="small", n_features=6, n_bins=5, overrides={"linear": True})
    assert spec["params"]["linear"] is True
    plain, old_spec = build_model("survnet", size="small", n_features=6, n_bins=5)
    assert "linear" not in old_spec["params"] and plain.linear is None  # bundles written before it load unchanged
    plain.load_state_dict({k: v for k, v in with_linear.state_dict().items() if not k.startswith("linear.")})
    x = torch.randn(4, 6)
    with_linear.eval(), plain.eval()
    assert torch.allclose(with_linear(x), plain(x))  # the linear path starts at zero
    with torch.no_grad():
        with_linear.linear.weight.fill_(0.5)
    shift = with_linear(x) - plain(x)
    assert torch.allclose(shift, (x.sum(dim=1, keepdim=True) * 0.5).expand(-1, 5), atol=1e-5)  # one shift for every interval


def test_mixture_likelihood_by_hand():
    s = np.array([[1.0, 0.8, 0.5], [1.0, 0.9, 0.6]])
    # row 0: event in interval 1 (S(e_1) - S(e_2) = 0.3); row 1: censored in interval 1 (S(e_1) = 0.9)
    y = np.array([[1.0, 1.0], [1.0, 0.0]])
    assert mixture_nll(s, y) == pytest.approx(-(math.log(0.3) + math.log(0.9)) / 2)


def test_cox_mix_is_chosen_out_of_fold_and_the_bundle_gives_the_same_curves(tmp_path):
    frame = sksurv_case_frame("veteran")
    spec = SurvivalSpec(n_members=2, linear=True, cox_mix=True, train=default_survival_config(epochs=3),
                        encoder_train=default_encoder_config(epochs=1))
    out = train_survival_bundle(frame, spec=spec, source_name="veteran", out_dir=tmp_path / "b", progress=False)
    model = load_survival_model(out.bundle_dir)
    mix = model.info["cox_mix"]
    nll = {float(w): v for w, v in mix["oof_nll"].items()}
    conc = {float(w): v for w, v in mix["oof_c"].items()}
    near_best = [w for w in conc if conc[w] >= max(conc.values()) - 1e-3]
    # the weight that ranked the held-out folds best; the likelihood breaks near-ties
    assert mix["weight"] in near_best and nll[mix["weight"]] == min(nll[w] for w in near_best)
    x = model.features(frame)
    mixed = model.survival_at_edges(x)
    assert np.allclose(mixed[:, 0], 1) and np.all(np.diff(mixed, axis=1) <= 1e-6)
    # the curve is (1 - w) x the networks' mean + w x the Cox curve, read from safetensors buffers
    w = float(model.nets.cox.mix)
    assert w == pytest.approx(mix["weight"])
    with torch.no_grad():
        xt = torch.as_tensor(x, dtype=torch.float32)
        nets_only = survival_at_edges(model.nets(xt)).mean(dim=0).numpy()
        cox = model.nets.cox(xt).numpy()
    assert np.allclose(mixed, (1 - w) * nets_only + w * cox, atol=1e-5)
    assert model.member_survival(x[:4], model.edges[1:3]).shape == (2, 4, 2)


def test_survival_curves_start_at_one_and_never_rise():
    s = survival_at_edges(torch.randn(5, 8)).numpy()
    assert np.allclose(s[:, 0], 1) and np.all(np.diff(s, axis=1) <= 1e-7)
    edges = np.linspace(0, 80, 9)
    mid = interpolate_survival(s, edges, np.array([5.0, 200.0]))
    assert np.allclose(mid[:, 0], (s[:, 0] + s[:, 1]) / 2) and np.allclose(mid[:, 1], s[:, -1])


def test_large_preset_passes_a_million_parameters():
    small, _ = build_model("survnet", size="small", n_features=30, n_bins=24)
    large, spec = build_model("survnet", size="large", n_features=30, n_bins=24)
    assert count_parameters(small) < 100_000 < 1_000_000 < count_parameters(large)
    assert spec["name"] == "survnet" and spec["size"] == "large"


def test_small_model_beats_random_concordance_on_whas500_in_a_few_epochs():
    frame = sksurv_case_frame("whas500")
    oc = outcome_rows(frame, time="time", event="event")
    fast = TrainConfig(epochs=15, batch_size=32, lr=2e-3, patience=15)
    spec = SurvivalSpec(n_members=1, train=fast, encoder_train=default_encoder_config(epochs=2))
    cov, _ = select_covariates(oc.frame, spec=spec)
    tr, va, te = split_rows(oc.event, spec=spec)
    fitted = fit_survival(oc.frame, oc.time, oc.event, train=tr, val=va, spec=spec, covariates=cov)
    x = fitted.model.features(oc.frame)
    c = harrell_c(fitted.model.risk(x[te]), oc.time[te], oc.event[te])
    assert c > 0.65, c  # random ranking gives 0.5; published models reach about 0.75
    curves = fitted.model.survival(x[te], np.array([0.0, 365.0, 1000.0]))
    assert np.allclose(curves[:, 0], 1) and np.all(np.diff(curves, axis=1) <= 1e-6)


def test_bundle_round_trip_gives_the_same_curves_and_rejects_other_tasks(tmp_path):
    frame = sksurv_case_frame("veteran")
    frame.loc[frame.index[:3], "time"] = np.nan  # cases without an outcome
    spec = SurvivalSpec(n_members=2, missing_outcome="drop", train=default_survival_config(epochs=5),
                        encoder_train=default_encoder_config(epochs=2))
    out = train_survival_bundle(frame, spec=spec, source_name="veteran", out_dir=tmp_path / "b", progress=False)
    assert any("without a recorded outcome" in n for n in out.notes)
    meta = json.loads((out.bundle_dir / "bundle.json").read_text())
    assert meta["task"] == "cases-survival" and meta["model"]["params"]["n_members"] == 2
    metrics = json.loads((out.bundle_dir / "metrics.json").read_text())["test"]
    assert 0 <= metrics["c_index"] <= 1 and 0 < metrics["integrated_brier"] < 0.5
    model = load_survival_model(out.bundle_dir)
    x = model.features(frame)
    a = model.survival_at_edges(x)
    assert a.shape == (len(frame), len(model.edges))
    from medassist.registry.bundle import load_bundle
    b = load_bundle(out.bundle_dir)
    assert b.model_card["model"]["n_parameters_per_member"] > 0
    with pytest.raises(DataError, match="no 'time'/'event' outcome"):
        train_survival_bundle(frame, spec=SurvivalSpec(), source_name="veteran", out_dir=tmp_path / "c", progress=False)
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "bundle.json").write_text(json.dumps({"format": 1, "task": "treatment"}))
    with pytest.raises(BundleError):
        load_survival_model(tmp_path / "fake")
