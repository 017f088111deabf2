import numpy as np
import torch

from medassist.explain.attributions import group_attributions, integrated_gradients, top_attributions
from medassist.models import build_model


def test_integrated_gradients_complete_the_logit_difference():
    torch.manual_seed(0)
    model, _ = build_model("mlp", size="small", n_features=4, n_outputs=2)
    model.eval()
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    t = np.array([1, 0, 1, 1, 0, 0])
    attr = integrated_gradients(model, x, t, n_steps=64)
    with torch.no_grad():
        diff = model(torch.from_numpy(x)) - model(torch.zeros(1, 4))
    expected = diff[np.arange(6), t].numpy()
    np.testing.assert_allclose(attr.sum(1), expected, atol=0.02)


def test_a_feature_the_model_ignores_gets_no_attribution():
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, -1.0]]))
        model.bias.zero_()
    x = np.array([[1.0, 5.0, 1.0]], dtype=np.float32)
    attr = integrated_gradients(model, x, np.array([1]))
    np.testing.assert_allclose(attr[0], [2.0, 0.0, -1.0], atol=1e-4)


def test_grouping_sums_levels_into_their_column_and_top_k_orders_by_size():
    attr = np.array([[0.1, 0.5, -0.7, 0.05]])
    grouped, names = group_attributions(attr, ["age", "sex", "sex", "bp"])
    assert names == ["age", "sex", "bp"]
    np.testing.assert_allclose(grouped[0], [0.1, -0.2, 0.05], atol=1e-6)
    assert [n for n, _ in top_attributions(grouped, names, k=2)[0]] == ["sex", "age"]


def test_batched_integrated_gradients_equal_captums_and_report_their_completeness_gap():
    from medassist.explain.attributions import integrated_gradients_captum, integrated_gradients_checked

    torch.manual_seed(0)
    model, _ = build_model("mlp", size="small", n_features=5, n_outputs=3)
    model.eval()
    x = np.random.default_rng(1).normal(size=(40, 5)).astype(np.float32)
    t = np.random.default_rng(2).integers(0, 3, size=40)
    ours, gap = integrated_gradients_checked(model, x, t, n_steps=32, max_points=64)  # several passes
    np.testing.assert_allclose(ours, integrated_gradients_captum(model, x, t, n_steps=32), atol=1e-5)
    with torch.no_grad():
        diff = (model(torch.from_numpy(x)) - model(torch.zeros(1, 5)))[np.arange(40), t].numpy()
    np.testing.assert_allclose(gap, ours.sum(1) - diff, atol=1e-5)
    assert np.abs(gap).max() < 0.02  # faithful: the attributions add up to the logit difference
