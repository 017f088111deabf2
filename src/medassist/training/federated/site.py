"""One site's side of federated training: its own rows, split, featurized and evaluated locally.

Nothing here sends rows anywhere: ``summary`` returns summary statistics of the site's training
split, ``report`` returns sums and histograms over its held-out rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from medassist.data.splits import SplitIndices, split_indices
from medassist.evaluation.metrics import compute_roc_auc
from medassist.exceptions import DataError
from medassist.featurizers.tabular import TabularFeaturizer
from medassist.training.data import ArrayDataset
from medassist.training.federated.summaries import summarise_columns

#: Temperatures the server chooses from (log-spaced); sites report their NLL at each.
TEMPERATURES = [float(t) for t in np.exp(np.linspace(np.log(0.25), np.log(4.0), 41))]
#: Bin edges of the logit margin z_pos - z_neg for the pooled AUC (0.05 wide; clipped to ±30).
MARGIN_EDGES = np.linspace(-30.0, 30.0, 1201)


def label_strings(s: pd.Series) -> pd.Series:
    """Class labels as strings; integral floats lose their '.0' (1.0 → '1')."""
    present = s.dropna()
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        if np.all(np.mod(present.to_numpy(dtype=float), 1) == 0):
            return s.map(lambda v: v if pd.isna(v) else str(int(v)))
    return s.map(lambda v: v if pd.isna(v) else str(v).strip())


@dataclass(kw_only=True)
class LocalSite:
    """A site's rows and its own train/validation/test split.

    Build it with :meth:`from_frame`; ``setup`` then applies the server's plan (featurizer state,
    classes, model spec).
    """

    name: str
    frame: pd.DataFrame
    target: str
    labels: pd.Series
    columns: list[str]
    splits: SplitIndices
    data: dict[str, ArrayDataset] = field(default_factory=dict)

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, *, name: str, target: str, columns: list[str], id_column: str | None = None,
        seed: int = 0, source: str = "site data",
    ) -> LocalSite:
        if target not in frame.columns:
            raise DataError(f"{source} (site {name}): target column '{target}' not found. The table has: {', '.join(map(str, frame.columns))}.")
        missing_cols = [c for c in columns if c not in frame.columns]
        if missing_cols:
            raise DataError(f"{source} (site {name}): input column(s) {', '.join(missing_cols)} not found.")
        frame = frame.reset_index(drop=True)
        labels = label_strings(frame[target])
        if labels.isna().any():
            rows = np.flatnonzero(labels.isna().to_numpy())
            raise DataError(f"{source} (site {name}): target '{target}' is missing in {len(rows)} row(s) (first: row {rows[0] + 1}); "
                            "an unknown outcome is never given a default class.")
        counts = labels.value_counts()
        if len(frame) < 20 or counts.min() < 3 or len(counts) < 2:
            raise DataError(f"{source} (site {name}): {len(frame)} row(s) with class counts {counts.to_dict()}; a site needs at least "
                            "20 rows and 3 of each class it holds (for its training, validation and test parts).")
        codes = labels.map({c: i for i, c in enumerate(sorted(counts.index))}).to_numpy(dtype=np.int64)
        groups = None
        if id_column and id_column in frame.columns and frame[id_column].notna().all():
            groups = frame[id_column].astype(str).to_numpy()
        splits = split_indices(codes, groups=groups, seed=seed)
        return cls(name=name, frame=frame, target=target, labels=labels, columns=list(columns), splits=splits)

    # -- what leaves the site -------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Summary statistics of the training split (see ``summaries.py``), plus split sizes."""
        train = self.frame.iloc[self.splits.train]
        return {
            "site": self.name, "target": self.target, "columns": self.columns,
            "n_rows": int(len(self.frame)), "n_train": int(len(self.splits.train)), "n_val": int(len(self.splits.val)),
            "n_test": int(len(self.splits.test)),
            "class_counts": {str(k): int(v) for k, v in self.labels.iloc[self.splits.train].value_counts().items()},
            "stats": summarise_columns(train, columns=self.columns, source=f"site {self.name}"),
        }

    def setup(self, *, featurizer: TabularFeaturizer, classes: list[str]) -> None:
        """Featurize the three parts with the shared featurizer and encode the shared classes."""
        unknown = sorted(set(self.labels) - set(classes))
        if unknown:
            raise DataError(f"site {self.name}: target value(s) {unknown} are not among the federation's classes {classes}.")
        codes = self.labels.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
        for part in ("train", "val", "test"):
            idx = getattr(self.splits, part)
            x = featurizer.transform(self.frame.iloc[idx], source=f"site {self.name} {part} part").values
            self.data[part] = ArrayDataset(features=x, targets=codes[idx])

    def logits(self, model: torch.nn.Module, part: str) -> tuple[np.ndarray, np.ndarray]:
        ds = self.data[part]
        model.eval()
        with torch.no_grad():
            return model(ds.features).float().numpy(), ds.targets.numpy()

    def report(self, model: torch.nn.Module, *, positive_index: int) -> dict[str, Any]:
        """Aggregates over the held-out rows from which the server computes pooled metrics:
        NLL sums per candidate temperature (validation), and on the test part NLL and Brier
        sums per temperature, the confusion matrix at 0.5 and logit-margin histograms by class
        (binary only: the margin orders patients exactly as the probability does)."""
        zv, yv = self.logits(model, "val")
        zt, yt = self.logits(model, "test")
        neg = 1 - positive_index
        val_nll, test_nll, test_brier = [], [], []
        for t in TEMPERATURES:
            lv = torch.log_softmax(torch.from_numpy(zv) / t, dim=1).numpy()
            lt = torch.log_softmax(torch.from_numpy(zt) / t, dim=1).numpy()
            val_nll.append(float(-lv[np.arange(len(yv)), yv].sum()))
            test_nll.append(float(-lt[np.arange(len(yt)), yt].sum()))
            test_brier.append(float(((np.exp(lt[:, positive_index]) - (yt == positive_index)) ** 2).sum()))
        margin = np.clip(zt[:, positive_index] - zt[:, neg], MARGIN_EDGES[0], MARGIN_EDGES[-1])
        pred = np.where(margin >= 0, positive_index, neg)
        confusion = np.zeros((2, 2), dtype=int)
        np.add.at(confusion, (yt, pred), 1)
        probs = torch.softmax(torch.from_numpy(zt), dim=1).numpy()
        auc = compute_roc_auc(probs, yt, positive_index=positive_index) if len(np.unique(yt)) == 2 else float("nan")
        return {
            "site": self.name, "n_val": int(len(yv)), "n_test": int(len(yt)),
            "val_nll": val_nll, "test_nll": test_nll, "test_brier": test_brier,
            "test_confusion": confusion.tolist(),
            "test_hist_pos": np.histogram(margin[yt == positive_index], bins=MARGIN_EDGES)[0].tolist(),
            "test_hist_neg": np.histogram(margin[yt != positive_index], bins=MARGIN_EDGES)[0].tolist(),
            "test_auc": None if np.isnan(auc) else float(auc),
        }


def auc_from_histograms(hist_pos: np.ndarray, hist_neg: np.ndarray) -> float:
    """ROC AUC from per-class counts of binned scores (ties within a bin count one half)."""
    hist_pos, hist_neg = np.asarray(hist_pos, dtype=float), np.asarray(hist_neg, dtype=float)
    n_pos, n_neg = hist_pos.sum(), hist_neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    below = np.concatenate([[0.0], np.cumsum(hist_neg)[:-1]])
    return float((hist_pos * (below + 0.5 * hist_neg)).sum() / (n_pos * n_neg))
