"""Molecule networks: a directed message-passing network (D-MPNN, Yang et al. 2019, as in
Chemprop) and a Morgan-count fingerprint MLP, each optionally with RDKit descriptors
concatenated to the learned representation; and an ensemble of either for uncertainty.

Both return (B, T) outputs for T tasks: standardised values for regression, logits for binary
classification. Inputs are the compact integer codes of ``featurizers.molecules``; embedding a
code is the same as multiplying its one-hot vector by a weight matrix.

Inference (under ``torch.inference_mode``) runs the D-MPNN on a :class:`MessagePlan`: directed
bonds whose state is the same by construction (same source atom, same bond, same incoming
states; the same up to the depth reached so far) are computed once, as are atoms with the same
final state. A library of drug-like molecules repeats the same local environments (an aromatic
C-C bond, a methyl) thousands of times, so a batch needs a few per cent of the matrix products.
Every distinct state is computed by the same formulas as the plain path (``W_h``, which has no
bias, is applied before the gather instead of after it); results agree to float rounding.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from medassist.featurizers.molecules import (
    ATOM_FIELDS,
    ATOM_OFFSETS,
    BOND_FIELDS,
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
    atom's input features; used by attributions), ``plan``: a :class:`MessagePlan` made once for
    the members of an ensemble (None: made when needed)."""

    atom_codes: torch.Tensor
    atom_mass: torch.Tensor
    edge_index: torch.Tensor
    bond_codes: torch.Tensor
    atom_batch: torch.Tensor
    n_mols: int
    descriptors: torch.Tensor | None = None
    atom_gate: torch.Tensor | None = None
    plan: MessagePlan | None = None


class MessagePlan(NamedTuple):
    """Which states of a graph batch are equal by construction (see :func:`message_plan`).

    ``depth``: the network depth it was made for. Index fields are int64 tensors. ``type_rep`` (Ta,): one atom of each atom type (codes and
    mass); ``edge_type`` (C0,): the type of the source atom of each class of initial bond
    message, ``edge_rep`` (C0,): one bond of each class. Per message-passing step ``steps[t]``:
    ``(in_class, in_target, n_targets, base, src_state, rev_class)``: incoming messages
    ``in_class`` summed into ``in_target`` (one representative atom per incoming-state class),
    then each new bond class is ``relu(h0[base] + W_h(into[src_state] - h[rev_class]))`` (computed
    as ``(W_h into)[src_state] - (W_h h)[rev_class]``: fewer rows to multiply).
    ``final``: ``(in_class, in_target, n_targets, atom_rep, atom_state)``: the incoming sums of
    the last step's atom classes, and one atom of each readout class (atom type and last incoming
    state) with its incoming-state class; and
    ``readout``: ``(mol, atom_class, count)`` (how many atoms of each class each molecule has).
    """

    depth: int
    type_rep: torch.Tensor
    edge_type: torch.Tensor
    edge_rep: torch.Tensor
    steps: tuple[tuple[torch.Tensor, torch.Tensor, int, torch.Tensor, torch.Tensor, torch.Tensor], ...]
    final: tuple[torch.Tensor, torch.Tensor, int, torch.Tensor, torch.Tensor]
    readout: tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _classes(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first position of each distinct key, class of every position)."""
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _pair(a: np.ndarray, b: np.ndarray, n_b: int) -> np.ndarray:
    return a.astype(np.int64) * np.int64(n_b) + b


def message_plan(atom_codes: np.ndarray, atom_mass: np.ndarray, edge_index: np.ndarray, bond_codes: np.ndarray,
                 atom_batch: np.ndarray, n_mols: int, depth: int) -> MessagePlan:
    """Group the bonds and atoms of a graph batch whose D-MPNN states are equal by construction.

    Two directed bonds share the initial message when their source atoms have the same codes and
    mass and the bonds the same codes; after step t they share the message when they shared it
    at step 0, their source atoms received the same multiset of step t-1 messages and their
    reverse bonds carried the same step t-1 message. The classes are exact (sorted integer keys,
    no hashing), so grouping never changes a value; the plan depends on the graph and ``depth``
    only, so the members of an ensemble share it.
    """
    src, dst = edge_index[0].astype(np.int64), edge_index[1].astype(np.int64)
    n_atoms, n_edges = len(atom_codes), len(src)
    key = np.zeros(n_atoms, dtype=np.int64)
    for j, (_, n) in enumerate(ATOM_FIELDS):
        key = key * n + atom_codes[:, j]
    key = (key << 32) | np.ascontiguousarray(atom_mass, dtype=np.float32).view(np.uint32).astype(np.int64)
    type_rep, atom_type = _classes(key)
    bkey = np.zeros(n_edges, dtype=np.int64)
    for j, (_, n) in enumerate(BOND_FIELDS):
        bkey = bkey * n + bond_codes[:, j]
    edge_rep, c0 = _classes(_pair(atom_type[src], bkey, int(np.prod([n for _, n in BOND_FIELDS]))))
    n_c0 = len(edge_rep)
    # incoming bonds of every atom, as rows of a padded (A, max in-degree) table
    order = np.argsort(dst, kind="stable")
    deg = np.bincount(dst, minlength=n_atoms)
    width = int(deg.max()) if n_edges else 0
    starts = np.concatenate([[0], np.cumsum(deg)[:-1]]) if n_atoms else np.zeros(0, np.int64)
    rows_in = dst[order]
    cols_in = np.arange(n_edges) - starts[rows_in]

    def multiset(c: np.ndarray, n_c: int) -> np.ndarray:
        """Class of every atom by the sorted multiset of its incoming bonds' classes."""
        table = np.full((n_atoms, width), n_c, dtype=np.int64)
        table[rows_in, cols_in] = c[order]
        table.sort(axis=1)
        ids = np.zeros(n_atoms, dtype=np.int64)
        for j in range(width):
            ids = _classes(_pair(ids, table[:, j], n_c + 1))[1]
        return ids

    def incoming(atom_class: np.ndarray, n_classes: int, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One atom per class, and the (class, target) pairs of the bonds coming into it."""
        rep = np.full(n_classes, -1, dtype=np.int64)
        rep[atom_class[::-1]] = np.arange(n_atoms - 1, -1, -1)  # the first atom of each class
        is_rep = np.zeros(n_atoms, dtype=bool)
        is_rep[rep] = True
        sel = is_rep[dst]
        return rep, c[sel], atom_class[dst[sel]]

    rev = np.arange(n_edges) ^ 1
    steps = []
    c, n_c = c0, n_c0
    for _ in range(depth - 1):
        alpha = multiset(c, n_c)
        n_alpha = int(alpha.max()) + 1 if n_atoms else 0
        _, in_class, in_target = incoming(alpha, n_alpha, c)
        first = _classes(_pair(c0, alpha[src], max(n_alpha, 1)))[1]
        rep, c_next = _classes(_pair(first, c[rev], max(n_c, 1)))
        steps.append((in_class, in_target, n_alpha, c0[rep], alpha[src[rep]], c[rep ^ 1]))
        c, n_c = c_next, len(rep)
    alpha = multiset(c, n_c)
    n_alpha = int(alpha.max()) + 1 if n_atoms else 0
    _, in_class, in_target = incoming(alpha, n_alpha, c)
    beta_rep, beta = _classes(_pair(atom_type, alpha, max(n_alpha, 1)))
    pair_first, pair = _classes(_pair(atom_batch, beta, max(len(beta_rep), 1)))
    count = np.bincount(pair, minlength=len(pair_first))
    t = torch.from_numpy
    return MessagePlan(
        depth=depth, type_rep=t(type_rep), edge_type=t(atom_type[src[edge_rep]]), edge_rep=t(edge_rep),
        steps=tuple((t(a), t(b), n, t(d), t(e), t(f)) for a, b, n, d, e, f in steps),
        final=(t(in_class), t(in_target), n_alpha, t(beta_rep), t(alpha[beta_rep])),
        readout=(t(atom_batch[pair_first].astype(np.int64)), t(beta[pair_first]), t(count)),
    )


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

    def _atoms(self, emb: nn.Embedding, mass: nn.Linear, codes: torch.Tensor, atom_mass: torch.Tensor,
               gate: torch.Tensor | None = None) -> torch.Tensor:
        # embedding_bag sums a row's 8 code embeddings without materialising (A, 8, H)
        x = nn.functional.embedding_bag(codes + self.atom_offsets, emb.weight, mode="sum") + mass(atom_mass.unsqueeze(1))
        return x if gate is None else x * gate.unsqueeze(1)

    def plan(self, g: GraphBatch) -> MessagePlan:
        """The :class:`MessagePlan` of ``g`` for this network's depth."""
        p = message_plan(g.atom_codes.cpu().numpy(), g.atom_mass.cpu().numpy(), g.edge_index.cpu().numpy(), g.bond_codes.cpu().numpy(),
                         g.atom_batch.cpu().numpy(), g.n_mols, self.depth)
        if g.atom_codes.device.type == "cpu":
            return p
        dev = g.atom_codes.device
        return p._replace(type_rep=p.type_rep.to(dev), edge_type=p.edge_type.to(dev), edge_rep=p.edge_rep.to(dev),
                          steps=tuple((a.to(dev), b.to(dev), n, d.to(dev), e.to(dev), f.to(dev)) for a, b, n, d, e, f in p.steps),
                          final=(p.final[0].to(dev), p.final[1].to(dev), p.final[2], p.final[3].to(dev), p.final[4].to(dev)),
                          readout=(p.readout[0].to(dev), p.readout[1].to(dev), p.readout[2].to(dev)))

    def uses_plan(self, g: GraphBatch) -> bool:
        """Inference on whole molecules runs on a :class:`MessagePlan` (training, gradients and
        atom gates take the plain path)."""
        return g.atom_gate is None and not self.training and torch.is_inference_mode_enabled()

    def _encode_plan(self, g: GraphBatch, p: MessagePlan) -> torch.Tensor:
        """``encode`` computing each distinct bond and atom state once (the plain path's formulas;
        equal to float rounding). Rows are gathered with ``index_select`` (a row copy; plain
        indexing goes through the slower general kernel)."""
        def rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return x.index_select(0, idx)

        x_type = self._atoms(self.atom_in, self.mass_in, rows(g.atom_codes, p.type_rep), rows(g.atom_mass, p.type_rep))
        x_bond = nn.functional.embedding_bag(rows(g.bond_codes, p.edge_rep) + self.bond_offsets, self.bond_in.weight, mode="sum")
        h0 = rows(x_type, p.edge_type) + x_bond + self.bias_in
        h = torch.relu(h0)
        width, dtype, dev = h.shape[1], h.dtype, h.device
        for in_class, in_target, n_targets, base, src_state, rev_class in p.steps:
            into = torch.zeros(n_targets, width, dtype=dtype, device=dev).index_add_(0, in_target, rows(h, in_class))
            # W_h (no bias) is linear: W_h(into[src] - h[rev]) = (W_h into)[src] - (W_h h)[rev], and
            # there are fewer atom and previous-step classes than new bond classes to multiply
            h = torch.relu(rows(h0, base) + rows(self.W_h(into), src_state) - rows(self.W_h(h), rev_class))
        in_class, in_target, n_targets, atom_rep, atom_state = p.final
        into = torch.zeros(n_targets, width, dtype=dtype, device=dev).index_add_(0, in_target, rows(h, in_class))
        atom_h = torch.relu(self._atoms(self.atom_out, self.mass_out, rows(g.atom_codes, atom_rep), rows(g.atom_mass, atom_rep))
                            + rows(self.W_o(into), atom_state))
        mol_of, atom_class, count = p.readout
        mol = torch.zeros(g.n_mols, width, dtype=dtype, device=dev).index_add_(0, mol_of, rows(atom_h, atom_class) * count.unsqueeze(1).to(dtype))
        if self.aggregation == "mean":
            counts = torch.bincount(g.atom_batch, minlength=g.n_mols).clamp(min=1).to(mol.dtype)
            mol = mol / counts.unsqueeze(1)
        return mol

    def encode(self, g: GraphBatch) -> torch.Tensor:
        """Molecule vectors (B, H) before descriptors and head."""
        if self.uses_plan(g):
            return self._encode_plan(g, g.plan if g.plan is not None and g.plan.depth == self.depth else self.plan(g))
        src, dst = g.edge_index[0], g.edge_index[1]
        n_atoms, n_edges = g.atom_codes.shape[0], src.shape[0]
        x_atom = self._atoms(self.atom_in, self.mass_in, g.atom_codes, g.atom_mass, g.atom_gate)
        x_bond = nn.functional.embedding_bag(g.bond_codes + self.bond_offsets, self.bond_in.weight, mode="sum")
        h0 = x_atom[src] + x_bond + self.bias_in
        h = torch.relu(h0)
        rev = torch.arange(n_edges, device=h.device) ^ 1
        for _ in range(self.depth - 1):
            into = torch.zeros(n_atoms, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, dst, h)
            m = into[src] - h[rev]
            h = self.dropout(torch.relu(h0 + self.W_h(m)))
        into = torch.zeros(n_atoms, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, dst, h)
        atom_h = self.dropout(torch.relu(self._atoms(self.atom_out, self.mass_out, g.atom_codes, g.atom_mass, g.atom_gate) + self.W_o(into)))
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
        first = self.members[0]
        if isinstance(x, GraphBatch) and x.plan is None and isinstance(first, DMPNN) and first.uses_plan(x):
            x = x._replace(plan=first.plan(x))  # one plan for every member: they share the graph and depth
        out = torch.stack([m(x) for m in self.members])
        return torch.sigmoid(out) if self.classification else out

    def forward(self, x: Any) -> torch.Tensor:
        out = self.member_outputs(x).mean(dim=0)
        return torch.logit(out.clamp(1e-6, 1 - 1e-6)) if self.classification else out


def mol_ensemble_spec(member_spec: dict[str, Any], n_members: int, *, classification: bool) -> dict[str, Any]:
    return {"name": "mol_ensemble", "size": member_spec["size"],
            "params": {"member": member_spec, "n_members": n_members, "classification": classification}}
