"""Checkpoints without pickle: tensors in safetensors, everything else in JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from medassist.exceptions import BundleError
from medassist.fileio import atomic_path


def state_to_tensors(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten model (and optimizer) state into tensors plus JSON-able metadata."""
    tensors = {f"model.{k}": v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {}
    if optimizer is not None:
        sd = optimizer.state_dict()
        for pid, state in sd["state"].items():
            for key, value in state.items():
                t = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"optim.{pid}.{key}"] = t.detach().cpu().clone().contiguous()
        meta["param_groups"] = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, meta


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, meta: dict[str, Any]) -> None:
    """Write ``path.safetensors`` and ``path.json`` atomically (temp files, then rename)."""
    tensors, opt_meta = state_to_tensors(model, optimizer)
    meta = {**meta, **opt_meta}
    st, js = path.with_suffix(".safetensors"), path.with_suffix(".json")
    with atomic_path(js) as js_tmp, atomic_path(st) as st_tmp:  # both written, then both renamed
        save_file(tensors, str(st_tmp))
        js_tmp.write_text(json.dumps(meta, indent=1))


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Restore model (and optimizer) state saved by ``save_checkpoint``; return its metadata."""
    st, js = path.with_suffix(".safetensors"), path.with_suffix(".json")
    if not st.exists() or not js.exists():
        raise BundleError(f"{path}: checkpoint not found (expected {st.name} and {js.name}).")
    tensors = load_file(str(st))
    meta: dict[str, Any] = json.loads(js.read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is not None and "param_groups" in meta:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, pid, key = k.split(".", 2)
                state.setdefault(int(pid), {})[key] = v
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta
