import pytest
import torch

from medassist.exceptions import ConfigError
from medassist.models import MODELS, build_model, count_parameters, model_from_spec


@pytest.mark.parametrize("name", ["mlp", "ft"])
def test_large_preset_passes_one_million_parameters_and_small_is_small(name):
    large, _ = build_model(name, size="large", n_features=20, n_outputs=2)
    small, _ = build_model(name, size="small", n_features=20, n_outputs=2)
    assert count_parameters(large) > 1_000_000
    assert count_parameters(small) < 100_000


@pytest.mark.parametrize("name", ["mlp", "ft"])
def test_forward_shape_and_spec_rebuild(name):
    model, spec = build_model(name, size="small", n_features=7, n_outputs=3)
    x = torch.randn(5, 7)
    assert model(x).shape == (5, 3)
    rebuilt = model_from_spec(spec)
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    torch.testing.assert_close(model(x), rebuilt(x))


def test_registry_rejects_unknown_and_duplicate_names():
    with pytest.raises(ConfigError, match="did you mean 'mlp'"):
        build_model("mpl", n_features=3, n_outputs=2)
    with pytest.raises(ConfigError, match="Unknown model size 'huge'"):
        build_model("mlp", size="huge", n_features=3, n_outputs=2)
    with pytest.raises(ConfigError, match="already registered"):
        MODELS.register("mlp")(object)
