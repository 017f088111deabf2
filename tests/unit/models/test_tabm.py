"""TabM (issue 17): k weight-sharing members in one network, quantile bins in buffers, every
member's logits in training and the log of their mean probability in eval mode."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from medassist.exceptions import ConfigError
from medassist.featurizers.tabular import TabularFeaturizer
from medassist.models import build_model, count_parameters, model_from_spec
from medassist.models.tabular import PiecewiseLinearEncoding, TabM, quantile_bin_edges
from medassist.registry.bundle import ModelBundle, load_bundle, save_bundle
from medassist.training.losses import classification_loss
from medassist.types import TaskSchema


def _fitted(size: str = "small", n_features: int = 6, n_outputs: int = 2, seed: int = 0) -> tuple[TabM, dict, torch.Tensor]:
    torch.manual_seed(seed)
    model, spec = build_model("tabm", size=size, n_features=n_features, n_outputs=n_outputs)
    x = torch.randn(64, n_features) * torch.linspace(0.5, 3.0, n_features) + 1.0
    model.fit_bins(x)
    return model, spec, x


def test_large_preset_passes_one_million_parameters_even_with_few_inputs():
    for n_features in (4, 30):
        large, spec = build_model("tabm", size="large", n_features=n_features, n_outputs=2)
        assert count_parameters(large) > 1_000_000, (n_features, count_parameters(large))
        assert spec["params"]["k"] == 32
    small, _ = build_model("tabm", size="small", n_features=30, n_outputs=2)
    assert count_parameters(small) < count_parameters(large) / 5


@pytest.mark.parametrize("adapters,d_embedding", [("mini", 8), ("full", 8), ("mini", 0), ("full", 0)])
def test_training_mode_returns_every_member_and_eval_mode_their_mean_probability(adapters, d_embedding):
    torch.manual_seed(0)
    model = TabM(n_features=5, n_outputs=3, k=4, d_block=16, n_blocks=2, dropout=0.0, adapters=adapters,
                 d_embedding=d_embedding, n_bins=6)
    x = torch.randn(7, 5)
    model.fit_bins(torch.randn(50, 5))
    model.train()
    members = model(x)
    assert members.shape == (7, 4, 3)
    assert not torch.allclose(members[:, 0], members[:, 1])  # members differ from the start
    model.eval()
    logits = model(x)
    assert logits.shape == (7, 3)
    torch.testing.assert_close(torch.softmax(logits, dim=-1), torch.softmax(members, dim=-1).mean(dim=1))


def test_the_loss_is_the_mean_of_the_members_losses_with_and_without_class_weights():
    logits = torch.randn(6, 4, 2)
    y = torch.tensor([0, 1, 1, 1, 0, 1])
    for balanced in (False, True):
        loss_fn = classification_loss(y.numpy(), 2, balanced=balanced)
        per_member = torch.stack([loss_fn(logits[:, i], y) for i in range(4)])
        torch.testing.assert_close(loss_fn(logits, y), per_member.mean())
    assert loss_fn(logits[:, 0], y).shape == ()  # (B, C) logits still work


def test_bins_come_from_the_rows_given_and_live_in_the_state_dict():
    model, spec, x = _fitted()
    state = model.state_dict()
    assert {"embeddings.encoding.weight", "embeddings.encoding.bias", "embeddings.encoding.single_bin"} <= set(state)
    rebuilt = model_from_spec(json.loads(json.dumps(spec)))  # the spec is plain JSON
    assert not torch.equal(rebuilt.state_dict()["embeddings.encoding.weight"], state["embeddings.encoding.weight"])
    rebuilt.load_state_dict(state)
    model.eval(), rebuilt.eval()
    torch.testing.assert_close(model(x), rebuilt(x))


def test_piecewise_linear_encoding_matches_its_definition():
    enc = PiecewiseLinearEncoding(n_features=2, n_bins=4)
    enc.set_bins([torch.tensor([0.0, 1.0, 2.0, 4.0]), torch.tensor([0.0, 1.0])])  # 3 bins; a 0/1 column: 1 bin
    x = torch.tensor([[-1.0, 0.0], [0.5, 1.0], [1.5, 0.5], [3.0, 2.0], [6.0, -1.0]])
    z = enc(x)
    assert z.shape == (5, 2, 4)
    # column 0: [first bin, second bin, padding, last bin]; the first is open below, the last above
    torch.testing.assert_close(z[:, 0], torch.tensor([
        [-1.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0], [1.0, 1.0, 0.0, 0.5], [1.0, 1.0, 0.0, 2.0]]))
    # a single-bin column is min-max scaled, unclamped
    torch.testing.assert_close(z[:, 1, -1], x[:, 1])
    torch.testing.assert_close(z[:, 1, :-1], torch.zeros(5, 3))


def test_quantile_bins_have_at_most_n_bins_and_handle_binary_and_constant_columns():
    rng = np.random.default_rng(0)
    x = torch.tensor(np.column_stack([rng.normal(size=200), rng.integers(0, 2, 200), np.full(200, 3.0)]), dtype=torch.float32)
    edges = quantile_bin_edges(x, n_bins=8)
    assert len(edges[0]) == 9 and edges[0][0] == x[:, 0].min() and edges[0][-1] == x[:, 0].max()
    assert edges[1].tolist() == [0.0, 1.0] and edges[2].tolist() == [3.0, 4.0]
    enc = PiecewiseLinearEncoding(n_features=3, n_bins=8)
    enc.fit_bins(x)
    assert torch.isfinite(enc(x)).all()


def test_bundle_round_trip_keeps_bins_and_gives_identical_predictions(tmp_path):
    df = pd.DataFrame({"age": [50, 61, 72, np.nan, 45, 80, 33, 58], "bmi": [21.0, 30.5, 27.1, 24.0, 35.2, 19.9, 28.8, 26.0],
                       "sex": ["F", "M", "F", "M", "F", "M", "F", "M"]})
    f = TabularFeaturizer().fit(df)
    x = torch.from_numpy(f.transform(df).values)
    model, spec = build_model("tabm", size="small", n_features=x.shape[1], n_outputs=2)
    model.fit_bins(x)
    schema = TaskSchema(input_schema=f.input_schema(), output_schema={"dx": "binary"}, classes=["no", "yes"], positive_class="yes")
    out = save_bundle(ModelBundle(model=model, model_spec=spec, featurizer=f, schema=schema, calibration={"temperature": 1.0}),
                      tmp_path / "b")
    assert not any(p.suffix in (".pt", ".pkl", ".pth") for p in out.iterdir())
    loaded = load_bundle(out)
    model.eval()
    torch.testing.assert_close(model(x), loaded.model(torch.from_numpy(loaded.featurizer.transform(df).values)))
    assert not loaded.model.training


@pytest.mark.parametrize("bad,match", [
    ({"k": 0}, "'k' parameter of TabM must be an integer >= 1. Got 0"),
    ({"adapters": "half"}, "'adapters' parameter of TabM must be 'mini' or 'full'. Got 'half'"),
    ({"dropout": 1.5}, "'dropout' parameter of TabM must be a float in \\[0, 1\\). Got 1.5"),
    ({"n_bins": 2.5}, "'n_bins' parameter of TabM must be an integer >= 1. Got 2.5"),
])
def test_bad_parameters_are_refused_in_one_line(bad, match):
    params = {**TabM.PRESETS["small"], "n_features": 3, "n_outputs": 2, **bad}
    with pytest.raises(ConfigError, match=match):
        TabM(**params)


def test_bins_refuse_non_finite_or_too_few_rows():
    model, _, _ = _fitted()
    with pytest.raises(ConfigError, match="finite"):
        model.fit_bins(torch.full((10, 6), float("nan")))
    with pytest.raises(ConfigError, match="N >= 2"):
        model.fit_bins(torch.zeros(1, 6))


def test_undoing_class_weights_shifts_every_members_logits():
    from medassist.pipeline.tabular import undo_class_weighting

    model, _, x = _fitted(n_outputs=3)
    model.eval()
    before = model.member_logits(x).detach()
    w = np.array([0.5, 2.0, 1.0])
    undo_class_weighting(model, w)
    after = model.member_logits(x).detach()
    torch.testing.assert_close(after, before - torch.log(torch.tensor(w, dtype=torch.float32)))
