"""DP-SGD on the imaging ResNets (small preset): MONAI's blocks add the shortcut in place onto
the last norm layer's output, which Opacus' backward hooks refuse; ``clone_residual_branch``
(with BatchNorm → GroupNorm) makes them trainable, is recorded in the spec, and a bundle's
spec → module → safetensors round trip rebuilds the same network."""

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from medassist.data.synthetic_images import synthetic_images
from medassist.models import build_model, model_from_spec
from medassist.training import ArrayDataset, PrivacyConfig, TrainConfig, Trainer
from medassist.training.privacy import private_model_spec


def test_resnet_trains_privately_and_its_bundle_spec_rebuilds_it(tmp_path):
    imgs, y, _ = synthetic_images(n=36, size=16, seed=0)
    x = imgs.astype(np.float32) / 255.0
    train, val = ArrayDataset(features=x[:24], targets=y[:24]), ArrayDataset(features=x[24:], targets=y[24:])
    torch.manual_seed(0)
    model, spec = build_model("resnet18", size="small", in_channels=1, n_outputs=2, image_size=16)
    cfg = TrainConfig(epochs=1, batch_size=12, privacy=PrivacyConfig(target_epsilon=8.0))
    result = Trainer(config=cfg, progress=False).fit(model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss())
    assert result.privacy["model_conversions"] == ["batchnorm_to_groupnorm", "clone_residual_branch"]
    assert 0 < result.privacy["epsilon"] <= 8.001
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    rebuilt = model_from_spec(private_model_spec(spec, result.privacy["model_conversions"]))
    rebuilt.load_state_dict(load_file(str(tmp_path / "w.safetensors")))  # strict: same architecture
    rebuilt.eval(), model.eval()
    batch = val.features[:4]
    assert torch.allclose(rebuilt(batch), model(batch), atol=1e-6)
