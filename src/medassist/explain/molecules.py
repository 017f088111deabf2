"""Atom attributions for molecular property predictions, drawn as RDKit similarity maps.

* D-MPNN: integrated gradients over a gate on each atom's input features (gate 0 → 1, the
  bonds' features left as they are): an atom's share of ``f(x) - f(no atom features)``.
* Fingerprint MLP: integrated gradients over the fingerprint's (log-)counts, each bit's share
  split evenly over the atoms of the environments that set it.

Attributions are in the model's output units: the target's units for regression, log-odds for
classification. Descriptors, when the model has them, are held fixed (not attributed).

Example:
    >>> w = atom_attributions(bundle, mol)
    >>> Path("aspirin.png").write_bytes(similarity_map_png(mol, w))
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medassist.featurizers.molecules import MorganCountFeaturizer
from medassist.models.molecules import DMPNN, FingerprintBatch, GraphBatch, MoleculeEnsemble, make_batch


def _is_graph_model(model: torch.nn.Module) -> bool:
    inner = model.members[0] if isinstance(model, MoleculeEnsemble) else model
    return isinstance(inner, DMPNN)


def atom_attributions(bundle: Any, mol: Any, *, task: int = 0, n_steps: int = 32) -> np.ndarray:
    """Per-atom attributions (n_atoms,) of the prediction for ``task`` (integrated gradients)."""
    model = bundle.model
    model.eval()
    feats = bundle.featurizer.transform([mol])
    x = make_batch(feats, np.zeros(n_steps, dtype=np.int64))  # the molecule, n_steps times
    alphas = (torch.arange(n_steps, dtype=torch.float32) + 0.5) / n_steps  # midpoint rule
    scale = 1.0
    kind = bundle.schema.extras.get("kind", "regression")
    if kind == "regression":
        scale = float(np.asarray(bundle.calibration["target_std"])[task])
    if _is_graph_model(model):
        if not isinstance(x, GraphBatch):
            raise TypeError(f"A graph model needs graph features; the bundle's featurizer gave {type(x).__name__}.")
        n_atoms = mol.GetNumAtoms()
        gate = alphas.repeat_interleave(n_atoms).requires_grad_(True)
        out = _forward(model, x._replace(atom_gate=gate), kind)
        out[:, task].sum().backward()
        grads = _grad(gate).view(n_steps, n_atoms).mean(dim=0).numpy()
        return grads * scale  # gate goes from 0 to 1, so IG = mean gradient
    if not isinstance(x, FingerprintBatch):
        raise TypeError(f"A fingerprint model needs fingerprint features; the bundle's featurizer gave {type(x).__name__}.")
    fp = x
    nnz = len(fp.weights) // n_steps
    base = fp.weights[:nnz].clone()
    scaled = (alphas.repeat_interleave(nnz) * base.repeat(n_steps)).requires_grad_(True)
    out = _forward(model, fp._replace(weights=scaled), kind)
    out[:, task].sum().backward()
    bit_attr = (_grad(scaled).view(n_steps, nnz).mean(dim=0) * base).numpy() * scale
    bits = fp.indices[:nnz].numpy()
    fz = bundle.featurizer.structure_
    env = MorganCountFeaturizer(radius=fz.radius, n_bits=fz.n_bits).bit_atoms(mol)
    w = np.zeros(mol.GetNumAtoms())
    for b, a in zip(bits, bit_attr):
        atoms = env.get(int(b), [])
        for i in atoms:
            w[i] += a / len(atoms)
    return w


def _grad(t: torch.Tensor) -> torch.Tensor:
    """``t.grad`` after ``backward()``: set for a leaf that requires grad."""
    if t.grad is None:
        raise RuntimeError("No gradient reached the attributed input.")
    return t.grad


def _forward(model: torch.nn.Module, x: GraphBatch | FingerprintBatch, kind: str) -> torch.Tensor:
    """Model output to explain: standardised value (regression) or log-odds (classification)."""
    return model(x)


def top_atoms(mol: Any, weights: np.ndarray, *, k: int = 3) -> str:
    """The ``k`` atoms with the largest |attribution|, e.g. ``"O3:+0.812; N7:-0.250"``."""
    order = np.argsort(-np.abs(weights))[:k]
    return "; ".join(f"{mol.GetAtomWithIdx(int(i)).GetSymbol()}{int(i)}:{weights[i]:+.3f}" for i in order)


def similarity_map_png(mol: Any, weights: np.ndarray, *, size: int = 400, legend: str = "") -> bytes:
    """Draw the molecule coloured by its atom attributions (green positive, pink negative)."""
    from rdkit.Chem.Draw import SimilarityMaps, rdMolDraw2D

    draw = rdMolDraw2D.MolDraw2DCairo(size, size)
    w = [float(v) for v in weights]
    if not any(w):
        w = [0.0] * len(w)
    SimilarityMaps.GetSimilarityMapFromWeights(mol, w, draw2d=draw, legend=legend)
    draw.FinishDrawing()
    return draw.GetDrawingText()
