"""Applicability domain of a molecular property model: how like the training set a molecule is.

A molecule's similarity is its largest Tanimoto similarity (Morgan fingerprints, radius 2, 2048
bits) to any training molecule. The threshold is fitted on held-out molecules: the
:data:`AD_QUANTILE` quantile of their nearest-neighbour similarities. Molecules below it are
flagged outside the domain, where predictions are less reliable; the summaries here show how
much less (error inside vs outside, error vs ensemble uncertainty).

The training fingerprints are saved in a screening bundle as packed bits in safetensors
(:data:`AD_FILE`), never pickled.

Example:
    >>> ad, held_sim = fit_applicability_domain(train_mols, held_mols)
    >>> sim, nearest = ad.similarity(new_mols)
    >>> inside = sim >= ad.threshold
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from medassist.exceptions import BundleError
from medassist.featurizers.molecules import morgan_bits, tanimoto_max

if TYPE_CHECKING:
    from medassist.registry.bundle import ModelBundle

AD_FILE = "applicability_domain.safetensors"
#: A held-out molecule counts as inside the applicability domain when its nearest training
#: neighbour is at least as similar as this quantile of held-out molecules' nearest neighbours.
AD_QUANTILE = 0.05


@dataclass
class ApplicabilityDomain:
    """Training-set fingerprints (packed Morgan bits, radius 2, 2048 bits) and the similarity
    threshold below which a molecule is flagged as outside the domain."""

    fingerprints: np.ndarray
    threshold: float
    radius: int = 2
    n_bits: int = 2048

    def similarity(self, mols: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(max Tanimoto similarity to any training molecule, position of that molecule)."""
        if not mols:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        return tanimoto_max(morgan_bits(mols, radius=self.radius, n_bits=self.n_bits), self.fingerprints)

    def to_bytes(self) -> bytes:
        return st_save({"fingerprints": self.fingerprints}, metadata={
            "threshold": repr(float(self.threshold)), "radius": str(self.radius), "n_bits": str(self.n_bits)})

    @classmethod
    def from_bundle(cls, bundle: ModelBundle) -> ApplicabilityDomain:
        if bundle.path is None:
            raise BundleError("The bundle has no directory, so its applicability domain cannot be read.")
        path = Path(bundle.path) / AD_FILE
        if not path.exists():
            raise BundleError(f"{bundle.path}: not a complete screening bundle ({AD_FILE} is missing).")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != bundle.meta.get("files", {}).get(AD_FILE):
            raise BundleError(f"{path}: does not match the checksum in bundle.json; the bundle was altered or damaged.")
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
        fps = st_load(data)["fingerprints"]
        return cls(fingerprints=fps, threshold=float(meta.get("threshold", "0.3")), radius=int(meta.get("radius", 2)),
                   n_bits=int(meta.get("n_bits", 2048)))


def fit_applicability_domain(train_mols: list[Any], held_mols: list[Any]) -> tuple[ApplicabilityDomain, np.ndarray]:
    """The domain of ``train_mols``, its threshold fitted on ``held_mols`` (validation and test
    molecules); returns it with the held-out molecules' similarities (N_held,)."""
    train_bits = morgan_bits(train_mols)
    held_sim, _ = tanimoto_max(morgan_bits(held_mols), train_bits)
    threshold = float(np.quantile(held_sim, AD_QUANTILE))
    return ApplicabilityDomain(fingerprints=train_bits, threshold=threshold), held_sim


def summarize_test_split(test_sim: np.ndarray, threshold: float, *, pred: np.ndarray, y: np.ndarray, names: list[str],
                         kind: str, spread: np.ndarray | None) -> dict[str, Any]:
    """What the model card records of the domain on the test split: threshold, rule, molecules
    inside and outside, and for regression the MAE inside/outside and Spearman's rho of error vs
    ensemble uncertainty, per target."""
    inside = test_sim >= threshold
    info: dict[str, Any] = {"threshold": round(threshold, 4), "rule": f"max Tanimoto (Morgan r=2, 2048 bits) to the training set >= the {AD_QUANTILE:.0%} quantile of held-out molecules",
                            "test_inside": int(inside.sum()), "test_outside": int((~inside).sum())}
    if kind == "regression":
        for t, name in enumerate(names):
            err = np.abs(pred[:, t] - y[:, t])
            ok = ~np.isnan(err)
            info[f"{name}_mae_inside"] = float(np.mean(err[ok & inside])) if (ok & inside).any() else None
            info[f"{name}_mae_outside"] = float(np.mean(err[ok & ~inside])) if (ok & ~inside).any() else None
            if spread is not None and ok.sum() > 2:
                from medassist.evaluation.regression import compute_spearman

                info[f"{name}_spearman_error_vs_uncertainty"] = compute_spearman(spread[ok, t], err[ok])
    return info



def summarize_evaluation(ad: ApplicabilityDomain, sim: np.ndarray, *, pred: np.ndarray, y: np.ndarray, kind: str) -> dict[str, Any]:
    """Molecules inside and outside the domain among evaluated ones and, for regression when both
    are present, the MAE (one per target) inside and outside."""
    inside = sim >= ad.threshold
    out: dict[str, Any] = {"threshold": ad.threshold, "inside": int(inside.sum()), "outside": int((~inside).sum())}
    if kind == "regression" and inside.any() and (~inside).any():
        err = np.abs(pred - y)
        out["mae_inside"] = [float(np.nanmean(err[inside, t])) for t in range(err.shape[1])]
        out["mae_outside"] = [float(np.nanmean(err[~inside, t])) for t in range(err.shape[1])]
    return out
