"""MONAI 2D networks: sizes, channels, heads, Grad-CAM layers; registered by name."""

from __future__ import annotations

import pytest
import torch

from medassist.models import MODELS, build_model, count_parameters, model_from_spec


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "densenet121"])
def test_presets_shapes_and_rebuild_from_spec(name):
    assert name in MODELS
    small, spec = build_model(name, size="small", in_channels=3, n_outputs=4, image_size=28)
    assert small(torch.zeros(2, 3, 28, 28)).shape == (2, 4)
    assert count_parameters(small) < 200_000
    assert small.head().out_features == 4 and isinstance(small.gradcam_layer(), torch.nn.Module)
    rebuilt = model_from_spec(spec)
    rebuilt.load_state_dict(small.state_dict())


@pytest.mark.parametrize(("name", "minimum"), [("resnet18", 11_000_000), ("resnet50", 23_000_000), ("densenet121", 6_900_000)])
def test_large_presets_are_the_published_sizes(name, minimum):
    model, _ = build_model(name, size="large", in_channels=1, n_outputs=2, image_size=28)
    assert count_parameters(model) > max(minimum, 1_000_000)


def test_large_input_uses_the_strided_stem():
    model, _ = build_model("resnet18", size="small", in_channels=1, n_outputs=2, image_size=128)
    assert model.net.conv1.stride == (2, 2)
    assert model(torch.zeros(1, 1, 128, 128)).shape == (1, 2)
