"""Simple baselines fitted beside every tabular diagnosis model (scikit-learn, seconds).

Both take the fitted tabular featurizer's output (median imputation with missingness
indicators, one-hot categories, standardised numbers; fitted on training rows only):

* logistic regression (lbfgs, ``max_iter=1000``): stored in the bundle as plain JSON
  (coefficients and intercepts), so ``evaluate`` re-applies it to new data without pickle;
  :class:`LogisticModel` is the same model as a torch module (``--model auto`` may deploy it);
* gradient-boosted trees (``HistGradientBoostingClassifier``, default parameters): only its
  test metrics are stored; a tree ensemble has no pickle-free format here.

Example:
    >>> state = fit_logistic(x_train, y_train, n_classes=2, seed=0)
    >>> logistic_logits(state, x_test).shape
    (N, 2)
"""

from __future__ import annotations

import warnings
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from medassist.exceptions import DataError
from medassist.models.registry import MODELS

#: Why gradient-boosted trees are not re-applied by ``evaluate`` (stated wherever it is missing).
HGB_NOT_STORED = ("gradient-boosted trees are not stored in the bundle (no pickle-free format for a tree ensemble); "
                  "their test-split figures are in the model card")


def fit_logistic(x: np.ndarray, y: np.ndarray, *, n_classes: int, seed: int = 0) -> dict[str, Any]:
    """Fit an L2 logistic regression (C=1, lbfgs) and return its plain-JSON state.

    Returns:
        ``{"kind": "logistic_regression", "coef": (C, F), "intercept": (C,), "n_features",
        "n_classes", "solver", "C", "max_iter", "n_iter"}``, with logits in class-code order
        (binary: the first class's logit is 0).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    present = np.unique(y)
    if len(present) != n_classes:
        raise DataError(f"logistic baseline: the training rows hold {len(present)} of {n_classes} classes.")
    lr = LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        lr.fit(x.astype(np.float64), y)
    coef, intercept = lr.coef_, lr.intercept_
    if n_classes == 2:  # one row: the logit of class 1 against class 0
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.r_[0.0, intercept]
    return {
        "kind": "logistic_regression", "coef": coef.tolist(), "intercept": intercept.tolist(),
        "n_features": int(x.shape[1]), "n_classes": int(n_classes), "solver": "lbfgs", "C": 1.0, "max_iter": 1000,
        "n_iter": int(np.max(lr.n_iter_)), "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught),
    }


def logistic_logits(state: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Logits (N, C) of a stored logistic regression on featurized rows x (N, F)."""
    coef, intercept = np.asarray(state["coef"], dtype=np.float64), np.asarray(state["intercept"], dtype=np.float64)
    if x.shape[1] != coef.shape[1]:
        raise DataError(f"logistic baseline: expected {coef.shape[1]} featurized columns, got {x.shape[1]}.")
    return x.astype(np.float64) @ coef.T + intercept


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_hgb(x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> Any:
    """Gradient-boosted trees with scikit-learn's defaults (early stopping 'auto': on above 10,000 rows)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=seed).fit(x, y)


def hgb_proba(model: Any, x: np.ndarray, n_classes: int) -> np.ndarray:
    p = model.predict_proba(x)
    out = np.zeros((len(x), n_classes))
    out[:, model.classes_.astype(int)] = p
    return out


@MODELS.register("logistic")
class LogisticModel(nn.Module):
    """Multinomial logistic regression as a module: one linear layer, x (B, F) → logits (B, C).

    Not a deep model (it has no large preset over a million parameters): it exists so that a
    logistic regression chosen by ``--model auto`` is deployed like any other bundle
    (safetensors weights, temperature, attributions).
    """

    PRESETS: dict[str, dict[str, Any]] = {"small": {}, "large": {}}

    def __init__(self, *, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Linear(n_features, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> tuple[LogisticModel, dict[str, Any]]:
        """The module and its spec from :func:`fit_logistic` state."""
        params = {"n_features": int(state["n_features"]), "n_outputs": int(state["n_classes"])}
        model = cls(**params)
        linear = cast(nn.Linear, model.head[0])
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(np.asarray(state["coef"]), dtype=torch.float32))
            linear.bias.copy_(torch.as_tensor(np.asarray(state["intercept"]), dtype=torch.float32))
        model.eval()
        return model, {"name": "logistic", "size": "small", "params": params}
