import numpy as np

from medassist.data.splits import kfold_indices, split_indices


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
