"""The image training recipe: the base preset, batched augmentation, mixup, EMA weights, the
pixel baseline beside every model, and --init-from a local checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from medassist.assistants.imaging import ImagingAssistant, synthetic_image_set
from medassist.data.synthetic_images import lesion_difficulty_set
from medassist.exceptions import ConfigError, DataError
from medassist.models import build_model, count_parameters
from medassist.options import ModelSize
from medassist.pipeline.imaging import RECIPES, ImageSpec, train_images
from medassist.pipeline.imaging_recipe import BatchAugment, EMAModel, ImageTensorDataset, load_initial_weights
from medassist.training import Monitor, TrainConfig


def test_base_is_the_image_default_and_passes_a_million_parameters_for_every_family():
    assert ImageSpec().size is ModelSize.BASE and RECIPES[ModelSize.BASE].ema > 0
    for name in ("resnet18", "resnet50", "densenet121"):
        model, spec = build_model(name, size="base", in_channels=1, n_outputs=2, image_size=28)
        assert count_parameters(model) > 1_000_000 and spec["size"] == "base"
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 2)
    with pytest.raises(ConfigError, match="Valid: small, large"):
        build_model("mlp", size="base", n_features=3, n_outputs=2)


def test_batch_augment_is_seeded_keeps_shapes_and_works_on_one_image():
    x = torch.rand(8, 1, 16, 16)
    a, b = BatchAugment(seed=1)(x), BatchAugment(seed=1)(x)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    assert BatchAugment(seed=0)(x[0]).shape == (1, 16, 16)


def test_mixup_gives_probability_targets_and_channels_last_batches():
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 2
    batch = ImageTensorDataset(images=x, targets=y, mixup=0.4, n_classes=2, channels_last=True, seed=0).get_batch(torch.arange(16))
    assert batch.target.shape == (16, 2) and torch.allclose(batch.target.sum(1), torch.ones(16))
    assert batch.inputs.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ConfigError, match="n_classes"):
        ImageTensorDataset(images=x, targets=y, mixup=0.4)


def test_ema_validates_the_averaged_weights_and_hands_them_back():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    ema = EMAModel(net, decay=0.9)
    opt = torch.optim.AdamW(ema.parameters(), lr=0.1)
    ema.train()
    for _ in range(5):
        opt.zero_grad()
        ema(torch.randn(4, 3)).sum().backward()
        opt.step()
    assert all(p.grad is None for p in ema.ema.parameters())  # the average is never trained
    ema.eval()
    x = torch.randn(2, 3)
    averaged_out = ema(x)
    assert not torch.allclose(averaged_out, net(x))
    assert torch.allclose(ema.averaged()(x), averaged_out)
    with pytest.raises(ConfigError, match="decay"):
        EMAModel(net, decay=1.5)


def test_lesion_set_has_known_difficulty_and_both_classes():
    x, y, d = lesion_difficulty_set(n=40, size=20, seed=3)
    assert x.shape == (40, 1, 20, 20) and x.dtype == np.uint8 and set(y) == {0, 1}
    assert d.min() >= 0 and d.max() <= 1


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recipe")
    spec = ImageSpec(size="small", n_boot=20, n_gradcam=1, train=TrainConfig(epochs=1, batch_size=16, monitor=Monitor.VAL_METRIC))
    return train_images(synthetic_image_set(n=60, size=16), spec=spec, out_dir=tmp / "bundle", progress=False)


def test_every_image_bundle_holds_the_pixel_baseline_shown_beside_the_model(small_bundle):
    out = small_bundle.bundle_dir
    stored = json.loads((out / "baselines.json").read_text())["logistic"]
    assert stored["kind"] == "logistic_regression" and stored["pool_side"] == 16 and len(stored["coef"][0]) == 256
    (row,) = small_bundle.baselines
    assert row["label"].startswith("Logistic regression on 16×16 pooled pixels") and "difference" in row["auc_difference"]
    assert "pooled pixels" in (out / "report.html").read_text()
    assert "Compared with simple baselines" in (out / "model_card.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["baselines"][0]["verdict"] == row["verdict"]
    ev = ImagingAssistant.load(out).evaluate(synthetic_image_set(n=20, size=16, seed=5), n_boot=10)
    assert ev["baselines"][0]["name"] == "logistic" and ev["baseline_notes"] == []


def test_init_from_a_medassist_bundle_and_from_a_plain_state_dict(small_bundle, tmp_path):
    def fresh(n_out=2):
        return build_model("resnet18", size="small", in_channels=1, n_outputs=n_out, image_size=16)[0]

    model = fresh()
    report = load_initial_weights(model, small_bundle.bundle_dir)  # a bundle folder: its model.safetensors
    trained = ImagingAssistant.load(small_bundle.bundle_dir).bundle.model.state_dict()
    assert report["skipped"] == [] and len(report["loaded"]) == len(trained)
    assert all(torch.equal(model.state_dict()[k], trained[k]) for k in trained)
    # a torchvision/DDP-style file: wrapped in "state_dict", names prefixed "module.", another head
    other = fresh(n_out=5).state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in other.items()}}, tmp_path / "weights.pt")
    report = load_initial_weights(fresh(), tmp_path / "weights.pt")
    assert {r["name"] for r in report["skipped"]} == {"net.fc.weight", "net.fc.bias"}
    assert "shape (5, 64) in the checkpoint, (2, 64) in the model" in report["skipped"][0]["reason"]
    assert "2 skipped (shape mismatch)" in report["summary"]
    save_file({"unrelated.weight": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(DataError, match="none of its 1 tensors fits this model"):
        load_initial_weights(fresh(), tmp_path / "other.safetensors")
    torch.save({"opt": object()}, tmp_path / "pickled.pt")  # arbitrary objects are never unpickled
    with pytest.raises(DataError, match="not a plain PyTorch state dict"):
        load_initial_weights(fresh(), tmp_path / "pickled.pt")


def test_training_from_init_weights_records_what_was_loaded(small_bundle, tmp_path):
    spec = ImageSpec(size="small", n_boot=0, n_gradcam=0, init_from=str(small_bundle.bundle_dir),
                     train=TrainConfig(epochs=1, batch_size=16, monitor=Monitor.VAL_METRIC))
    out = train_images(synthetic_image_set(n=60, size=16, seed=1), spec=spec, out_dir=tmp_path / "b", progress=False)
    card = json.loads((out.bundle_dir / "model_card.json").read_text())
    assert card["model"]["weights"].startswith("initialised from") and card["model"]["init_from"]["skipped"] == []
    assert out.init is not None and len(out.init["loaded"]) > 0
