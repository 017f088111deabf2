"""Molecule featurizers: Morgan count fingerprints, RDKit 2D descriptors and molecular graphs.

Everything here works on RDKit molecules and numpy only (no torch), so library screening can
run it in worker processes. Graphs and fingerprints are stored compactly as integer codes:

* :class:`MolGraphFeaturizer` gives each atom a row of category codes (element, degree, charge,
  chirality, hydrogens, hybridisation, aromaticity, ring membership) plus its mass, and each bond
  a row of codes (type, conjugation, ring, stereo). A model embeds the codes, which is the same
  as multiplying one-hot vectors by a weight matrix, at a fraction of the memory.
* :class:`MorganCountFeaturizer` gives each molecule its non-zero (bit, count) pairs.
* :class:`RDKitDescriptorFeaturizer` computes RDKit 2D descriptors; it is fitted on the training
  split only (median imputation of failures, a signed log for heavy-tailed descriptors,
  standardisation) and counts the imputed values per molecule.

:class:`MoleculeFeaturizer` ("molecule") bundles the standardiser, the structure featurizer and
the optional descriptors: it is what a screening bundle stores as its ``featurizer.json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from medassist.data.io.molecules import MoleculeStandardizer
from medassist.exceptions import ConfigError, DataError, NotFittedError
from medassist.featurizers.registry import FEATURIZERS

# --------------------------------------------------------------------------- graphs

#: Elements with their own code (H..Kr and I, as Chemprop); everything else shares one.
ELEMENTS = list(range(1, 37)) + [53]
_ELEMENT_CODE = {z: i for i, z in enumerate(ELEMENTS)}
_HYBRID_NAMES = ["S", "SP", "SP2", "SP2D", "SP3", "SP3D", "SP3D2"]

#: (name, number of codes) per atom field, in column order; the last code of each is "other".
ATOM_FIELDS: list[tuple[str, int]] = [
    ("element", len(ELEMENTS) + 1), ("degree", 7), ("formal_charge", 6), ("chirality", 5),
    ("num_hs", 6), ("hybridization", len(_HYBRID_NAMES) + 1), ("aromatic", 2), ("in_ring", 2),
]
BOND_FIELDS: list[tuple[str, int]] = [("bond_type", 5), ("conjugated", 2), ("in_ring", 2), ("stereo", 7)]
_CHARGE_CODE = {0: 0, 1: 1, -1: 2, 2: 3, -2: 4}


def _offsets(fields: list[tuple[str, int]]) -> np.ndarray:
    return np.cumsum([0] + [n for _, n in fields[:-1]]).astype(np.int64)


ATOM_OFFSETS = _offsets(ATOM_FIELDS)
BOND_OFFSETS = _offsets(BOND_FIELDS)
N_ATOM_CODES = int(sum(n for _, n in ATOM_FIELDS))
N_BOND_CODES = int(sum(n for _, n in BOND_FIELDS))


@dataclass
class MolGraph:
    """One molecule as a directed graph (each bond gives two edges, stored next to each other,
    so the reverse of edge ``e`` is ``e ^ 1``).

    Shapes: ``atom_codes`` (A, 8) int16, ``atom_mass`` (A,) float32, ``edge_index`` (2, E) int32
    (source, destination), ``bond_codes`` (E, 4) int8.
    """

    atom_codes: np.ndarray
    atom_mass: np.ndarray
    edge_index: np.ndarray
    bond_codes: np.ndarray

    @property
    def n_atoms(self) -> int:
        return len(self.atom_codes)


_LOOKUPS: dict[str, np.ndarray] = {}


def _lookups() -> dict[str, np.ndarray]:
    """Integer lookup tables from RDKit's raw values to feature codes (built once)."""
    if not _LOOKUPS:
        from rdkit.Chem import rdchem

        el = np.full(256, len(ELEMENTS), dtype=np.int16)
        for z, code in _ELEMENT_CODE.items():
            el[z] = code
        hyb = np.full(64, len(_HYBRID_NAMES), dtype=np.int16)
        for i, name in enumerate(_HYBRID_NAMES):
            h = getattr(rdchem.HybridizationType, name, None)
            if h is not None:
                hyb[int(h)] = i
        charge = np.full(21, 5, dtype=np.int16)  # formal charge + 10
        for c, code in _CHARGE_CODE.items():
            charge[c + 10] = code
        bt = np.full(64, 4, dtype=np.int8)
        for i, name in enumerate(("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")):
            bt[int(getattr(rdchem.BondType, name))] = i
        _LOOKUPS.update(element=el, hybridization=hyb, charge=charge, bond_type=bt)
    return _LOOKUPS


def mol_to_graph(mol: Any) -> MolGraph:
    """Featurize one RDKit molecule (hydrogens implicit) into a :class:`MolGraph`."""
    g = graph_arrays([mol])
    return MolGraph(atom_codes=g.atom_codes, atom_mass=g.atom_mass, edge_index=g.edge_index, bond_codes=g.bond_codes)


def graph_arrays(mols: list[Any]) -> GraphArrays:
    """Featurize RDKit molecules (hydrogens implicit) into one :class:`GraphArrays`.

    RDKit is asked once per atom and bond for raw integers, gathered for the whole list; the
    codes come from numpy lookup tables applied once to all of them (this loop dominates the
    cost of building graphs, so it does nothing else per molecule).
    """
    lk = _lookups()
    atoms: list[tuple] = []
    bonds: list[tuple] = []
    n_atoms = np.zeros(len(mols) + 1, dtype=np.int64)
    n_bonds = np.zeros(len(mols) + 1, dtype=np.int64)
    for k, mol in enumerate(mols):
        na, nb = mol.GetNumAtoms(), mol.GetNumBonds()
        n_atoms[k + 1], n_bonds[k + 1] = na, nb
        # map(GetAtomWithIdx) skips the Python wrappers of mol.GetAtoms() (a fifth of the time)
        atoms += [(a.GetAtomicNum(), a.GetTotalDegree(), a.GetFormalCharge(), int(a.GetChiralTag()), a.GetTotalNumHs(),
                   int(a.GetHybridization()), a.GetIsAromatic(), a.IsInRing(), a.GetMass()) for a in map(mol.GetAtomWithIdx, range(na))]
        bonds += [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), int(b.GetBondType()), b.GetIsConjugated(), b.IsInRing(), int(b.GetStereo()))
                  for b in map(mol.GetBondWithIdx, range(nb))]
    raw = np.array(atoms, dtype=np.float64).reshape(-1, 9)
    zi = raw[:, 0].astype(np.int64)
    codes = np.column_stack([
        lk["element"][np.clip(zi, 0, 255)], np.minimum(raw[:, 1], 6), lk["charge"][np.clip(raw[:, 2].astype(np.int64) + 10, 0, 20)],
        np.minimum(raw[:, 3], 4), np.minimum(raw[:, 4], 5), lk["hybridization"][np.clip(raw[:, 5].astype(np.int64), 0, 63)],
        raw[:, 6], raw[:, 7],
    ]).astype(np.int16).reshape(-1, len(ATOM_FIELDS))
    braw = np.array(bonds, dtype=np.int64).reshape(-1, 6)
    bcodes = np.column_stack([lk["bond_type"][np.clip(braw[:, 2], 0, 63)], braw[:, 3], braw[:, 4], np.minimum(braw[:, 5], 6)]
                             ).astype(np.int8).reshape(-1, len(BOND_FIELDS))
    edge = np.empty((2, 2 * len(braw)), dtype=np.int32)
    edge[0, 0::2], edge[1, 0::2] = braw[:, 0], braw[:, 1]
    edge[0, 1::2], edge[1, 1::2] = braw[:, 1], braw[:, 0]
    return GraphArrays(atom_codes=codes, atom_mass=(raw[:, 8] * 0.01).astype(np.float32), edge_index=edge,
                       bond_codes=np.repeat(bcodes, 2, axis=0), atom_ptr=np.cumsum(n_atoms), edge_ptr=2 * np.cumsum(n_bonds))


@dataclass
class GraphArrays:
    """Many graphs concatenated (CSR-like): molecule ``i`` owns atoms ``atom_ptr[i]:atom_ptr[i+1]``
    and edges ``edge_ptr[i]:edge_ptr[i+1]``; edge atom indices are local to their molecule."""

    atom_codes: np.ndarray
    atom_mass: np.ndarray
    edge_index: np.ndarray
    bond_codes: np.ndarray
    atom_ptr: np.ndarray
    edge_ptr: np.ndarray

    def __len__(self) -> int:
        return len(self.atom_ptr) - 1

    @classmethod
    def from_graphs(cls, graphs: list[MolGraph]) -> GraphArrays:
        a = np.zeros(len(graphs) + 1, dtype=np.int64)
        e = np.zeros(len(graphs) + 1, dtype=np.int64)
        a[1:] = np.cumsum([g.n_atoms for g in graphs])
        e[1:] = np.cumsum([g.edge_index.shape[1] for g in graphs])

        def cat(xs: list[np.ndarray], shape: tuple[int, ...], dt: type[np.generic]) -> np.ndarray:
            return np.concatenate(xs) if xs else np.zeros(shape, dtype=dt)

        return cls(
            atom_codes=cat([g.atom_codes for g in graphs], (0, len(ATOM_FIELDS)), np.int16),
            atom_mass=cat([g.atom_mass for g in graphs], (0,), np.float32),
            edge_index=np.concatenate([g.edge_index for g in graphs], axis=1) if graphs else np.zeros((2, 0), np.int32),
            bond_codes=cat([g.bond_codes for g in graphs], (0, len(BOND_FIELDS)), np.int8),
            atom_ptr=a, edge_ptr=e,
        )

    def select(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Collate molecules ``idx`` into one batch graph (global atom numbering).

        Returns arrays: ``atom_codes`` (A, 8), ``atom_mass`` (A,), ``edge_index`` (2, E),
        ``bond_codes`` (E, 4), ``atom_batch`` (A,) molecule position in the batch.
        """
        idx = np.asarray(idx, dtype=np.int64)
        a0, a1 = self.atom_ptr[idx], self.atom_ptr[idx + 1]
        e0, e1 = self.edge_ptr[idx], self.edge_ptr[idx + 1]
        na, ne = a1 - a0, e1 - e0
        atom_sel = _ranges(a0, na)
        edge_sel = _ranges(e0, ne)
        new_start = np.concatenate([[0], np.cumsum(na)[:-1]])
        shift = np.repeat(new_start, ne)
        return {
            "atom_codes": self.atom_codes[atom_sel], "atom_mass": self.atom_mass[atom_sel],
            "edge_index": self.edge_index[:, edge_sel].astype(np.int64) + shift,
            "bond_codes": self.bond_codes[edge_sel], "atom_batch": np.repeat(np.arange(len(idx)), na),
        }


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for each (s, n), without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    out = np.ones(total, dtype=np.int64)
    ends = np.cumsum(lengths)
    nz = lengths > 0
    first = np.concatenate([[0], ends[:-1]])[nz]
    out[first[0]] = starts[nz][0]
    if len(first) > 1:
        prev_end = (starts[nz] + lengths[nz])[:-1]
        out[first[1:]] = starts[nz][1:] - prev_end + 1
    return np.cumsum(out)


@FEATURIZERS.register("molgraph")
class MolGraphFeaturizer:
    """Molecular graphs for the D-MPNN (stateless: nothing to fit)."""

    def fit(self, mols: list[Any]) -> MolGraphFeaturizer:
        self.n_atom_codes_, self.n_bond_codes_ = N_ATOM_CODES, N_BOND_CODES
        return self

    def transform(self, mols: list[Any]) -> GraphArrays:
        return graph_arrays(mols)

    def to_dict(self) -> dict[str, Any]:
        return {"name": "molgraph", "params": {}, "state": {"atom_fields": ATOM_FIELDS, "bond_fields": BOND_FIELDS}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MolGraphFeaturizer:
        if [list(f) for f in d["state"]["atom_fields"]] != [list(f) for f in ATOM_FIELDS] or \
                [list(f) for f in d["state"]["bond_fields"]] != [list(f) for f in BOND_FIELDS]:
            raise ConfigError("The saved molecular-graph features differ from this medassist version's; retrain the model.")
        return cls().fit([])


# --------------------------------------------------------------------------- fingerprints


@dataclass
class SparseCounts:
    """Sparse count vectors, CSR: molecule ``i`` has ``indices[ptr[i]:ptr[i+1]]`` with ``counts``."""

    indices: np.ndarray
    counts: np.ndarray
    ptr: np.ndarray

    def __len__(self) -> int:
        return len(self.ptr) - 1

    def select(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indices, counts, offsets) of molecules ``idx``, ready for an ``EmbeddingBag``."""
        idx = np.asarray(idx, dtype=np.int64)
        s, n = self.ptr[idx], self.ptr[idx + 1] - self.ptr[idx]
        sel = _ranges(s, n)
        offsets = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
        return self.indices[sel].astype(np.int64), self.counts[sel], offsets

    def dense(self, n_bits: int) -> np.ndarray:
        out = np.zeros((len(self), n_bits), dtype=np.float32)
        rows = np.repeat(np.arange(len(self)), np.diff(self.ptr))
        out[rows, self.indices] = self.counts
        return out

    @classmethod
    def concat(cls, parts: list[SparseCounts]) -> SparseCounts:
        ptr = [np.zeros(1, dtype=np.int64)]
        base = 0
        for p in parts:
            ptr.append(p.ptr[1:] + base)
            base += int(p.ptr[-1])
        return cls(np.concatenate([p.indices for p in parts]) if parts else np.zeros(0, np.int32),
                   np.concatenate([p.counts for p in parts]) if parts else np.zeros(0, np.float32), np.concatenate(ptr))


_BINARY_COUNTS: list[bool] = []


def _binary_counts_readable(gen: Any) -> bool:
    """Whether this RDKit's binary count fingerprints read back as ``GetNonzeroElements`` says
    (checked once per process on a molecule with repeated environments)."""
    if not _BINARY_COUNTS:
        from rdkit import Chem

        fp = gen.GetCountFingerprint(Chem.MolFromSmiles("CC(C)(C)c1ccc(O)cc1C(=O)NCCCl"))
        packed = _counts_from_binary([fp.ToBinary()])
        nz = fp.GetNonzeroElements()
        _BINARY_COUNTS.append(packed is not None and packed.indices.tolist() == list(nz)
                              and np.array_equal(packed.counts, np.log1p(np.asarray(list(nz.values()), dtype=np.float32))))
    return _BINARY_COUNTS[0]


def _counts_from_binary(parts: list[bytes]) -> SparseCounts | None:
    """Sparse counts from RDKit's binary form of ``UIntSparseIntVect``s (one numpy pass instead of
    a Python dict per molecule): four int32 words (version 1, index size 4, length, number of
    entries), then (index uint32, count int32) pairs in increasing index order, as
    ``GetNonzeroElements`` lists them. None when the bytes do not have that layout (another
    RDKit), so the caller reads the dicts instead."""
    n = len(parts)
    lens = np.fromiter(map(len, parts), dtype=np.int64, count=n)
    if n == 0 or (lens < 16).any() or ((lens - 16) % 8).any():
        return None if n else SparseCounts(np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(1, np.int64))
    words = np.frombuffer(b"".join(parts), dtype=np.uint32)
    head = (np.cumsum(lens // 4) - lens // 4)[:, None] + np.arange(4)
    nnz = (lens - 16) // 8
    h = words[head]
    if not ((h[:, 0] == 1) & (h[:, 1] == 4) & (h[:, 3] == nnz)).all():
        return None
    body = np.ones(len(words), dtype=bool)
    body[head.ravel()] = False
    pairs = words[body].reshape(-1, 2)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(nnz, out=ptr[1:])
    return SparseCounts(pairs[:, 0].astype(np.int32), np.log1p(pairs[:, 1].view(np.int32).astype(np.float32)), ptr)


@FEATURIZERS.register("morgan_counts")
class MorganCountFeaturizer:
    """Morgan (ECFP-like) count fingerprints folded to ``n_bits``; counts enter as log(1 + c).

    Args:
        radius: Morgan radius (2 gives ECFP4-like environments).
        n_bits: folded length.
    """

    def __init__(self, *, radius: int = 2, n_bits: int = 2048) -> None:
        self.radius = radius
        self.n_bits = n_bits
        self._gen = None

    def _generator(self):
        if self._gen is None:
            from rdkit.Chem import rdFingerprintGenerator

            self._gen = rdFingerprintGenerator.GetMorganGenerator(radius=self.radius, fpSize=self.n_bits)
        return self._gen

    def fit(self, mols: list[Any]) -> MorganCountFeaturizer:
        self.fitted_ = True
        return self

    def counts(self, mol: Any) -> dict[int, int]:
        return self._generator().GetCountFingerprint(mol).GetNonzeroElements()

    def transform(self, mols: Iterable[Any]) -> SparseCounts:
        """Fingerprints of ``mols`` (any iterable, read once: a generator's molecules can be
        freed as soon as they are fingerprinted)."""
        gen = self._generator()
        if _binary_counts_readable(gen):
            packed = _counts_from_binary([gen.GetCountFingerprint(m).ToBinary() for m in mols])
            if packed is None:
                raise RuntimeError("RDKit's binary fingerprints changed layout between molecules (a bug in medassist).")
            return packed
        idx: list[int] = []
        val: list[int] = []
        ptr = [0]
        for m in mols:
            nz = gen.GetCountFingerprint(m).GetNonzeroElements()
            idx.extend(nz.keys())
            val.extend(nz.values())
            ptr.append(len(idx))
        return SparseCounts(np.asarray(idx, dtype=np.int32), np.log1p(np.asarray(val, dtype=np.float32)), np.asarray(ptr, dtype=np.int64))

    def bit_atoms(self, mol: Any) -> dict[int, list[int]]:
        """For explanations: the atoms of every environment that set each bit."""
        from rdkit import Chem
        from rdkit.Chem import rdFingerprintGenerator

        ao = rdFingerprintGenerator.AdditionalOutput()
        ao.AllocateBitInfoMap()
        self._generator().GetCountFingerprint(mol, additionalOutput=ao)
        out: dict[int, list[int]] = {}
        for bit, envs in ao.GetBitInfoMap().items():
            atoms: list[int] = []
            for center, radius in envs:
                if radius == 0:
                    atoms.append(center)
                    continue
                bond_ids = Chem.FindAtomEnvironmentOfRadiusN(mol, radius, center)
                env = {center}
                for b in bond_ids:
                    bond = mol.GetBondWithIdx(b)
                    env.update((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))
                atoms.extend(sorted(env))
            out[int(bit)] = atoms
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": "morgan_counts", "params": {"radius": self.radius, "n_bits": self.n_bits}, "state": {}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MorganCountFeaturizer:
        return cls(**d["params"]).fit([])


def morgan_bits(mols: list[Any], *, radius: int = 2, n_bits: int = 2048) -> np.ndarray:
    """Packed Morgan bit fingerprints (N, n_bits / 8) uint8, for Tanimoto similarity."""
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(mols), n_bits // 8), dtype=np.uint8)
    for i, m in enumerate(mols):
        out[i] = np.packbits(gen.GetFingerprintAsNumPy(m).astype(bool))
    return out


# --------------------------------------------------------------------------- descriptors

#: The ``fast`` preset: size, lipophilicity and molar refractivity (Crippen), polarity, H-bonding,
#: rings, shape, and the charge/logP/MR-binned surface areas. Computed with RDKit's bulk
#: functions (one call for all 14 PEOE_VSA bins, ...), about 1 ms per drug-sized molecule; the
#: full set costs 5-10 ms (QED, BCUT2D, Ipc, BertzCT, E-state indices, 85 fragment counts).
FAST_DESCRIPTORS = (
    "MolWt", "HeavyAtomMolWt", "MolLogP", "MolMR", "TPSA", "LabuteASA", "NumHDonors", "NumHAcceptors",
    "NumRotatableBonds", "RingCount", "NumAromaticRings", "NumAliphaticRings", "NumSaturatedRings",
    "NumAromaticHeterocycles", "NumAromaticCarbocycles", "NumAliphaticHeterocycles", "FractionCSP3",
    "HeavyAtomCount", "NHOHCount", "NOCount", "NumHeteroatoms", "Kappa1", "Kappa2", "HallKierAlpha",
    *(f"PEOE_VSA{i}" for i in range(1, 15)), *(f"SMR_VSA{i}" for i in range(1, 11)),
    *(f"SlogP_VSA{i}" for i in range(1, 13)),
)


def fast_descriptor_vector(mol: Any) -> list[float]:
    """The :data:`FAST_DESCRIPTORS` of one molecule, in that order (same values as RDKit's
    ``Descriptors`` functions of those names)."""
    from rdkit.Chem import Descriptors
    from rdkit.Chem import rdMolDescriptors as R

    logp, mr = R.CalcCrippenDescriptors(mol)
    return [
        Descriptors.MolWt(mol),  # type: ignore[attr-defined]  # rdkit-stubs omit MolWt (a lambda set at import)
        Descriptors.HeavyAtomMolWt(mol), logp, mr, R.CalcTPSA(mol), R.CalcLabuteASA(mol),
        R.CalcNumHBD(mol), R.CalcNumHBA(mol), R.CalcNumRotatableBonds(mol), R.CalcNumRings(mol), R.CalcNumAromaticRings(mol),
        R.CalcNumAliphaticRings(mol), R.CalcNumSaturatedRings(mol), R.CalcNumAromaticHeterocycles(mol),
        R.CalcNumAromaticCarbocycles(mol), R.CalcNumAliphaticHeterocycles(mol), R.CalcFractionCSP3(mol), mol.GetNumHeavyAtoms(),
        R.CalcNumLipinskiHBD(mol), R.CalcNumLipinskiHBA(mol), R.CalcNumHeteroatoms(mol), R.CalcKappa1(mol), R.CalcKappa2(mol),
        R.CalcHallKierAlpha(mol), *R.PEOE_VSA_(mol), *R.SMR_VSA_(mol), *R.SlogP_VSA_(mol),
    ]


#: Descriptors never used: ``qed`` is reported beside a score, not learned from (and is slow).
_EXCLUDED = {"qed"}
#: Standardised values are clipped to this many standard deviations.
CLIP_Z = 6.0


def descriptor_names(preset: str) -> list[str]:
    from rdkit.Chem import Descriptors

    available = [n for n, _ in Descriptors._descList if n not in _EXCLUDED]
    if preset == "fast":
        missing = [n for n in FAST_DESCRIPTORS if n not in available]
        return [n for n in FAST_DESCRIPTORS if n not in missing]
    if preset == "all":
        return available
    raise ConfigError(f"The 'descriptors' parameter must be 'fast' or 'all'. Got {preset!r} instead.")


@FEATURIZERS.register("rdkit2d")
class RDKitDescriptorFeaturizer:
    """RDKit 2D descriptors, fitted on the training molecules.

    Args:
        preset: ``fast`` (60 cheap descriptors) or ``all`` (every RDKit 2D descriptor
            except QED).

    Fitting learns, per descriptor: the median (for values RDKit cannot compute), whether to
    take a signed log (a range over 1e3), mean and scale. ``transform`` returns the standardised
    matrix (N, D) float32 and the number of imputed values per molecule; input molecules are
    never changed.
    """

    def __init__(self, *, preset: str = "fast") -> None:
        self.preset = preset

    def _raw(self, mols: list[Any], names: list[str]) -> np.ndarray:
        from rdkit import rdBase
        from rdkit.Chem import Descriptors

        funcs = dict(Descriptors._descList)
        out = np.empty((len(mols), len(names)), dtype=np.float64)
        with rdBase.BlockLogs():
            if self.preset == "fast":
                full = np.empty((len(mols), len(FAST_DESCRIPTORS)), dtype=np.float64)
                for i, m in enumerate(mols):
                    try:
                        full[i] = fast_descriptor_vector(m)
                    except Exception:  # noqa: BLE001 (imputed and counted, as below)
                        full[i] = np.nan
                out = full[:, [FAST_DESCRIPTORS.index(n) for n in names]]
                out[~np.isfinite(out)] = np.nan
                return out
            for i, m in enumerate(mols):
                for j, n in enumerate(names):
                    try:
                        out[i, j] = funcs[n](m)
                    except Exception:  # noqa: BLE001 (RDKit fails on odd molecules; imputed and counted)
                        out[i, j] = np.nan
        out[~np.isfinite(out)] = np.nan
        return out

    def fit(self, mols: list[Any]) -> RDKitDescriptorFeaturizer:
        if not mols:
            raise DataError("No molecules to fit the descriptor featurizer on.")
        names = descriptor_names(self.preset)
        x = self._raw(mols, names)
        keep = [j for j in range(x.shape[1]) if np.isfinite(x[:, j]).any()]
        x = x[:, keep]
        self.names_ = [names[j] for j in keep]
        self.median_ = np.nanmedian(x, axis=0).tolist()
        self.log_ = [bool(np.nanmax(np.abs(x[:, j])) > 1e3) for j in range(x.shape[1])]
        z = self._prescale(np.where(np.isnan(x), np.asarray(self.median_), x))
        self.mean_ = z.mean(axis=0).tolist()
        sd = z.std(axis=0)
        self.scale_ = np.where(sd > 1e-9, sd, 1.0).tolist()
        return self

    def _prescale(self, x: np.ndarray) -> np.ndarray:
        logm = np.asarray(self.log_, dtype=bool)
        x = x.copy()
        x[:, logm] = np.sign(x[:, logm]) * np.log1p(np.abs(x[:, logm]))
        return x

    def _check_fitted(self) -> None:
        if not hasattr(self, "names_"):
            raise NotFittedError("This RDKitDescriptorFeaturizer is not fitted yet; call fit() on the training molecules first.")

    def transform(self, mols: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(standardised descriptors (N, D) float32, imputed values per molecule (N,) int)."""
        self._check_fitted()
        x = self._raw(mols, self.names_)
        miss = np.isnan(x)
        x = np.where(miss, np.asarray(self.median_), x)
        z = (self._prescale(x) - np.asarray(self.mean_)) / np.asarray(self.scale_)
        return np.clip(z, -CLIP_Z, CLIP_Z).astype(np.float32), miss.sum(axis=1)

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {"name": "rdkit2d", "params": {"preset": self.preset},
                "state": {"names_": self.names_, "median_": self.median_, "log_": self.log_, "mean_": self.mean_, "scale_": self.scale_}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RDKitDescriptorFeaturizer:
        obj = cls(**d["params"])
        for k, v in d["state"].items():
            setattr(obj, k, v)
        from rdkit.Chem import Descriptors

        unknown = sorted(set(obj.names_) - {n for n, _ in Descriptors._descList})
        if unknown:
            raise ConfigError(f"The model uses RDKit descriptors this RDKit does not have ({', '.join(unknown[:5])}); use a matching RDKit.")
        return obj


# --------------------------------------------------------------------------- the bundle's featurizer


@dataclass
class MoleculeFeatures:
    """Features of a list of molecules: ``structure`` (GraphArrays or SparseCounts), optional
    standardised ``descriptors`` (N, D) and imputed descriptor values per molecule (N,)."""

    structure: Any
    descriptors: np.ndarray | None
    n_imputed: np.ndarray

    def __len__(self) -> int:
        return len(self.structure)


@FEATURIZERS.register("molecule")
class MoleculeFeaturizer:
    """Standardiser + structure featurizer (``graph`` or ``morgan``) + optional descriptors.

    Args:
        structure: ``graph`` (for the D-MPNN) or ``morgan`` (for the fingerprint MLP).
        descriptors: None, ``fast`` or ``all`` (RDKit 2D descriptors concatenated).
        radius, n_bits: Morgan settings (``morgan`` only).
        standardizer: :class:`MoleculeStandardizer` settings as a dict.
    """

    def __init__(self, *, structure: str = "graph", descriptors: str | None = None, radius: int = 2, n_bits: int = 2048,
                 standardizer: dict[str, Any] | None = None) -> None:
        if structure not in ("graph", "morgan"):
            raise ConfigError(f"The 'structure' parameter of MoleculeFeaturizer must be 'graph' or 'morgan'. Got {structure!r} instead.")
        if descriptors not in (None, "fast", "all"):
            raise ConfigError(f"The 'descriptors' parameter of MoleculeFeaturizer must be None, 'fast' or 'all'. Got {descriptors!r} instead.")
        self.structure = structure
        self.descriptors = descriptors
        self.radius = radius
        self.n_bits = n_bits
        self.standardizer = dict(standardizer or MoleculeStandardizer().to_dict())

    def make_standardizer(self) -> MoleculeStandardizer:
        return MoleculeStandardizer.from_dict(self.standardizer)

    def _structure(self):
        return MolGraphFeaturizer().fit([]) if self.structure == "graph" else MorganCountFeaturizer(radius=self.radius, n_bits=self.n_bits).fit([])

    def fit(self, mols: list[Any]) -> MoleculeFeaturizer:
        self.structure_ = self._structure()
        self.descriptor_ = RDKitDescriptorFeaturizer(preset=self.descriptors).fit(mols) if self.descriptors else None
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "structure_"):
            raise NotFittedError("This MoleculeFeaturizer is not fitted yet; call fit() on the training molecules first.")

    @property
    def n_descriptors(self) -> int:
        self._check_fitted()
        return 0 if self.descriptor_ is None else len(self.descriptor_.names_)

    @property
    def single_pass(self) -> bool:
        """Whether ``transform`` reads its molecules once (fingerprints alone), so it can take a
        generator and a screen never holds a whole chunk of molecules."""
        self._check_fitted()
        return self.descriptor_ is None and isinstance(self.structure_, MorganCountFeaturizer)

    def transform(self, mols: Iterable[Any]) -> MoleculeFeatures:
        """Features of ``mols``: a list, or any iterable when :attr:`single_pass`."""
        self._check_fitted()
        if self.single_pass:
            structure = self.structure_.transform(mols)
            return MoleculeFeatures(structure, None, np.zeros(len(structure), dtype=np.int64))
        mols = mols if isinstance(mols, list) else list(mols)
        structure = self.structure_.transform(mols)
        if self.descriptor_ is None:
            return MoleculeFeatures(structure, None, np.zeros(len(mols), dtype=np.int64))
        desc, n_imp = self.descriptor_.transform(mols)
        return MoleculeFeatures(structure, desc, n_imp)

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "name": "molecule",
            "params": {"structure": self.structure, "descriptors": self.descriptors, "radius": self.radius, "n_bits": self.n_bits,
                       "standardizer": self.standardizer},
            "state": {"structure_": self.structure_.to_dict(), "descriptor_": None if self.descriptor_ is None else self.descriptor_.to_dict()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MoleculeFeaturizer:
        obj = cls(**d["params"])
        s = d["state"]
        obj.structure_ = FEATURIZERS.get(s["structure_"]["name"]).from_dict(s["structure_"])
        obj.descriptor_ = None if s["descriptor_"] is None else RDKitDescriptorFeaturizer.from_dict(s["descriptor_"])
        return obj


def concat_features(parts: list[MoleculeFeatures]) -> MoleculeFeatures:
    """Join the features of consecutive chunks (as worker processes return them)."""
    first = parts[0].structure
    structure: SparseCounts | GraphArrays
    if isinstance(first, SparseCounts):
        structure = SparseCounts.concat([p.structure for p in parts])
    else:
        gs = [p.structure for p in parts]
        a_base = np.cumsum([0] + [int(g.atom_ptr[-1]) for g in gs[:-1]])
        e_base = np.cumsum([0] + [int(g.edge_ptr[-1]) for g in gs[:-1]])
        structure = GraphArrays(
            atom_codes=np.concatenate([g.atom_codes for g in gs]), atom_mass=np.concatenate([g.atom_mass for g in gs]),
            edge_index=np.concatenate([g.edge_index for g in gs], axis=1), bond_codes=np.concatenate([g.bond_codes for g in gs]),
            atom_ptr=np.concatenate([[0]] + [g.atom_ptr[1:] + b for g, b in zip(gs, a_base)]),
            edge_ptr=np.concatenate([[0]] + [g.edge_ptr[1:] + b for g, b in zip(gs, e_base)]),
        )
    desc = None if parts[0].descriptors is None else np.concatenate([p.descriptors for p in parts])
    return MoleculeFeatures(structure, desc, np.concatenate([p.n_imputed for p in parts]))


def tanimoto_max(query: np.ndarray, reference: np.ndarray, *, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Max Tanimoto similarity of each packed query fingerprint to the reference set, and the
    position of that nearest reference. Shapes: (Q, B) and (R, B) uint8 → (Q,), (Q,)."""
    if len(reference) == 0:
        return np.zeros(len(query)), np.full(len(query), -1)
    r = np.unpackbits(reference, axis=1).astype(np.float32)
    r_count = r.sum(axis=1)
    best = np.zeros(len(query))
    arg = np.zeros(len(query), dtype=np.int64)
    for s in range(0, len(query), chunk):
        q = np.unpackbits(query[s: s + chunk], axis=1).astype(np.float32)
        inter = q @ r.T
        union = q.sum(axis=1)[:, None] + r_count[None, :] - inter
        sim = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        arg[s: s + chunk] = sim.argmax(axis=1)
        best[s: s + chunk] = sim.max(axis=1)
    return best, arg



# --------------------------------------------------------------------------- worker processes

_WORKER: dict[str, Any] = {}


def init_worker(featurizer: dict[str, Any]) -> None:
    """Process-pool initializer: rebuild the fitted featurizer from its JSON form once."""
    _WORKER["featurizer"] = MoleculeFeaturizer.from_dict(featurizer)
    _WORKER["standardizer"] = _WORKER["featurizer"].make_standardizer()


def featurize_chunk(rows: list[int], texts: list[str], kind: str, featurizer: MoleculeFeaturizer | None = None,
                    canonical: bool = True, standardizer: MoleculeStandardizer | None = None) -> dict[str, Any]:
    """Parse, standardise and featurize one chunk of a library (in a worker or in-process).

    ``standardizer``: ``featurizer``'s, made once by a caller that featurizes many chunks (made
    here when None).

    Returns ``{"ok": positions within the chunk, "smiles": canonical SMILES (None each with
    ``canonical=False``), "features": MoleculeFeatures, "skipped": [(row, text, reason)]}``.
    """
    from rdkit import rdBase

    from medassist.data.io.molecules import prepare_molecule

    fz = featurizer or _WORKER["featurizer"]
    std = standardizer or (fz.make_standardizer() if featurizer is not None else _WORKER["standardizer"])
    ok: list[int] = []
    smiles: list[str | None] = []
    skipped: list[tuple[int, str, str | None]] = []

    def usable() -> Iterator[Any]:
        for i, (row, text) in enumerate(zip(rows, texts)):
            mol, smi, reason = prepare_molecule(text, kind=kind, standardizer=std, canonical=canonical, block_logs=False)
            if mol is None:
                skipped.append((row, text if kind == "smiles" else f"record {row}", reason))
                continue
            ok.append(i)
            smiles.append(smi)
            yield mol

    with rdBase.BlockLogs():  # once for the chunk, not per molecule
        if fz.single_pass:
            # each molecule is fingerprinted as soon as it is standardised and freed at once, as
            # RDKit alone would: holding a chunk of molecules and freeing them together costs more
            features: MoleculeFeatures | None = fz.transform(usable())
        else:
            mols = list(usable())
            features = fz.transform(mols) if mols else None
    return {"ok": ok, "smiles": smiles, "features": features if ok else None, "skipped": skipped}
