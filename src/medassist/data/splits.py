"""Train/validation/test splits: stratified, seeded, and grouped by patient when asked; for
molecules, random or Bemis–Murcko scaffold splits (seeded)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from medassist.exceptions import DataError
from medassist.options import look_up_option
from medassist.validation import check_number


@dataclass(frozen=True)
class SplitIndices:
    """Row positions of each split (sorted, disjoint, together all rows)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def to_dict(self) -> dict[str, list[int]]:
        return {k: getattr(self, k).tolist() for k in ("train", "val", "test")}


def _one_cut(idx: np.ndarray, y: np.ndarray, groups: np.ndarray | None, frac: float, seed: int):
    """Split ``idx`` into (rest, held) with about ``frac`` of rows held out."""
    if groups is None:
        counts = np.bincount(y[idx])
        strat = y[idx] if counts[counts > 0].min() >= 2 else None
        rest, held = train_test_split(idx, test_size=frac, random_state=seed, stratify=strat)
        return np.sort(rest), np.sort(held)
    n_folds = max(2, int(round(1.0 / frac)))
    n_groups = len(np.unique(groups[idx]))
    if n_groups < n_folds:
        raise DataError(f"Only {n_groups} distinct IDs: too few patients for a grouped split.")
    cv = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    rest, held = next(cv.split(np.zeros(len(idx)), y[idx], groups[idx]))
    return np.sort(idx[rest]), np.sort(idx[held])


def split_indices(
    y: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> SplitIndices:
    """Stratified train/val/test split; rows sharing a group (patient ID) stay together.

    Args:
        y: class indices, shape (N,).
        groups: optional patient IDs, shape (N,).
    """
    check_number(val_fraction, name="val_fraction", owner="split_indices", low=0, high=0.5, low_open=True)
    check_number(test_fraction, name="test_fraction", owner="split_indices", low=0, high=0.5, low_open=True)
    y = np.asarray(y)
    idx = np.arange(len(y))
    rest, test = _one_cut(idx, y, groups, test_fraction, seed)
    train, val = _one_cut(rest, y, groups, val_fraction / (1.0 - test_fraction), seed + 1)
    return SplitIndices(train=train, val=val, test=test)


def kfold_indices(y: np.ndarray, *, n_splits: int = 5, groups: np.ndarray | None = None, seed: int = 0):
    """Yield (train, test) row positions of stratified (group-aware) K-fold CV."""
    if groups is None:
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        yield from cv.split(np.zeros(len(y)), y)
    else:
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        yield from cv.split(np.zeros(len(y)), y, groups)


# --------------------------------------------------------------------------- molecules


class SplitKind(StrEnum):
    """How molecules are split: seeded random rows, or Bemis–Murcko scaffold groups."""

    RANDOM = "random"
    SCAFFOLD = "scaffold"


def _molecule_split_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    n_test = max(1, int(round(fractions[2] * n)))
    n_val = max(1, int(round(fractions[1] * n)))
    if n - n_test - n_val < 2:
        raise DataError(f"{n} molecules are too few to split into training, validation and test sets.")
    return n_val, n_test


def random_split(n: int, *, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0) -> SplitIndices:
    """Seeded random train/val/test split of ``n`` molecules."""
    n_val, n_test = _molecule_split_sizes(n, fractions)
    perm = np.random.default_rng(seed).permutation(n)
    return SplitIndices(train=np.sort(perm[n_val + n_test:]), val=np.sort(perm[n_test:n_test + n_val]), test=np.sort(perm[:n_test]))


def murcko_scaffold(mol: Any) -> str:
    """Bemis–Murcko scaffold SMILES (empty for acyclic molecules)."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    try:
        return Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(mol))
    except Exception:  # noqa: BLE001 (an odd molecule gets its own group, which is safe)
        return Chem.MolToSmiles(mol)


def scaffold_split(mols: list[Any], *, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0) -> SplitIndices:
    """Bemis–Murcko scaffold split, balanced as in Chemprop: molecules sharing a scaffold stay in
    one split; scaffold sets larger than half the test size go to training first, the others are
    shuffled (seeded) and fill validation and test, then training."""
    n = len(mols)
    n_val, n_test = _molecule_split_sizes(n, fractions)
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(mols):
        groups.setdefault(murcko_scaffold(m), []).append(i)
    sets = list(groups.values())
    big = [s for s in sets if len(s) > n_test / 2]
    small = [s for s in sets if len(s) <= n_test / 2]
    rng = np.random.default_rng(seed)
    rng.shuffle(big)
    rng.shuffle(small)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    n_train = n - n_val - n_test
    for s in big + small:
        if len(train) + len(s) <= n_train:
            train += s
        elif len(val) + len(s) <= n_val:
            val += s
        else:
            test += s
    if not val or not test:
        raise DataError("The scaffold split left the validation or test set empty (too few distinct scaffolds); use --split random.")
    return SplitIndices(train=np.sort(train), val=np.sort(val), test=np.sort(test))


def make_split(kind: str, mols: list[Any], *, seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> SplitIndices:
    """Train/val/test split of ``mols`` by ``kind`` (a :class:`SplitKind` name), seeded."""
    kind = look_up_option(kind, SplitKind, name="split")
    return random_split(len(mols), fractions=fractions, seed=seed) if kind == SplitKind.RANDOM else scaffold_split(mols, fractions=fractions, seed=seed)
