"""Molecule featurizers: graphs, fingerprints, descriptors; saved and rebuilt as JSON."""

import json

import numpy as np
import pytest
from rdkit import Chem

from medassist.exceptions import NotFittedError
from medassist.featurizers import FEATURIZERS
from medassist.featurizers.molecules import (
    ATOM_FIELDS,
    FAST_DESCRIPTORS,
    GraphArrays,
    MoleculeFeaturizer,
    MorganCountFeaturizer,
    RDKitDescriptorFeaturizer,
    SparseCounts,
    concat_features,
    fast_descriptor_vector,
    featurize_chunk,
    mol_to_graph,
    morgan_bits,
    tanimoto_max,
)

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O", "C#N", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"]
MOLS = [Chem.MolFromSmiles(s) for s in SMILES]


def test_graph_has_two_directed_edges_per_bond_with_reverse_at_xor_1():
    g = mol_to_graph(Chem.MolFromSmiles("CC=O"))
    assert g.atom_codes.shape == (3, len(ATOM_FIELDS)) and g.bond_codes.shape == (4, 4)
    src, dst = g.edge_index
    assert all(src[e] == dst[e ^ 1] and dst[e] == src[e ^ 1] for e in range(4))
    assert g.bond_codes[2, 0] == 1  # the C=O bond is a double bond
    assert (g.atom_codes[:, 0] == [5, 5, 7]).all()  # element codes of C, C, O


def test_graph_batches_renumber_atoms():
    ga = GraphArrays.from_graphs([mol_to_graph(m) for m in MOLS])
    b = ga.select(np.array([2, 0]))
    n2 = MOLS[2].GetNumAtoms()
    assert len(b["atom_codes"]) == n2 + 3 and b["atom_batch"].tolist() == [0] * n2 + [1] * 3
    assert b["edge_index"].max() == n2 + 2 and b["edge_index"][:, -4:].min() == n2


def test_morgan_counts_are_sparse_log_counts():
    f = MorganCountFeaturizer(radius=2, n_bits=1024).fit(MOLS)
    x = f.transform(MOLS)
    dense = x.dense(1024)
    ref = np.array([list(f._generator().GetCountFingerprintAsNumPy(m)) for m in MOLS], dtype=float)
    assert np.allclose(dense, np.log1p(ref))
    idx, counts, offsets = x.select(np.array([1, 3]))
    assert offsets.tolist() == [0, int(x.ptr[2] - x.ptr[1])]
    assert MorganCountFeaturizer.from_dict(json.loads(json.dumps(f.to_dict()))).n_bits == 1024
    env = f.bit_atoms(MOLS[1])
    assert set(a for atoms in env.values() for a in atoms) == set(range(MOLS[1].GetNumAtoms()))


def test_fast_descriptors_match_rdkit_and_are_fitted_on_training_molecules_only():
    from rdkit.Chem import Descriptors

    funcs = dict(Descriptors._descList)
    v = fast_descriptor_vector(MOLS[2])
    assert np.allclose(v, [funcs[n](MOLS[2]) for n in FAST_DESCRIPTORS])
    d = RDKitDescriptorFeaturizer(preset="fast")
    with pytest.raises(NotFittedError):
        d.transform(MOLS)
    d.fit(MOLS[:4])
    z, n_imp = d.transform(MOLS)
    assert z.shape == (6, len(d.names_)) and (n_imp == 0).all() and np.abs(z).max() <= 6.0
    assert np.allclose(z[:4].mean(axis=0)[np.asarray(d.scale_) != 1.0], 0, atol=1e-5)
    d2 = FEATURIZERS.get("rdkit2d").from_dict(json.loads(json.dumps(d.to_dict())))
    assert np.allclose(d2.transform(MOLS)[0], z)


@pytest.mark.parametrize("structure, descriptors", [("graph", "fast"), ("morgan", None)])
def test_molecule_featurizer_roundtrip_and_chunks(structure, descriptors):
    f = MoleculeFeaturizer(structure=structure, descriptors=descriptors).fit(MOLS)
    g = FEATURIZERS.get("molecule").from_dict(json.loads(json.dumps(f.to_dict())))
    a = f.transform(MOLS)
    assert len(a) == 6 and (a.descriptors is None) == (descriptors is None)
    parts = [featurize_chunk([1, 2, 3], SMILES[:3], "smiles", featurizer=g), featurize_chunk([4, 5, 6], SMILES[3:], "smiles", featurizer=g)]
    joined = concat_features([p["features"] for p in parts])
    if structure == "graph":
        assert isinstance(joined.structure, GraphArrays)
        assert (joined.structure.atom_codes == a.structure.atom_codes).all()
        assert (joined.structure.edge_index == a.structure.edge_index).all()
    else:
        assert isinstance(joined.structure, SparseCounts)
        assert np.allclose(joined.structure.dense(2048), a.structure.dense(2048))


def test_featurize_chunk_reports_unusable_molecules():
    f = MoleculeFeaturizer(structure="morgan").fit(MOLS)
    res = featurize_chunk([10, 11, 12, 13], ["CCO", "C1CC", "[H][H]", "[Na+].[Cl-]"], "smiles", featurizer=f)
    assert res["ok"] == [0, 3] and res["smiles"] == ["CCO", "Cl"] and len(res["features"]) == 2
    assert [s[:2] for s in res["skipped"]] == [(11, "C1CC"), (12, "[H][H]")]
    assert "invalid SMILES" in res["skipped"][0][2] and "no heavy atoms" in res["skipped"][1][2]


def test_tanimoto_max_finds_the_nearest_training_molecule():
    bits = morgan_bits(MOLS)
    sim, arg = tanimoto_max(bits[[2, 5]], bits)
    assert np.allclose(sim, 1.0) and arg.tolist() == [2, 5]
    sim, _ = tanimoto_max(morgan_bits([Chem.MolFromSmiles("CCCCCCCCCCCC")]), bits[[1, 2]])
    assert 0 <= sim[0] < 0.2
