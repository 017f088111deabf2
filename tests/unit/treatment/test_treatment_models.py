"""Multi-arm network, DR correction, ensemble and the survival helpers."""

import torch

from medassist.models import build_model, count_parameters, model_from_spec
from medassist.models.treatment import (
    multiarm_loss,
    risk_at_horizon,
    rmst,
    split_outputs,
    survival_at_edges,
    treatment_ensemble_spec,
)


def test_multiarm_shapes_and_presets():
    small, spec = build_model("multiarm", size="small", n_features=12, n_arms=4, n_outputs=1)
    out = small(torch.randn(5, 12))
    assert out.shape == (5, 4 * 1 + 4)
    parts = split_outputs(out, n_arms=4, n_outputs=1)
    assert parts.arm.shape == (5, 4, 1) and parts.propensity.shape == (5, 4)
    large, _ = build_model("multiarm", size="large", n_features=12, n_arms=4, n_outputs=1)
    assert count_parameters(large) > 1_000_000 > count_parameters(small)
    rebuilt = model_from_spec(spec)
    assert sum(p.numel() for p in rebuilt.parameters()) == count_parameters(small)


def test_effect_correction_starts_at_zero_and_ensemble_stacks_members():
    eff, espec = build_model("effect_mlp", size="small", n_features=6, n_contrasts=2)
    assert torch.equal(eff(torch.randn(3, 6)), torch.zeros(3, 2))
    _, mspec = build_model("multiarm", size="small", n_features=6, n_arms=3, n_outputs=4)
    ens = model_from_spec(treatment_ensemble_spec(mspec, espec, 3))
    assert ens(torch.randn(2, 6)).shape == (3, 2, 3 * 4 + 3)
    assert ens.corrections(torch.randn(2, 6)).shape == (3, 2, 2)


def test_survival_helpers():
    edges = torch.tensor([0.0, 1.0, 2.0, 4.0])
    never = torch.full((2, 3), -30.0)  # hazard ~ 0: survive to the horizon
    assert torch.allclose(rmst(never, edges), torch.tensor([4.0, 4.0]), atol=1e-4)
    assert torch.allclose(risk_at_horizon(never), torch.zeros(2), atol=1e-6)
    half = torch.zeros(1, 3)  # hazard 0.5 per bin
    s = survival_at_edges(half)
    assert torch.allclose(s, torch.tensor([[1.0, 0.5, 0.25, 0.125]]))
    assert torch.allclose(rmst(half, edges), torch.tensor([0.75 + 0.375 + 0.375]))


def test_survival_loss_rewards_hazard_where_events_happen():
    target = torch.tensor([[0.0, 1.0, 1.0], [1.0, 3.0, 0.0]])  # arm 0: event in bin 1; arm 1: survived all 3 bins
    good = torch.zeros(2, 2 * 3 + 2)
    good[0, 0:3] = torch.tensor([-4.0, 4.0, 0.0])
    good[1, 3:6] = -4.0
    bad = -good
    kw = dict(n_arms=2, n_outputs=3, kind="survival", propensity_weight=0.0)
    assert multiarm_loss(good, target, **kw) < multiarm_loss(bad, target, **kw)
