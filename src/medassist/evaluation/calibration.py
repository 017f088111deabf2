"""Post-hoc calibration (temperature scaling) and reliability curves.

Temperature scaling (Guo et al., 2017) divides the logits by one learned number T > 0 before the
softmax. It changes how confident the model is, never which class it ranks first, so accuracy and
AUC are unchanged while the probabilities become closer to observed frequencies. Fit it on the
validation split, never on the test split that reports the result.

Example:
    >>> scaler = TemperatureScaler().fit(val_logits, val_y)     # (N, C), (N,)
    >>> probs = scaler.transform(test_logits)                   # (M, C), rows sum to 1
    >>> TemperatureScaler.from_dict(scaler.to_dict()).temperature_ == scaler.temperature_
    True
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from medassist.evaluation.metrics import (
    bin_index,
    calibration_target,
    check_inputs,
    check_n_bins,
    positive_column,
    to_numpy,
)
from medassist.exceptions import ConfigError, DataError, EmptyDataError, NotFittedError
from medassist.validation import check_number

#: Temperatures are clamped to this range; beyond it the fit has found a degenerate optimum
#: (e.g. perfectly separated training data drives T towards 0).
T_MIN, T_MAX = 0.05, 20.0


def _check_logits(logits: Any, *, owner: str) -> np.ndarray:
    z = to_numpy(logits)
    if z.ndim != 2 or z.shape[1] < 2:
        raise DataError(
            f"{owner}: logits must be a 2-D array (N, C) with C >= 2. Got shape {z.shape} instead."
        )
    if len(z) == 0:
        raise EmptyDataError(f"{owner}: got 0 samples; expected at least one.")
    if not np.issubdtype(z.dtype, np.number) or np.issubdtype(z.dtype, np.complexfloating):
        raise DataError(f"{owner}: logits must hold real numbers. Got dtype {z.dtype} instead.")
    z = z.astype(np.float64)
    if not np.all(np.isfinite(z)):
        raise DataError(f"{owner}: logits hold {int(np.sum(~np.isfinite(z)))} NaN/inf value(s).")
    return z


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(z: np.ndarray, y: np.ndarray, temperature: float) -> float:
    s = z / temperature
    s = s - s.max(axis=1, keepdims=True)
    log_p = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return float(-np.mean(log_p[np.arange(len(y)), y]))


class TemperatureScaler:
    """Learn one temperature T that minimises the negative log-likelihood of softmax(z / T).

    The fit optimises log T with L-BFGS (so T stays positive) and clamps T to
    [:data:`T_MIN`, :data:`T_MAX`], warning when it had to.

    Args:
        max_iter: most L-BFGS iterations.

    Attributes:
        temperature_: the learned T (> 1 softens over-confident logits).
        n_classes_: C seen in ``fit``.
        nll_before_: NLL of the fitting data at T = 1.
        nll_after_: NLL of the fitting data at the learned T.
    """

    def __init__(self, *, max_iter: int = 100) -> None:
        self.max_iter = int(
            check_number(max_iter, name="max_iter", owner="TemperatureScaler", low=1, integer=True)
        )

    def fit(self, logits: Any, y_true: Any) -> TemperatureScaler:
        """Fit T on logits (N, C) (ndarray or tensor) and class indices y_true (N,)."""
        import torch  # here, not at import: reading metrics should not load torch

        z = _check_logits(logits, owner="TemperatureScaler.fit")
        _, y = check_inputs(
            _softmax(z), y_true, positive_index=1, owner="TemperatureScaler.fit"
        )
        z_t = torch.as_tensor(z, dtype=torch.float64)
        y_t = torch.as_tensor(y, dtype=torch.long)
        log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [log_t], lr=1.0, max_iter=self.max_iter, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(z_t / log_t.exp(), y_t)
            loss.backward()
            return loss

        with torch.enable_grad():  # callers often evaluate under torch.no_grad()
            optimizer.step(closure)
        raw = float(log_t.detach().exp())
        temperature = min(max(raw, T_MIN), T_MAX) if math.isfinite(raw) else T_MAX
        if temperature != raw:
            warnings.warn(
                f"TemperatureScaler: the fitted temperature {raw:.4g} lies outside "
                f"[{T_MIN}, {T_MAX}] and was clamped to {temperature:g}; the fitting data may be "
                "perfectly separated or too small.",
                RuntimeWarning,
                stacklevel=2,
            )
        self.temperature_ = temperature
        self.n_classes_ = int(z.shape[1])
        self.nll_before_ = _nll(z, y, 1.0)
        self.nll_after_ = _nll(z, y, temperature)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "temperature_"):
            raise NotFittedError(
                "This TemperatureScaler is not fitted yet; call fit(logits, y_true) first."
            )

    def transform(self, logits: Any) -> np.ndarray:
        """Calibrated probabilities (N, C) float64 for logits (N, C); rows sum to 1."""
        self._check_fitted()
        z = _check_logits(logits, owner="TemperatureScaler.transform")
        if z.shape[1] != self.n_classes_:
            raise DataError(
                f"TemperatureScaler.transform: expected logits with {self.n_classes_} columns "
                f"(as in fit). Got {z.shape[1]}."
            )
        return _softmax(z / self.temperature_)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: method, temperature, n_classes, max_iter, nll_before, nll_after."""
        self._check_fitted()
        return {
            "method": "temperature",
            "temperature": self.temperature_,
            "n_classes": self.n_classes_,
            "max_iter": self.max_iter,
            "nll_before": self.nll_before_,
            "nll_after": self.nll_after_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TemperatureScaler:
        """Rebuild a fitted scaler from :meth:`to_dict` output."""
        owner = "TemperatureScaler.from_dict"
        if not isinstance(d, dict) or d.get("method") != "temperature":
            raise ConfigError(f"{owner}: expected a dict with method 'temperature'. Got {d!r}.")
        missing = {"temperature", "n_classes"} - set(d)
        if missing:
            raise ConfigError(f"{owner}: missing key(s) {sorted(missing)}.")
        scaler = cls(max_iter=d.get("max_iter", 100))
        scaler.temperature_ = float(
            check_number(d["temperature"], name="temperature", owner=owner, low=T_MIN, high=T_MAX)
        )
        scaler.n_classes_ = int(
            check_number(d["n_classes"], name="n_classes", owner=owner, low=2, integer=True)
        )
        nan = float("nan")
        scaler.nll_before_ = float(d["nll_before"]) if d.get("nll_before") is not None else nan
        scaler.nll_after_ = float(d["nll_after"]) if d.get("nll_after") is not None else nan
        return scaler


def reliability_curve(
    y_prob: Any, y_true: Any, *, positive_index: int = 1, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points of a reliability diagram over ``n_bins`` equal-width bins on [0, 1].

    Binary: predicted probability of the positive class against the observed share of
    positives. Multiclass: top-label confidence against the share of correct top-label
    predictions (the same quantities as ``compute_ece``).

    Args:
        y_prob: probabilities (N, C).
        y_true: class indices (N,).
        positive_index: column of the positive class (binary only).
        n_bins: number of bins.

    Returns:
        ``(mean_predicted, fraction_positive, counts)``, each (n_bins,); the first two are NaN
        for empty bins (matplotlib leaves those gaps), counts are ints.
    """
    owner = "reliability_curve"
    p, y = check_inputs(y_prob, y_true, positive_index=positive_index, owner=owner)
    bins = check_n_bins(n_bins, owner=owner)
    conf, target = calibration_target(p, y, positive_column(positive_index, p.shape[1]))
    idx = bin_index(conf, bins)
    counts = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(idx, weights=conf, minlength=bins) / counts
        fraction_positive = np.bincount(idx, weights=target, minlength=bins) / counts
    return mean_predicted, fraction_positive, counts


#: Above this expected calibration error on its own test set, a model's probabilities are not
#: to be read as probabilities: every answer it gives carries :func:`calibration_warning`.
POOR_CALIBRATION_ECE = 0.1


def calibration_warning(test_ece: float | None) -> str | None:
    """The warning every prediction of a poorly calibrated model carries, or None.

    Example:
        >>> calibration_warning(0.349)
        'model calibration is poor on its test set (ECE 0.349): treat probabilities as rankings'
    """
    if test_ece is None or not math.isfinite(float(test_ece)) or float(test_ece) <= POOR_CALIBRATION_ECE:
        return None
    return f"model calibration is poor on its test set (ECE {float(test_ece):.3f}): treat probabilities as rankings"
