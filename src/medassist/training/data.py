"""Datasets the Trainer reads: each yields samples and knows how to collate them into a Batch."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from medassist.types import Batch


class ArrayDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Rows of a float feature matrix (N, F) with integer class targets (N,)."""

    def __init__(self, *, features: np.ndarray, targets: np.ndarray) -> None:
        if len(features) != len(targets):
            raise ValueError(f"features has {len(features)} rows but targets has {len(targets)}.")
        self.features = torch.as_tensor(np.asarray(features, dtype=np.float32))
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[i], self.targets[i]

    def get_batch(self, indices: torch.Tensor) -> Batch:
        return Batch(inputs=self.features[indices], target=self.targets[indices])

    @staticmethod
    def collate(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
        xs, ys = zip(*samples)
        return Batch(inputs=torch.stack(xs), target=torch.stack(ys))
