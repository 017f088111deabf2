"""The ONNX Runtime forward pass is adopted only where it gives PyTorch's probabilities."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from medassist.models import Ensemble
from medassist.models.onnx_runtime import TOLERANCE, compile_forward, torch_forward
from medassist.models.registry import build_model

pytest.importorskip("onnxruntime")


def _mlp(size: str = "small", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model, _ = build_model("mlp", size=size, n_features=12, n_outputs=3)
    return model.eval()


@pytest.mark.parametrize("ensemble", [False, True])
def test_onnx_runtime_gives_the_member_log_probabilities_pytorch_gives(ensemble):
    torch.manual_seed(1)
    model = Ensemble(member=build_model("mlp", n_features=12, n_outputs=3)[1], n_members=3).eval() if ensemble else _mlp()
    fwd = compile_forward(model, n_features=12)
    assert fwd.runtime == "onnxruntime", fwd.reason
    x = np.random.default_rng(5).normal(size=(50, 12)).astype(np.float32)
    got = fwd(x)
    assert got.shape == ((3 if ensemble else 1), 50, 3)
    np.testing.assert_allclose(np.exp(got), np.exp(torch_forward(model)(x)), atol=TOLERANCE)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    if ensemble:  # Ensemble.forward: log of the mean member probability
        np.testing.assert_allclose(np.logaddexp.reduce(got, axis=0) - np.log(3), logits, atol=1e-4)
    else:
        np.testing.assert_allclose(got[0], torch.log_softmax(torch.from_numpy(logits), -1).numpy(), atol=1e-4)
    assert fwd(x[:1]).shape[1] == 1  # any batch size


def test_without_onnxruntime_pytorch_serves_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    fwd = compile_forward(_mlp(), n_features=12)
    assert (fwd.runtime, fwd.reason) == ("torch", "onnxruntime is not installed")


class _Unexportable(nn.Module):
    """A network whose forward pass the ONNX exporter cannot trace (data-dependent Python)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(12, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x)
        return out if float(out.sum()) > 1e9 else out.numpy().tolist()  # type: ignore[return-value]


def test_a_network_that_does_not_export_keeps_pytorch_with_the_reason():
    fwd = compile_forward(_Unexportable(), n_features=12)
    assert fwd.runtime == "torch" and fwd.reason.startswith("ONNX export failed")


def test_the_default_tabular_network_tabm_runs_on_onnx_runtime():
    torch.manual_seed(0)
    model, _ = build_model("tabm", size="small", n_features=12, n_outputs=2)
    model.fit_bins(torch.randn(300, 12))
    model.eval()
    fwd = compile_forward(model, n_features=12)
    assert fwd.runtime == "onnxruntime", fwd.reason
    x = np.random.default_rng(2).normal(size=(40, 12)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x)), -1).numpy()
    np.testing.assert_allclose(np.exp(fwd(x)[0]), expected, atol=TOLERANCE)
