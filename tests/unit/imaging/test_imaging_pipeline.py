"""The image pipeline: imbalance correction, augmentation, multi-label bundles and their checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from medassist.assistants.imaging import ImagingAssistant, synthetic_image_set
from medassist.data.io.medmnist import load_medmnist
from medassist.data.synthetic_images import SYNTHETIC_NOTICE, write_medmnist_npz
from medassist.exceptions import DataError
from medassist.pipeline.imaging import ImageSpec, ImageTensorDataset, _loss, _undo_weighting, make_augmentation, train_images
from medassist.training import Monitor, TrainConfig


class _BiasOnly(nn.Module):
    """A model that can only learn the prior: logits = bias."""

    def __init__(self, k: int):
        super().__init__()
        self.fc = nn.Linear(1, k)
        nn.init.zeros_(self.fc.weight)
        self.fc.weight.requires_grad_(False)

    def head(self):
        return self.fc

    def forward(self, x):
        return self.fc(x)


def _fit(model, loss, x, y):
    opt = torch.optim.LBFGS([model.fc.bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        out = loss(model(x), y)
        out.backward()
        return out

    opt.step(closure)


@pytest.mark.parametrize("task", ["binary", "multilabel"])
def test_weighted_loss_then_correction_recovers_the_true_prevalence(task):
    rng = np.random.default_rng(0)
    if task == "multilabel":
        y = (rng.random((400, 3)) < np.array([0.05, 0.2, 0.5])).astype(np.float32)
        target = torch.as_tensor(y)
    else:
        y = (rng.random(400) < 0.1).astype(np.int64)
        target = torch.as_tensor(y)
    k = 3 if task == "multilabel" else 2
    loss, weights = _loss(task, y, k, balanced=True)
    model = _BiasOnly(k)
    x = torch.zeros(len(y), 1)
    _fit(model, loss, x, target)
    with torch.no_grad():
        p_weighted = torch.sigmoid(model(x[:1]))[0] if task == "multilabel" else torch.softmax(model(x[:1]), 1)[0]
    prevalence = y.mean(axis=0) if task == "multilabel" else np.bincount(y, minlength=2) / len(y)
    assert not np.allclose(p_weighted.numpy(), prevalence, atol=0.05)  # the weights did shift the probabilities
    _undo_weighting(model, weights)
    with torch.no_grad():
        p = torch.sigmoid(model(x[:1]))[0] if task == "multilabel" else torch.softmax(model(x[:1]), 1)[0]
    np.testing.assert_allclose(p.numpy(), prevalence, atol=2e-3)


def test_augmentation_changes_training_batches_only_and_is_seeded():
    x = torch.rand(4, 1, 16, 16)
    y = torch.zeros(4, dtype=torch.int64)
    a = ImageTensorDataset(images=x, targets=y, augment=make_augmentation(0)).get_batch(torch.arange(4)).inputs
    b = ImageTensorDataset(images=x, targets=y, augment=make_augmentation(0)).get_batch(torch.arange(4)).inputs
    plain = ImageTensorDataset(images=x, targets=y).get_batch(torch.arange(4)).inputs
    assert a.shape == x.shape and type(a) is torch.Tensor
    assert torch.equal(a, b) and not torch.equal(a, x) and torch.equal(plain, x)


def _quick_spec(**kw):
    return ImageSpec(**{"size": "small", **kw}, n_boot=20, n_gradcam=2, train=TrainConfig(epochs=1, batch_size=16, monitor=Monitor.VAL_METRIC))


def test_multilabel_bundle_reports_per_label_auc_and_gradcam(tmp_path):
    data = load_medmnist(write_medmnist_npz(tmp_path / "chest.npz", n=40, size=16, task="multilabel"))
    out = train_images(data, spec=_quick_spec(), out_dir=tmp_path / "bundle", progress=False)
    metrics = json.loads((out.bundle_dir / "metrics.json").read_text())["test"]
    assert [r["label"] for r in metrics["per_label"]] == data.classes
    assert set(metrics["metrics"]) >= {"macro_auc", "medmnist_auc", "medmnist_acc"}
    report = (out.bundle_dir / "report.html").read_text()
    assert "Grad-CAM" in report and report.count("data:image/png;base64,") == 2
    assistant = ImagingAssistant.load(out.bundle_dir)
    ev = assistant.evaluate(tmp_path / "chest.npz", n_boot=10)
    assert ev["split"] == "test (official)" and ev["n"] == len(data.splits["test"])
    single = write_medmnist_npz(tmp_path / "single.npz", n=20, size=16, task="binary")
    with pytest.raises(DataError, match="single-label data, but the model predicts 3 labels"):
        assistant.evaluate(single)


def test_synthetic_set_is_labelled_as_such_everywhere(tmp_path):
    data = synthetic_image_set(n=40, size=16)
    out = train_images(data, spec=_quick_spec(), out_dir=tmp_path / "demo", progress=False)
    card = json.loads((out.bundle_dir / "model_card.json").read_text())
    assert SYNTHETIC_NOTICE in card["name"] and card["data"]["synthetic"] is True
    assert SYNTHETIC_NOTICE in (out.bundle_dir / "report.html").read_text()
    assert SYNTHETIC_NOTICE in (out.bundle_dir / "model_card.md").read_text()
    assert json.loads((out.bundle_dir / "bundle.json").read_text())["synthetic"] is True
