"""DP-SGD through Opacus inside the one Trainer."""

import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from medassist.data.synthetic import random_binary_table
from medassist.exceptions import ConfigError
from medassist.models import build_model
from medassist.training import ArrayDataset, PrivacyConfig, TrainConfig, Trainer


def _data():
    x, y = random_binary_table(n=300, n_features=5, seed=1)
    return ArrayDataset(features=x[:240], targets=y[:240]), ArrayDataset(features=x[240:], targets=y[240:])


def test_dp_run_reports_the_epsilon_it_spent_and_leaves_a_plain_model():
    train, val = _data()
    torch.manual_seed(0)
    model, _ = build_model("mlp", size="small", n_features=5, n_outputs=2)
    cfg = TrainConfig(epochs=4, patience=100, lr=3e-3, privacy=PrivacyConfig(target_epsilon=2.0, delta=1e-5))
    result = Trainer(config=cfg, progress=False).fit(model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss())
    p = result.privacy
    assert p is not None and 0 < p["epsilon"] <= 2.0 + 1e-3 and p["delta"] == 1e-5 and p["noise_multiplier"] > 0
    # Opacus' hooks are gone: Captum explains the model, and it is still an ordinary module
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    IntegratedGradients(model).attribute(val.features[:4], target=1)
    assert TrainConfig.from_dict(cfg.to_dict()).privacy == cfg.privacy


def test_without_privacy_nothing_is_reported():
    train, val = _data()
    model, _ = build_model("mlp", size="small", n_features=5, n_outputs=2)
    result = Trainer(config=TrainConfig(epochs=1), progress=False).fit(model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss())
    assert result.privacy is None


def test_batchnorm_model_is_converted_to_groupnorm_and_says_so():
    train, val = _data()
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    cfg = TrainConfig(epochs=1, privacy=PrivacyConfig(target_epsilon=1.0))
    result = Trainer(config=cfg, progress=False).fit(model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss())
    assert isinstance(model[1], nn.GroupNorm) and result.privacy["model_conversions"] == ["batchnorm_to_groupnorm"]


@pytest.mark.parametrize("kw", [{"target_epsilon": 0}, {"target_epsilon": 1, "delta": 1.0}, {"target_epsilon": 1, "max_grad_norm": -1}])
def test_privacy_config_validation(kw):
    with pytest.raises(ConfigError):
        PrivacyConfig(**kw)
