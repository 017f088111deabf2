"""The forward pass of a tabular network on ONNX Runtime, adopted only where it gives the same numbers.

Serving one row through PyTorch's eager mode costs more in dispatch than in arithmetic: on the
wdbc MLP (one thread) a one-row forward pass is 0.13 ms in PyTorch and 0.015 ms on ONNX Runtime;
on the 5 × 2.4 M-parameter ensemble 5.9 ms against 1.9 ms (``benchmarks/service_load.py``
measures both in the same run). :func:`compile_forward` exports the loaded network in memory,
runs both on a probe batch and keeps ONNX Runtime only when every member's probability agrees with
PyTorch's within :data:`TOLERANCE`; otherwise (or without ``onnxruntime`` installed) the caller
keeps PyTorch and is told why in one line. Nothing is written to the bundle: what is verified is
the network that was loaded.

Gradients (integrated gradients for the explanations) stay in PyTorch.

Example:
    >>> fwd = compile_forward(bundle.model, n_features=30)
    >>> fwd.runtime, fwd.reason
    ('onnxruntime', 'max |Δp| 2.4e-07 on 64 probe rows')
    >>> member_logp = fwd(x)           # (K, N, C) numpy, K = 1 for a single network
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from medassist.models.ensemble import Ensemble

#: Largest difference in any probability between ONNX Runtime and PyTorch on the probe batch for
#: ONNX Runtime to be used (probabilities are reported to 4 decimals).
TOLERANCE = 1e-5
PROBE_ROWS = 64


class _MemberLogProbabilities(nn.Module):
    """What is exported: each member's class log-probabilities, (K, N, C); K = 1 for one network
    (log-probabilities stay finite where a probability underflows)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members = list(self.model.members) if isinstance(self.model, Ensemble) else [self.model]
        return torch.stack([torch.log_softmax(m(x), dim=-1) for m in members])


@dataclass(frozen=True)
class CompiledForward:
    """Member log-probabilities (K, N, C) as float32 numpy from a float32 (N, F) array."""

    runtime: str  #: "onnxruntime" or "torch"
    reason: str  #: why this runtime: the agreement measured, or why ONNX Runtime was not used
    run: Callable[[np.ndarray], np.ndarray]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run(np.ascontiguousarray(x, dtype=np.float32))


def torch_forward(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    wrapped = _MemberLogProbabilities(model).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return wrapped(torch.from_numpy(x)).numpy()

    return run


def compile_forward(model: nn.Module, *, n_features: int, probe: np.ndarray | None = None, seed: int = 0) -> CompiledForward:
    """ONNX Runtime when it reproduces PyTorch's member probabilities on ``probe`` rows (default:
    :data:`PROBE_ROWS` standard-normal rows, the scale the featurizer produces), else PyTorch."""
    reference = torch_forward(model)
    try:
        import onnxruntime as ort
    except ImportError:
        return CompiledForward("torch", "onnxruntime is not installed", reference)
    if probe is None:
        probe = np.random.default_rng(seed).standard_normal((PROBE_ROWS, n_features)).astype(np.float32)
    probe = np.ascontiguousarray(probe, dtype=np.float32)
    wrapped = _MemberLogProbabilities(model).eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
            torch.onnx.export(wrapped, (torch.from_numpy(probe),), buf,  # type: ignore[arg-type]  # a file-like object is accepted
                              input_names=["x"], output_names=["p"], dynamic_axes={"x": {0: "n"}, "p": {1: "n"}}, dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # the service runs the model on one thread
        options.inter_op_num_threads = 1
        session: Any = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - any exporter/runtime failure means: keep PyTorch
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        return CompiledForward("torch", f"ONNX export failed: {first}", reference)

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {"x": x})[0]

    worst = 0.0
    for rows in (probe, probe[:1]):
        expected, got = reference(rows), run(rows)
        if got.shape != expected.shape or np.isnan(got).any():
            return CompiledForward("torch", f"ONNX Runtime gave shape {got.shape}, PyTorch {expected.shape}", reference)
        worst = max(worst, float(np.abs(np.exp(got) - np.exp(expected)).max()))
    if worst > TOLERANCE:
        return CompiledForward("torch", f"ONNX Runtime differs from PyTorch by {worst:.1e} (> {TOLERANCE:.0e})", reference)
    return CompiledForward("onnxruntime", f"max |Δp| {worst:.1e} on {len(probe)} probe rows", run)


__all__ = ["PROBE_ROWS", "TOLERANCE", "CompiledForward", "compile_forward", "torch_forward"]
