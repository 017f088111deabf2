"""DP-SGD trains TabM correctly: Opacus' per-sample gradients of the members' mean loss equal the
gradients of each row's own loss (its buffers sit in a parameter-free module, as Opacus needs)."""

import pytest
import torch
from opacus import GradSampleModule

from medassist.data.synthetic import random_binary_table
from medassist.models.tabular import TabM
from medassist.training import ArrayDataset, PrivacyConfig, TrainConfig, Trainer, classification_loss


def _model() -> TabM:
    torch.manual_seed(0)
    return TabM(n_features=5, n_outputs=2, k=4, d_block=16, n_blocks=2, dropout=0.0, adapters="mini", d_embedding=4, n_bins=5)


@pytest.mark.filterwarnings("ignore:Full backward hook")
def test_opacus_per_sample_gradients_are_each_rows_own_gradient():
    x = torch.randn(6, 5)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    loss_fn = classification_loss(y.numpy(), 2, balanced=False)
    reference = _model()
    reference.fit_bins(torch.randn(40, 5))
    reference.train()
    expected = []
    for i in range(len(x)):
        reference.zero_grad()
        loss_fn(reference(x[i : i + 1]), y[i : i + 1]).backward()
        expected.append({n: p.grad.clone() for n, p in reference.named_parameters()})
    model = _model()
    model.load_state_dict(reference.state_dict())
    wrapped = GradSampleModule(model, loss_reduction="mean")
    wrapped.train()
    loss_fn(wrapped(x), y).backward()
    for name, p in model.named_parameters():
        for i in range(len(x)):
            torch.testing.assert_close(p.grad_sample[i], expected[i][name], rtol=1e-4, atol=1e-6, msg=f"{name}, row {i}")
    wrapped._close()


def test_dp_training_of_tabm_spends_the_budget_it_reports():
    x, y = random_binary_table(n=300, n_features=5, seed=1)
    train, val = ArrayDataset(features=x[:240], targets=y[:240]), ArrayDataset(features=x[240:], targets=y[240:])
    model = _model()
    cfg = TrainConfig(epochs=2, patience=100, lr=3e-3, privacy=PrivacyConfig(target_epsilon=2.0, delta=1e-5))
    result = Trainer(config=cfg, progress=False).fit(model, train_data=train, val_data=val,
                                                      loss_fn=classification_loss(y[:240], 2, balanced=False))
    assert result.privacy is not None and 0 < result.privacy["epsilon"] <= 2.0 + 1e-3
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    assert model(torch.from_numpy(x[:3])).shape == (3, 2)  # eval mode after fit
