"""The fast scoring path gives the scores of the straightforward one: D-MPNN inference on a
message plan (shared bond and atom states computed once) against the plain per-molecule forward,
batched graph building against per-molecule graphs, and a whole screen (worker processes, whole
chunks, the keep-duplicates shortlist) against scoring every molecule one at a time."""

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import Chem

from medassist.data.catalog import get_dataset
from medassist.data.sources import DataSource
from medassist.featurizers.molecules import GraphArrays, MoleculeFeaturizer, graph_arrays, mol_to_graph
from medassist.models import build_model
from medassist.models.molecules import MoleculeEnsemble, make_batch, message_plan, mol_ensemble_spec
from medassist.models.registry import model_from_spec
from medassist.pipeline.molecules import ScreeningSpec, train_screening
from medassist.pipeline.screen import screen
from medassist.registry.bundle import load_bundle
from medassist.training import TrainConfig

ODD = ["C", "[Na+].[Cl-]", "O.O", "[NH4+]", "c1ccccc1", "C[C@H](N)C(=O)O", "F/C=C/F", "[2H]C([2H])([2H])O", "ClC(Cl)(Cl)Cl",
       "C1CC2CCC1C2", "[O-][n+]1ccccc1", "OB(O)c1ccccc1", "S(=O)(=O)(O)O", "[Fe+2]", "CCCCCCCCCCCCCCCCCCCC"]


@pytest.fixture(scope="module")
def library_mols():
    """About 200 real molecules (drugs, BBB set) plus odd ones: single atoms, ions, several
    fragments, stereo, isotopes, bridged rings."""
    smiles = get_dataset("chembl_drugs").load()["smiles"].dropna().astype(str).tolist()[:120]
    smiles += get_dataset("b3db_classification").load()["SMILES"].dropna().astype(str).tolist()[:80]
    mols = [m for m in (Chem.MolFromSmiles(s) for s in smiles + ODD) if m is not None]
    assert len(mols) > 200
    return mols


def _plain(model: torch.nn.Module, x) -> torch.Tensor:
    with torch.no_grad():  # gradients allowed: the plain path
        return model(x)


def test_batched_graph_building_equals_one_graph_at_a_time(library_mols):
    together = graph_arrays(library_mols)
    apart = GraphArrays.from_graphs([mol_to_graph(m) for m in library_mols])
    for field in ("atom_codes", "atom_mass", "edge_index", "bond_codes", "atom_ptr", "edge_ptr"):
        a, b = getattr(together, field), getattr(apart, field)
        assert a.dtype == b.dtype and np.array_equal(a, b), field
    assert len(graph_arrays([])) == 0


@pytest.mark.parametrize("depth, aggregation", [(1, "mean"), (2, "sum"), (3, "mean"), (4, "mean")])
def test_message_plan_scores_equal_the_plain_dmpnn(library_mols, depth, aggregation):
    torch.manual_seed(depth)
    fz = MoleculeFeaturizer(structure="graph", descriptors="fast").fit(library_mols)
    feats = fz.transform(library_mols)
    _, member = build_model("dmpnn", size="small", n_tasks=2, n_descriptors=fz.n_descriptors,
                            overrides={"depth": depth, "aggregation": aggregation})
    model = model_from_spec(mol_ensemble_spec(member, 3, classification=False))
    assert isinstance(model, MoleculeEnsemble)
    for p in model.parameters():  # biases away from zero, as after training
        if p.ndim == 1:
            torch.nn.init.normal_(p, std=0.1)
    model.eval()
    batch = make_batch(feats, np.arange(len(feats)))
    with torch.inference_mode():
        fast = model.member_outputs(batch)
    # reference: every member, one molecule at a time, the plain message passing
    ref = torch.stack([torch.cat([_plain(m, make_batch(feats, [i])) for i in range(len(feats))]) for m in model.members])
    assert fast.shape == ref.shape == (3, len(library_mols), 2)
    np.testing.assert_allclose(fast.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)


def test_the_plan_shares_states_and_keeps_every_molecule(library_mols):
    g = make_batch(MoleculeFeaturizer(structure="graph").fit(library_mols).transform(library_mols), np.arange(len(library_mols)))
    plan = message_plan(g.atom_codes.numpy(), g.atom_mass.numpy(), g.edge_index.numpy(), g.bond_codes.numpy(),
                        g.atom_batch.numpy(), g.n_mols, 3)
    n_edges, n_atoms = g.edge_index.shape[1], len(g.atom_codes)
    assert len(plan.steps) == 2 and len(plan.edge_rep) < n_edges / 10
    assert all(len(s[3]) < n_edges for s in plan.steps) and len(plan.final[3]) < n_atoms
    mol_of, _, count = plan.readout
    assert np.array_equal(np.bincount(mol_of.numpy(), weights=count.numpy(), minlength=g.n_mols),
                          np.bincount(g.atom_batch.numpy(), minlength=g.n_mols))


def test_gradients_and_atom_gates_take_the_plain_path(library_mols):
    fz = MoleculeFeaturizer(structure="graph").fit(library_mols[:20])
    model, _ = build_model("dmpnn", size="small", overrides={"hidden": 16, "ffn_hidden": 16}, n_tasks=1)
    model.eval()
    x = make_batch(fz.transform(library_mols[:20]), np.arange(20))
    assert not model.uses_plan(x)  # no inference mode
    with torch.inference_mode():
        assert model.uses_plan(x)
        assert not model.uses_plan(x._replace(atom_gate=torch.ones(len(x.atom_codes))))
        model.train()
        assert not model.uses_plan(x)


@pytest.fixture(scope="module")
def dmpnn_bundle(tmp_path_factory):
    df = get_dataset("b3db_regression").load().iloc[:120]
    spec = ScreeningSpec(targets=("logBB",), smiles_column="SMILES", model="dmpnn", descriptors="fast", n_members=3,
                         train=TrainConfig(epochs=2, batch_size=32), n_boot=10, overrides={"hidden": 32, "ffn_hidden": 32})
    out = tmp_path_factory.mktemp("fast") / "m"
    train_screening(df, spec=spec, source=DataSource(name="t"), out_dir=out)
    return load_bundle(out)


def _plain_scores(bundle, mols) -> np.ndarray:
    """Each molecule featurized alone and scored by every member on the plain path."""
    model, cal = bundle.model.eval(), bundle.calibration
    out = []
    for m in mols:
        x = make_batch(bundle.featurizer.transform([m]), [0])
        with torch.no_grad():
            out.append(torch.stack([member(x) for member in model.members]).mean(dim=0).numpy())
    return np.concatenate(out) * np.asarray(cal["target_std"]) + np.asarray(cal["target_mean"])


@pytest.mark.parametrize("workers", [1, 2])
def test_screen_scores_equal_scoring_each_molecule_alone(dmpnn_bundle, workers):
    smiles = get_dataset("b3db_classification").load()["SMILES"].dropna().astype(str).tolist()[:150]
    lib = pd.DataFrame({"SMILES": smiles + smiles[:40]})  # repeats scored again (keep_duplicates)
    res = screen(dmpnn_bundle, lib, top=len(lib), keep_duplicates=True, workers=workers, batch_size=64)
    hits = res.hits.sort_values("input_row")
    std = dmpnn_bundle.featurizer.make_standardizer()
    mols = [std.standardize(Chem.MolFromSmiles(lib["SMILES"].iloc[r - 1]))[0] for r in hits["input_row"]]
    assert len(hits) == res.summary.n_scored == len(lib) - res.summary.n_skipped > 150
    np.testing.assert_allclose(hits["score"].to_numpy(), _plain_scores(dmpnn_bundle, mols)[:, 0], atol=2e-5)  # the CSV rounds
