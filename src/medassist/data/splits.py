"""Train/validation/test splits: stratified, seeded, and grouped by patient when asked."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from medassist.exceptions import DataError
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
