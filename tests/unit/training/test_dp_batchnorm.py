"""DP-SGD on a model with BatchNorm (the imaging DenseNet, small preset): converted to GroupNorm,
recorded in the spec, and the bundle's way of rebuilding a model (spec → module → safetensors)
gets it back. (The ResNets, whose blocks add the residual in place, are in test_dp_resnet.py.)"""

import numpy as np
import torch
from captum.attr import IntegratedGradients
from safetensors.torch import load_file, save_file
from torch import nn

from medassist.data.synthetic_images import synthetic_images
from medassist.exceptions import ConfigError
from medassist.models import build_model, model_from_spec
from medassist.training import ArrayDataset, PrivacyConfig, TrainConfig, Trainer
from medassist.training.privacy import private_model_spec


def test_densenet_with_batchnorm_trains_privately_and_its_bundle_spec_rebuilds_it(tmp_path):
    imgs, y, _ = synthetic_images(n=36, size=16, seed=0)
    x = imgs.astype(np.float32) / 255.0
    train, val = ArrayDataset(features=x[:24], targets=y[:24]), ArrayDataset(features=x[24:], targets=y[24:])
    torch.manual_seed(0)
    model, spec = build_model("densenet121", size="small", in_channels=1, n_outputs=2, image_size=16)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    cfg = TrainConfig(epochs=1, batch_size=12, privacy=PrivacyConfig(target_epsilon=8.0))
    result = Trainer(config=cfg, progress=False).fit(model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss())
    assert result.privacy["model_conversions"] == ["batchnorm_to_groupnorm"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    # What a bundle does: weights to safetensors, the (converted) spec to JSON, and back.
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    new_spec = private_model_spec(spec, result.privacy["model_conversions"])
    assert new_spec["conversions"] == ["batchnorm_to_groupnorm"] and "conversions" not in spec
    rebuilt = model_from_spec(new_spec)
    rebuilt.load_state_dict(load_file(str(tmp_path / "w.safetensors")))  # strict: same architecture
    rebuilt.eval(), model.eval()
    batch = val.features[:4]
    assert torch.allclose(rebuilt(batch), model(batch), atol=1e-6)
    # the unconverted spec no longer fits these weights: the conversion must be recorded
    try:
        model_from_spec(spec).load_state_dict(load_file(str(tmp_path / "w.safetensors")))
        raise AssertionError("an unconverted model accepted GroupNorm weights")
    except RuntimeError:
        pass
    # no Opacus hooks are left: Captum explains the rebuilt and the trained model alike
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    IntegratedGradients(model).attribute(batch, target=1, n_steps=8)


def test_an_unknown_conversion_in_a_spec_is_refused():
    _, spec = build_model("mlp", size="small", n_features=3, n_outputs=2)
    try:
        model_from_spec({**spec, "conversions": ["batchnorm_to_layernorm"]})
    except ConfigError as e:
        assert "batchnorm_to_groupnorm" in str(e)
    else:
        raise AssertionError("unknown conversion accepted")
