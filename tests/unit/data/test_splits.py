import numpy as np
import pytest
from rdkit import Chem

from medassist.data.catalog import get_dataset
from medassist.data.splits import kfold_indices, murcko_scaffold, random_split, scaffold_split, split_indices
from medassist.exceptions import DataError


def test_split_is_disjoint_complete_stratified_and_seeded():
    y = np.array([0] * 80 + [1] * 20)
    s = split_indices(y, seed=1)
    allidx = np.concatenate([s.train, s.val, s.test])
    assert sorted(allidx.tolist()) == list(range(100))
    for part in (s.train, s.val, s.test):
        assert abs(y[part].mean() - 0.2) < 0.06
    s2 = split_indices(y, seed=1)
    assert np.array_equal(s.test, s2.test)
    assert not np.array_equal(s.test, split_indices(y, seed=2).test)


def test_grouped_split_keeps_a_patient_in_one_split():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), 3)
    y = np.repeat(rng.integers(0, 2, 60), 3)
    s = split_indices(y, groups=groups, seed=0)
    sets = [set(groups[p]) for p in (s.train, s.val, s.test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])


def test_kfold_covers_every_row_once():
    y = np.array([0, 1] * 25)
    seen = np.concatenate([test for _, test in kfold_indices(y, n_splits=5)])
    assert sorted(seen.tolist()) == list(range(50))


def test_molecule_splits_are_seeded_disjoint_and_scaffolds_do_not_straddle():
    bbb = get_dataset("b3db_classification").load().sample(240, random_state=0).reset_index(drop=True)
    mols = [Chem.MolFromSmiles(s) for s in bbb["SMILES"]]
    a, b = scaffold_split(mols, seed=3), scaffold_split(mols, seed=3)
    assert a.to_dict() == b.to_dict() and scaffold_split(mols, seed=4).to_dict() != a.to_dict()
    assert sorted(np.concatenate([a.train, a.val, a.test]).tolist()) == list(range(len(mols)))
    scaf = [murcko_scaffold(m) for m in mols]
    sets = {k: {scaf[i] for i in getattr(a, k)} for k in ("train", "val", "test")}
    assert not (sets["train"] & sets["test"]) and not (sets["train"] & sets["val"]) and not (sets["val"] & sets["test"])
    r = random_split(100, seed=1)
    assert (len(r.train), len(r.val), len(r.test)) == (80, 10, 10)
    with pytest.raises(DataError):
        random_split(3)
