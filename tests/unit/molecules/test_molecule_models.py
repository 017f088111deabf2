"""D-MPNN and fingerprint MLP: shapes, presets, masking, ensembles, message passing semantics."""

import numpy as np
import pytest
import torch
from rdkit import Chem

from medassist.featurizers.molecules import MoleculeFeaturizer
from medassist.models import MODELS, build_model, count_parameters, model_from_spec
from medassist.models.molecules import MoleculeEnsemble, make_batch, mol_ensemble_spec

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O", "C#N", "CCCCCCCC"]
MOLS = [Chem.MolFromSmiles(s) for s in SMILES]
TINY = {"dmpnn": {"hidden": 16, "ffn_hidden": 16}, "fpmlp": {"hidden": 16}}


def feats(structure, descriptors=None):
    f = MoleculeFeaturizer(structure=structure, descriptors=descriptors).fit(MOLS)
    return f, f.transform(MOLS)


@pytest.mark.parametrize("name, structure", [("dmpnn", "graph"), ("fpmlp", "morgan")])
def test_large_presets_pass_a_million_parameters_and_small_ones_do_not(name, structure):
    f, x = feats(structure, "fast")
    dims = {"n_tasks": 2, "n_descriptors": f.n_descriptors}
    large, _ = build_model(name, size="large", **dims)
    small, spec = build_model(name, size="small", **dims)
    assert count_parameters(large) > 1_000_000 > count_parameters(small) > 10_000
    out = small(make_batch(x, np.arange(6)))
    assert out.shape == (6, 2) and torch.isfinite(out).all()
    again = model_from_spec(spec)
    again.load_state_dict(small.state_dict())
    small.eval(), again.eval()
    assert torch.allclose(small(make_batch(x, np.arange(6))), again(make_batch(x, np.arange(6))))


@pytest.mark.parametrize("name, structure", [("dmpnn", "graph"), ("fpmlp", "morgan")])
def test_a_molecule_gets_the_same_output_alone_or_in_a_batch(name, structure):
    _, x = feats(structure)
    model, _ = build_model(name, size="small", overrides=TINY[name], n_tasks=1)
    model.eval()
    together = model(make_batch(x, np.arange(6)))[:, 0]
    alone = torch.cat([model(make_batch(x, np.array([i])))[:, 0] for i in range(6)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_dmpnn_output_depends_on_every_atom():
    """Changing the last atom of a chain changes the prediction (mean readout over all atoms)."""
    torch.manual_seed(0)
    f = MoleculeFeaturizer(structure="graph").fit(MOLS)
    a, b = f.transform([Chem.MolFromSmiles("CCCCC")]), f.transform([Chem.MolFromSmiles("CCCCO")])
    model, _ = build_model("dmpnn", size="small", overrides={"hidden": 8, "ffn_hidden": 8, "depth": 2}, n_tasks=1)
    model.eval()
    assert not torch.allclose(model(make_batch(a, [0])), model(make_batch(b, [0])))


@pytest.mark.parametrize("classification", [False, True])
def test_ensemble_averages_members(classification):
    _, x = feats("morgan")
    _, spec = build_model("fpmlp", size="small", overrides=TINY["fpmlp"], n_tasks=1)
    ens = MoleculeEnsemble(member=spec, n_members=3, classification=classification)
    ens.eval()
    batch = make_batch(x, np.arange(6))
    members = ens.member_outputs(batch)
    assert members.shape == (3, 6, 1)
    expected = torch.logit(members.mean(0)) if classification else members.mean(0)
    assert torch.allclose(ens(batch), expected, atol=1e-5)
    assert MODELS.get("mol_ensemble") is MoleculeEnsemble
    rebuilt = model_from_spec(mol_ensemble_spec(spec, 3, classification=classification))
    assert len(rebuilt.members) == 3


@pytest.mark.parametrize("name, structure", [("dmpnn", "graph"), ("fpmlp", "morgan")])
def test_feature_subsets_equal_featurizing_the_subset(name, structure):
    from medassist.pipeline.molecules import _subset

    f, x = feats(structure)
    model, _ = build_model(name, size="small", overrides=TINY[name], n_tasks=1)
    model.eval()
    idx = np.array([4, 1, 5])
    a = model(make_batch(_subset(x, idx), np.arange(3)))
    b = model(make_batch(f.transform([MOLS[i] for i in idx]), np.arange(3)))
    assert torch.allclose(a, b, atol=1e-6)
