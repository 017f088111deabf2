"""Molecule networks: a directed message-passing network (D-MPNN, Yang et al. 2019, as in
Chemprop) and a Morgan-count fingerprint MLP, each optionally with RDKit descriptors
concatenated to the learned representation; and an ensemble of either for uncertainty.

Both return (B, T) outputs for T tasks: standardised values for regression, logits for binary
classification. Inputs are the compact integer codes of ``featurizers.molecules``; embedding a
code is the same as multiplying its one-hot vector by a weight matrix.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from medassist.featurizers.molecules import (
    ATOM_OFFSETS,
    BOND_OFFSETS,
    N_ATOM_CODES,
    N_BOND_CODES,
    GraphArrays,
    MoleculeFeatures,
    SparseCounts,
)
from medassist.models.registry import MODELS, model_from_spec


class GraphBatch(NamedTuple):
    """A batch of molecular graphs. Shapes: ``atom_codes`` (A, 8), ``atom_mass`` (A,),
    ``edge_index`` (2, E) with the reverse of edge e at e ^ 1, ``bond_codes`` (E, 4),
    ``atom_batch`` (A,), ``descriptors`` (B, D) or None, ``atom_gate`` (A,) or None (scales each
    atom's input features; used by attributions)."""

    atom_codes: torch.Tensor
    atom_mass: torch.Tensor
    edge_index: torch.Tensor
    bond_codes: torch.Tensor
    atom_batch: torch.Tensor
    n_mols: int
    descriptors: torch.Tensor | None = None
    atom_gate: torch.Tensor | None = None


class FingerprintBatch(NamedTuple):
    """A batch of sparse count fingerprints for ``nn.EmbeddingBag``: ``indices`` (nnz,),
    ``weights`` (nnz,) log(1 + count), ``offsets`` (B,), ``descriptors`` (B, D) or None."""

    indices: torch.Tensor
    weights: torch.Tensor
    offsets: torch.Tensor
    n_mols: int
    descriptors: torch.Tensor | None = None


def make_batch(features: MoleculeFeatures, idx: np.ndarray | torch.Tensor) -> GraphBatch | FingerprintBatch:
    """Collate molecules ``idx`` of ``features`` into the model input."""
    idx = np.asarray(idx.numpy() if torch.is_tensor(idx) else idx, dtype=np.int64)
    desc = None if features.descriptors is None else torch.from_numpy(np.ascontiguousarray(features.descriptors[idx]))
    s = features.structure
    if isinstance(s, GraphArrays):
        g = s.select(idx)
        return GraphBatch(
            atom_codes=torch.from_numpy(g["atom_codes"].astype(np.int64)), atom_mass=torch.from_numpy(g["atom_mass"]),
            edge_index=torch.from_numpy(g["edge_index"]), bond_codes=torch.from_numpy(g["bond_codes"].astype(np.int64)),
            atom_batch=torch.from_numpy(g["atom_batch"]), n_mols=len(idx), descriptors=desc,
        )
    if isinstance(s, SparseCounts):
        i, c, o = s.select(idx)
        return FingerprintBatch(indices=torch.from_numpy(i), weights=torch.from_numpy(c.astype(np.float32)),
                                offsets=torch.from_numpy(o), n_mols=len(idx), descriptors=desc)
    raise TypeError(f"Unknown molecule structure features: {type(s).__name__}")


def _ffn(d_in: int, d_hidden: int, n_layers: int, n_out: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(n_layers):
        layers += [nn.Dropout(dropout), nn.Linear(d, d_hidden), nn.ReLU()]
        d = d_hidden
    layers += [nn.Dropout(dropout), nn.Linear(d, n_out)]
    return nn.Sequential(*layers)


@MODELS.register("dmpnn")
class DMPNN(nn.Module):
    """Directed message passing on bonds (Chemprop's D-MPNN), mean readout, feed-forward head.

    Messages live on directed bonds: ``h0 = relu(W_i [x_atom(src), x_bond])``; each of
    ``depth - 1`` steps sums the messages into the source atom, removes the one coming back
    along the same bond and updates ``h = relu(h0 + W_h m)``. Atom states ``relu(W_o [x_atom,
    sum of incoming messages])`` are averaged per molecule; descriptors (if any) are appended
    before the head.

    Args:
        n_tasks: T outputs.
        n_descriptors: D descriptors concatenated to the molecule vector (0: none).
        hidden: message width H.
        depth: message-passing steps.
        ffn_hidden, ffn_layers: head width and hidden layers.
        dropout: dropout in message passing and head.
        aggregation: ``mean`` or ``sum`` over a molecule's atoms.

    Shapes: GraphBatch with B molecules → (B, T).
    """

    atom_offsets: torch.Tensor  # buffers (register_buffer in __init__)
    bond_offsets: torch.Tensor

    PRESETS = {
        "small": {"hidden": 300, "depth": 3, "ffn_hidden": 300, "ffn_layers": 1, "dropout": 0.0, "aggregation": "mean"},
        "large": {"hidden": 600, "depth": 4, "ffn_hidden": 600, "ffn_layers": 2, "dropout": 0.1, "aggregation": "mean"},
    }

    def __init__(self, *, n_tasks: int, n_descriptors: int = 0, hidden: int, depth: int, ffn_hidden: int, ffn_layers: int,
                 dropout: float, aggregation: str = "mean") -> None:
        super().__init__()
        if aggregation not in ("mean", "sum"):
            raise ValueError(f"aggregation must be 'mean' or 'sum'. Got {aggregation!r}.")
        self.depth, self.aggregation, self.n_descriptors = depth, aggregation, n_descriptors
        self.atom_in = nn.Embedding(N_ATOM_CODES, hidden)
        self.mass_in = nn.Linear(1, hidden, bias=False)
        self.bond_in = nn.Embedding(N_BOND_CODES, hidden)
        self.bias_in = nn.Parameter(torch.zeros(hidden))
        self.W_h = nn.Linear(hidden, hidden, bias=False)
        self.atom_out = nn.Embedding(N_ATOM_CODES, hidden)
        self.mass_out = nn.Linear(1, hidden, bias=False)
        self.W_o = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = _ffn(hidden + n_descriptors, ffn_hidden, ffn_layers, n_tasks, dropout)
        self.register_buffer("atom_offsets", torch.as_tensor(ATOM_OFFSETS), persistent=False)
        self.register_buffer("bond_offsets", torch.as_tensor(BOND_OFFSETS), persistent=False)

    def _atoms(self, emb: nn.Embedding, mass: nn.Linear, g: GraphBatch) -> torch.Tensor:
        # embedding_bag sums a row's 8 code embeddings without materialising (A, 8, H)
        x = nn.functional.embedding_bag(g.atom_codes + self.atom_offsets, emb.weight, mode="sum") + mass(g.atom_mass.unsqueeze(1))
        return x if g.atom_gate is None else x * g.atom_gate.unsqueeze(1)

    def encode(self, g: GraphBatch) -> torch.Tensor:
        """Molecule vectors (B, H) before descriptors and head."""
        src, dst = g.edge_index[0], g.edge_index[1]
        n_atoms, n_edges = g.atom_codes.shape[0], src.shape[0]
        x_atom = self._atoms(self.atom_in, self.mass_in, g)
        x_bond = nn.functional.embedding_bag(g.bond_codes + self.bond_offsets, self.bond_in.weight, mode="sum")
        h0 = x_atom[src] + x_bond + self.bias_in
        h = torch.relu(h0)
        rev = torch.arange(n_edges, device=h.device) ^ 1
        for _ in range(self.depth - 1):
            into = torch.zeros(n_atoms, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, dst, h)
            m = into[src] - h[rev]
            h = self.dropout(torch.relu(h0 + self.W_h(m)))
        into = torch.zeros(n_atoms, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, dst, h)
        atom_h = self.dropout(torch.relu(self._atoms(self.atom_out, self.mass_out, g) + self.W_o(into)))
        mol = torch.zeros(g.n_mols, atom_h.shape[1], dtype=atom_h.dtype, device=atom_h.device).index_add_(0, g.atom_batch, atom_h)
        if self.aggregation == "mean":
            counts = torch.bincount(g.atom_batch, minlength=g.n_mols).clamp(min=1).to(mol.dtype)
            mol = mol / counts.unsqueeze(1)
        return mol

    def forward(self, g: GraphBatch) -> torch.Tensor:
        z = self.encode(g)
        if self.n_descriptors:
            if g.descriptors is None:
                raise ValueError(f"This model takes {self.n_descriptors} descriptors per molecule; the batch has none.")
            z = torch.cat([z, g.descriptors], dim=1)
        return self.head(z)


@MODELS.register("fpmlp")
class FingerprintMLP(nn.Module):
    """MLP on Morgan count fingerprints (sparse: the first layer is an ``EmbeddingBag`` over the
    set bits weighted by log(1 + count)), optionally with descriptors added to the first layer.

    Args:
        n_tasks: T outputs.
        n_bits: fingerprint length.
        n_descriptors: D descriptors (0: none).
        hidden, n_layers, dropout: MLP width, hidden layers after the first, dropout.

    Shapes: FingerprintBatch with B molecules → (B, T).
    """

    PRESETS = {
        "small": {"hidden": 256, "n_layers": 1, "dropout": 0.2},
        "large": {"hidden": 1024, "n_layers": 2, "dropout": 0.2},
    }

    def __init__(self, *, n_tasks: int, n_bits: int = 2048, n_descriptors: int = 0, hidden: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.n_descriptors = n_descriptors
        self.fp_in = nn.EmbeddingBag(n_bits, hidden, mode="sum")
        self.desc_in = nn.Linear(n_descriptors, hidden, bias=False) if n_descriptors else None
        self.bias_in = nn.Parameter(torch.zeros(hidden))
        self.head = _ffn(hidden, hidden, n_layers, n_tasks, dropout)
        self.act = nn.ReLU()

    def forward(self, x: FingerprintBatch) -> torch.Tensor:
        z = self.fp_in(x.indices, x.offsets, per_sample_weights=x.weights) + self.bias_in
        if self.desc_in is not None:
            z = z + self.desc_in(x.descriptors)
        return self.head(self.act(z))


@MODELS.register("mol_ensemble")
class MoleculeEnsemble(nn.Module):
    """K members built from one spec. ``forward`` is the ensemble's output in the members' output
    space: the mean (regression) or the logit of the mean probability (classification).

    Shapes: input with B molecules → (B, T); ``member_outputs`` → (K, B, T) (values or
    probabilities).
    """

    PRESETS: dict[str, dict[str, Any]] = {"small": {}, "large": {}}

    def __init__(self, *, member: dict[str, Any], n_members: int, classification: bool) -> None:
        super().__init__()
        self.classification = classification
        self.members = nn.ModuleList([model_from_spec(member) for _ in range(n_members)])

    def member_outputs(self, x: Any) -> torch.Tensor:
        out = torch.stack([m(x) for m in self.members])
        return torch.sigmoid(out) if self.classification else out

    def forward(self, x: Any) -> torch.Tensor:
        out = self.member_outputs(x).mean(dim=0)
        return torch.logit(out.clamp(1e-6, 1 - 1e-6)) if self.classification else out


def mol_ensemble_spec(member_spec: dict[str, Any], n_members: int, *, classification: bool) -> dict[str, Any]:
    return {"name": "mol_ensemble", "size": member_spec["size"],
            "params": {"member": member_spec, "n_members": n_members, "classification": classification}}
