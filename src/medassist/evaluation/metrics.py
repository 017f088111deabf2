"""Classification metrics: pure ``compute_*`` functions, a stateful accumulator, bootstrap CIs.

Conventions, shared by every function here:

* ``y_true`` is an int array (N,) of class indices ``0..C-1``;
* ``y_prob`` is a float array (N, C) of probabilities whose rows sum to 1;
* a binary task has ``C == 2`` and ``positive_index`` (default 1) names the positive class; a
  sample is predicted positive when ``y_prob[:, positive_index] >= threshold`` (default 0.5);
* a multiclass task (``C > 2``) predicts the argmax and averages per-class metrics with equal
  weight per class (macro); ``positive_index`` and ``threshold`` are ignored there.

A metric that is not defined for the input (one class only, a zero denominator) issues an
:class:`UndefinedMetricWarning` and returns ``float('nan')``: it never invents a number. In
particular, unlike scikit-learn's ``zero_division=0``, a macro average over classes where one
class is undefined is NaN, not an average that quietly counts that class as 0.

Example:
    >>> y_prob = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> compute_roc_auc(y_prob, np.array([0, 1, 1]))
    1.0
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from medassist.evaluation.bootstrap import (
    check_bootstrap,
    json_float,
    percentile_ci,
    resample_weights,
    resamples,
)
from medassist.exceptions import ConfigError, DataError, EmptyDataError
from medassist.validation import check_number

#: Metric names in the order reports show them.
METRIC_NAMES: tuple[str, ...] = (
    "auc", "pr_auc", "accuracy", "sensitivity", "specificity", "f1", "brier", "ece",
)
#: Largest allowed distance of a row sum of ``y_prob`` from 1.
ROW_SUM_TOL = 1e-3


class UndefinedMetricWarning(UserWarning):
    """A metric is not defined for the given input (e.g. one class only); NaN was returned."""


# --------------------------------------------------------------------------- validation


def to_numpy(x: Any) -> np.ndarray:
    """Array from ndarray, list or a (CPU or GPU) torch tensor, without importing torch."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def check_inputs(
    y_prob: Any, y_true: Any, *, positive_index: int = 1, owner: str = "metric"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``(y_prob float64 (N, C), y_true int64 (N,))``."""
    p = to_numpy(y_prob)
    y = to_numpy(y_true)
    if p.ndim != 2 or p.shape[1] < 2:
        raise DataError(
            f"{owner}: y_prob must be a 2-D array (N, C) with C >= 2 class columns. "
            f"Got shape {p.shape} instead."
        )
    if y.ndim != 1:
        raise DataError(f"{owner}: y_true must be a 1-D array (N,). Got shape {y.shape} instead.")
    if len(y) != len(p):
        raise DataError(
            f"{owner}: y_prob has {len(p)} rows but y_true has {len(y)}; expected the same number."
        )
    if len(y) == 0:
        raise EmptyDataError(f"{owner}: got 0 samples; expected at least one.")
    if not np.issubdtype(p.dtype, np.number) or np.issubdtype(p.dtype, np.complexfloating):
        raise DataError(f"{owner}: y_prob must hold real numbers. Got dtype {p.dtype} instead.")
    p = p.astype(np.float64, copy=False)
    if not np.all(np.isfinite(p)):
        raise DataError(f"{owner}: y_prob holds {int(np.sum(~np.isfinite(p)))} NaN/inf value(s).")
    if p.min() < -1e-6 or p.max() > 1 + 1e-6:
        raise DataError(
            f"{owner}: y_prob must be probabilities in [0, 1]. Got values in "
            f"[{p.min():.4g}, {p.max():.4g}]; pass softmax outputs, not logits."
        )
    row_err = np.abs(p.sum(axis=1) - 1.0)
    if row_err.max() > ROW_SUM_TOL:
        bad = int(np.argmax(row_err))
        raise DataError(
            f"{owner}: each row of y_prob must sum to 1 (within {ROW_SUM_TOL:g}). "
            f"Row {bad} sums to {p[bad].sum():.6g}."
        )
    if y.dtype == bool:
        y = y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.isfinite(y)) or np.any(
            y != np.round(y)
        ):
            raise DataError(
                f"{owner}: y_true must hold integer class indices 0..{p.shape[1] - 1}. "
                f"Got dtype {y.dtype} with non-integer values."
            )
    y = y.astype(np.int64, copy=False)
    n_classes = p.shape[1]
    if y.min() < 0 or y.max() >= n_classes:
        raise DataError(
            f"{owner}: y_true must hold class indices in 0..{n_classes - 1} (y_prob has "
            f"{n_classes} columns). Got values in [{y.min()}, {y.max()}]."
        )
    if n_classes == 2:
        _check_positive_index(positive_index, owner=owner)
    return p, y


def _check_positive_index(positive_index: Any, *, owner: str) -> int:
    if isinstance(positive_index, bool) or positive_index not in (0, 1):
        raise ConfigError(
            f"The 'positive_index' parameter of {owner} must be 0 or 1 for a binary task. "
            f"Got {positive_index!r} instead."
        )
    return int(positive_index)


def positive_column(positive_index: Any, n_classes: int) -> int:
    """The positive column for a binary task; multiclass ignores it (None allowed there)."""
    return int(positive_index) if n_classes == 2 else 0


def _check_threshold(threshold: Any, *, owner: str) -> float:
    return float(check_number(threshold, name="threshold", owner=owner, low=0, high=1))


def check_n_bins(n_bins: Any, *, owner: str) -> int:
    """Validate the number of calibration bins (an integer >= 1)."""
    return int(check_number(n_bins, name="n_bins", owner=owner, low=1, integer=True))


def _undefined(metric: str, reason: str) -> float:
    warnings.warn(
        f"{metric} is undefined: {reason}. Returning NaN.", UndefinedMetricWarning, stacklevel=5
    )
    return math.nan


# --------------------------------------------------------------------------- kernels
# Every metric is computed from a weight matrix W (B, N): row b counts how often each sample
# occurs in bootstrap resample b. The point estimate is the same code with W = ones((1, N)), so
# estimate and interval cannot drift apart, and B resamples cost a few array operations rather
# than B rounds of Python calls.

#: Elements of W processed at once by the bootstrap (bounds memory for large test sets).
_CHUNK_ELEMS = 2_000_000


def _predict(p: np.ndarray, positive_index: int, threshold: float) -> np.ndarray:
    if p.shape[1] == 2:
        positive = p[:, positive_index] >= threshold
        return np.where(positive, positive_index, 1 - positive_index)
    return np.argmax(p, axis=1)


def _confusion(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (C, C): rows are true classes, columns predicted classes."""
    return np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def calibration_target(
    p: np.ndarray, y: np.ndarray, positive_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Binary: (p_pos, y == pos). Multiclass: (top-label confidence, top label correct)."""
    if p.shape[1] == 2:
        return p[:, positive_index], (y == positive_index).astype(np.float64)
    return p.max(axis=1), (np.argmax(p, axis=1) == y).astype(np.float64)


def bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bins [k/B, (k+1)/B) on [0, 1], the last one closed."""
    return np.clip((conf * n_bins).astype(np.int64), 0, n_bins - 1)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, math.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _group_sum(W: np.ndarray, keys: np.ndarray, n_keys: int) -> np.ndarray:
    """Sum the columns of W (B, N) by integer key (N,) in [0, n_keys) -> (B, n_keys)."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    out = np.zeros((W.shape[0], n_keys))
    out[:, k[starts]] = np.add.reduceat(W[:, order], starts, axis=1)
    return out


def _level_sums(
    score: np.ndarray, is_pos: np.ndarray, W: np.ndarray, *, descending: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Weight of positives and negatives (B, L) at each distinct score level, in score order."""
    order = np.argsort(-score if descending else score, kind="mergesort")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    Ws = W[:, order]
    pos = np.add.reduceat(Ws * is_pos[order], starts, axis=1)
    return pos, np.add.reduceat(Ws, starts, axis=1) - pos


def _auc_w(score: np.ndarray, is_pos: np.ndarray, W: np.ndarray) -> np.ndarray:
    """P(score_pos > score_neg) + P(tie) / 2, i.e. the trapezoidal ROC area; (B,)."""
    pos, neg = _level_sums(score, is_pos, W, descending=False)
    below = np.cumsum(neg, axis=1) - neg
    num = np.sum(pos * (below + 0.5 * neg), axis=1)
    return _safe_div(num, pos.sum(axis=1) * neg.sum(axis=1))


def _ap_w(score: np.ndarray, is_pos: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Average precision sum_k (R_k - R_{k-1}) P_k over distinct thresholds (as scikit-learn)."""
    pos, neg = _level_sums(score, is_pos, W, descending=True)
    tps = np.cumsum(pos, axis=1)
    total = tps + np.cumsum(neg, axis=1)
    precision = np.divide(tps, total, out=np.zeros_like(tps), where=total > 0)
    return _safe_div(np.sum(pos * precision, axis=1), pos.sum(axis=1))


def _metric_matrix(
    p: np.ndarray, y: np.ndarray, pos: int, thr: float, n_bins: int, W: np.ndarray,
    names: Sequence[str] = METRIC_NAMES,
) -> dict[str, np.ndarray]:
    """Each named metric (B,) for the weights W (B, N); NaN where it is undefined."""
    n_classes = p.shape[1]
    binary = n_classes == 2
    total = W.sum(axis=1)
    cols = [pos] if binary else list(range(n_classes))
    out: dict[str, np.ndarray] = {}
    # A macro mean over classes is NaN as soon as one class is undefined (np.mean propagates).
    if "auc" in names:
        out["auc"] = np.mean([_auc_w(p[:, k], y == k, W) for k in cols], axis=0)
    if "pr_auc" in names:
        out["pr_auc"] = np.mean([_ap_w(p[:, k], y == k, W) for k in cols], axis=0)
    if {"accuracy", "sensitivity", "specificity", "f1"} & set(names):
        pred = _predict(p, pos, thr)
        cm = _group_sum(W, y * n_classes + pred, n_classes**2).reshape(-1, n_classes, n_classes)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        support = cm.sum(axis=2)
        fp = cm.sum(axis=1) - tp
        negatives = total[:, None] - support
        out["accuracy"] = _safe_div(tp.sum(axis=1), total)
        per_class = {
            "sensitivity": _safe_div(tp, support),
            "specificity": _safe_div(negatives - fp, negatives),
            "f1": _safe_div(2 * tp, support + tp + fp),
        }
        for name, values in per_class.items():
            out[name] = values[:, pos] if binary else values.mean(axis=1)
    if "brier" in names:
        if binary:
            loss = (p[:, pos] - (y == pos)) ** 2
        else:
            onehot = np.zeros_like(p)
            onehot[np.arange(len(y)), y] = 1.0
            loss = np.sum((p - onehot) ** 2, axis=1)
        out["brier"] = _safe_div(W @ loss, total)
    if "ece" in names:
        conf, target = calibration_target(p, y, pos)
        idx = bin_index(conf, n_bins)
        gap = _group_sum(W * conf, idx, n_bins) - _group_sum(W * target, idx, n_bins)
        out["ece"] = _safe_div(np.abs(gap).sum(axis=1), total)
    return {name: out[name] for name in names}


#: Why a metric can be undefined: (binary, multiclass).
_REASONS = {
    "auc": ("y_true holds one class only", "some class is absent from y_true"),
    "pr_auc": ("y_true holds no positive sample", "some class is absent from y_true"),
    "accuracy": ("there are no samples", "there are no samples"),
    "sensitivity": ("y_true holds no positive sample", "some class is absent from y_true"),
    "specificity": ("y_true holds no negative sample", "y_true holds one class only"),
    "f1": ("no positive sample in y_true and none predicted",
           "some class is neither present in y_true nor predicted"),
    "brier": ("there are no samples", "there are no samples"),
    "ece": ("there are no samples", "there are no samples"),
}


def _point_metrics(
    p: np.ndarray, y: np.ndarray, pos: int, thr: float, n_bins: int,
    names: Sequence[str] = METRIC_NAMES,
) -> dict[str, float]:
    """Metrics on the data as given; a NaN comes with an :class:`UndefinedMetricWarning`."""
    values = _metric_matrix(p, y, pos, thr, n_bins, np.ones((1, len(y))), names)
    result = {}
    for name in names:
        value = float(values[name][0])
        if math.isnan(value):
            value = _undefined(name, _REASONS[name][p.shape[1] > 2])
        result[name] = value
    return result


def _compute(
    name: str, y_prob: Any, y_true: Any, *, positive_index: int = 1, threshold: float = 0.5,
    n_bins: int = 15,
) -> float:
    owner = f"compute_{name}"
    p, y = check_inputs(y_prob, y_true, positive_index=positive_index, owner=owner)
    thr = _check_threshold(threshold, owner=owner)
    bins = check_n_bins(n_bins, owner=owner)
    return _point_metrics(p, y, positive_column(positive_index, p.shape[1]), thr, bins, (name,))[name]


# --------------------------------------------------------------------------- pure functions


def compute_roc_auc(y_prob: Any, y_true: Any, *, positive_index: int = 1) -> float:
    """Area under the ROC curve.

    Binary: AUC of ``y_prob[:, positive_index]``. Multiclass: macro one-vs-rest AUC.

    Args:
        y_prob: probabilities (N, C), rows summing to 1.
        y_true: class indices (N,).
        positive_index: column of the positive class (binary only).

    Returns:
        AUC in [0, 1]; NaN (with a warning) when a class needed for it is absent.

    Example:
        >>> compute_roc_auc(np.array([[0.8, 0.2], [0.3, 0.7]]), np.array([0, 1]))
        1.0
    """
    return _compute("auc", y_prob, y_true, positive_index=positive_index)


def compute_pr_auc(y_prob: Any, y_true: Any, *, positive_index: int = 1) -> float:
    """Average precision (area under the precision-recall curve, step-wise as scikit-learn).

    Binary: of the positive column. Multiclass: macro over one-vs-rest classes.
    Shapes as :func:`compute_roc_auc`; NaN (with a warning) when there is no positive sample.
    """
    return _compute("pr_auc", y_prob, y_true, positive_index=positive_index)


def compute_accuracy(
    y_prob: Any, y_true: Any, *, positive_index: int = 1, threshold: float = 0.5
) -> float:
    """Share of samples whose predicted class equals ``y_true``; y_prob (N, C), y_true (N,)."""
    return _compute("accuracy", y_prob, y_true, positive_index=positive_index, threshold=threshold)


def compute_sensitivity(
    y_prob: Any, y_true: Any, *, positive_index: int = 1, threshold: float = 0.5
) -> float:
    """Recall of the positive class TP / (TP + FN); multiclass: macro recall.

    NaN (with a warning) when the positive class (or, multiclass, any class) is absent.
    """
    return _compute(
        "sensitivity", y_prob, y_true, positive_index=positive_index, threshold=threshold
    )


def compute_specificity(
    y_prob: Any, y_true: Any, *, positive_index: int = 1, threshold: float = 0.5
) -> float:
    """Binary: TN / (TN + FP). Multiclass: macro of per-class one-vs-rest specificities."""
    return _compute(
        "specificity", y_prob, y_true, positive_index=positive_index, threshold=threshold
    )


def compute_f1(
    y_prob: Any, y_true: Any, *, positive_index: int = 1, threshold: float = 0.5
) -> float:
    """Binary: F1 of the positive class, 2TP / (2TP + FP + FN). Multiclass: macro F1."""
    return _compute("f1", y_prob, y_true, positive_index=positive_index, threshold=threshold)


def compute_brier(y_prob: Any, y_true: Any, *, positive_index: int = 1) -> float:
    """Brier score (lower is better).

    Binary: ``mean((p_pos - y_pos) ** 2)``, in [0, 1] (scikit-learn's ``brier_score_loss``).
    Multiclass: Brier's original definition, ``mean_i sum_k (p_ik - [y_i == k]) ** 2``, in
    [0, 2]; it is *not* divided by C. (For C == 2 it would be twice the binary score.)
    """
    return _compute("brier", y_prob, y_true, positive_index=positive_index)


def compute_ece(
    y_prob: Any, y_true: Any, *, positive_index: int = 1, n_bins: int = 15
) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins on [0, 1].

    ``sum_b (n_b / N) * |mean confidence_b - observed frequency_b|``. Binary: confidence is the
    positive-class probability and the frequency is the share of positives. Multiclass: top-label
    confidence (max probability) against the share of correct top-label predictions.
    """
    return _compute("ece", y_prob, y_true, positive_index=positive_index, n_bins=n_bins)


def confusion_matrix(
    y_prob: Any, y_true: Any, *, positive_index: int = 1, threshold: float = 0.5
) -> np.ndarray:
    """Counts (C, C) int64; rows are true classes, columns predicted classes."""
    p, y = check_inputs(y_prob, y_true, positive_index=positive_index, owner="confusion_matrix")
    thr = _check_threshold(threshold, owner="confusion_matrix")
    return _confusion(y, _predict(p, positive_column(positive_index, p.shape[1]), thr), p.shape[1])


# --------------------------------------------------------------------------- stateful


class ClassificationMetrics:
    """Accumulate predictions batch by batch, then compute every metric at once.

    Args:
        n_classes: number of classes C (>= 2).
        positive_index: column of the positive class when C == 2.
        threshold: decision threshold on the positive-class probability (binary only).
        n_bins: bins of the expected calibration error.

    Example:
        >>> m = ClassificationMetrics(n_classes=2)
        >>> for prob, target in batches:
        ...     m.update(prob, target)   # prob (B, 2), target (B,)
        >>> m.aggregate()["auc"]
        0.87
    """

    def __init__(
        self, *, n_classes: int, positive_index: int = 1, threshold: float = 0.5, n_bins: int = 15
    ) -> None:
        owner = "ClassificationMetrics"
        self.n_classes = int(check_number(n_classes, name="n_classes", owner=owner, low=2,
                                          integer=True))
        if self.n_classes == 2:
            _check_positive_index(positive_index, owner=owner)
        self.positive_index = positive_column(positive_index, self.n_classes)
        self.threshold = _check_threshold(threshold, owner=owner)
        self.n_bins = check_n_bins(n_bins, owner=owner)
        self._probs: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []

    def update(self, y_prob: Any, y_true: Any) -> None:
        """Add a batch: ``y_prob`` (B, C) probabilities and ``y_true`` (B,) class indices."""
        p, y = check_inputs(
            y_prob, y_true, positive_index=self.positive_index, owner="ClassificationMetrics"
        )
        if p.shape[1] != self.n_classes:
            raise DataError(
                f"ClassificationMetrics: expected y_prob with {self.n_classes} columns. "
                f"Got {p.shape[1]}."
            )
        self._probs.append(p.copy())
        self._targets.append(y.copy())

    def aggregate(self) -> dict[str, float]:
        """Every metric of :data:`METRIC_NAMES` over all batches seen since the last reset."""
        if not self._probs:
            raise EmptyDataError("ClassificationMetrics: aggregate() called before any update().")
        p = np.concatenate(self._probs)
        y = np.concatenate(self._targets)
        return _point_metrics(p, y, self.positive_index, self.threshold, self.n_bins)

    def reset(self) -> None:
        """Forget every batch."""
        self._probs.clear()
        self._targets.clear()


# --------------------------------------------------------------------------- bootstrap


def _bootstrap_matrix(
    p: np.ndarray, y: np.ndarray, pos: int, thr: float, n_bins: int, *, n_boot: int, seed: int
) -> np.ndarray:
    """Every metric of :data:`METRIC_NAMES` on each resample -> (n_boot, M); NaN if undefined."""
    out = np.full((n_boot, len(METRIC_NAMES)), math.nan)
    for start, W in resample_weights(len(y), n_boot, seed, chunk_elems=_CHUNK_ELEMS):
        values = _metric_matrix(p, y, pos, thr, n_bins, W)
        out[start : start + len(W)] = np.column_stack([values[name] for name in METRIC_NAMES])
    return out


#: How the ECE interval is built (recorded in the evaluation JSON next to the percentile method).
ECE_INTERVAL_METHOD = "basic+percentile bootstrap hull, lower bound 0 when consistent with perfect calibration"


def _ece_interval(
    p: np.ndarray, y: np.ndarray, pos: int, n_bins: int, point: float, boot: np.ndarray, alpha: float, seed: int
) -> tuple[float, float, int]:
    """Interval for the true expected calibration error that contains the point estimate.

    The binned ECE is biased upwards (bins' outcome rates carry sampling noise, and |noise| > 0),
    so the plain percentile bootstrap sits above the estimate: "0.095 [0.095, 0.198]", and for a
    perfectly calibrated model it never covers the true ECE of 0. Here:

    * upper bound: the larger of the percentile and the basic (reflected) bootstrap bounds;
    * lower bound: 0 when the observed ECE is no larger than the ECE a perfectly calibrated model
      with these very probabilities would show in ``1 - alpha/2`` of samples (consistency
      resampling, Bröcker & Smith 2007: outcomes redrawn as Bernoulli(confidence)); otherwise
      the smaller of the percentile and basic bounds (the basic one corrects the upward bias);
    * the estimate is always inside. Seeded simulations (tests/unit/evaluation/test_metrics.py)
      give about 95% coverage or more, for calibrated and miscalibrated models alike.
    """
    finite = boot[np.isfinite(boot)]
    if finite.size == 0 or not math.isfinite(point):
        return math.nan, math.nan, 0
    q_lo, q_hi = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    conf, _ = calibration_target(p, y, pos)
    idx = bin_index(conf, n_bins)
    rng = np.random.default_rng(seed + 1)  # a stream apart from the resamples of the other metrics
    null = np.empty(finite.size)
    chunk = max(1, _CHUNK_ELEMS // len(conf))
    for start in range(0, finite.size, chunk):
        b = min(chunk, finite.size - start)
        drawn = (rng.random((b, len(conf))) < conf).astype(np.float64)
        null[start : start + b] = np.abs(_group_sum(conf[None, :] - drawn, idx, n_bins)).sum(axis=1) / len(conf)
    consistent = point <= float(np.quantile(null, 1 - alpha / 2))
    low = 0.0 if consistent else max(0.0, min(float(q_lo), 2 * point - float(q_hi)))
    high = min(1.0, max(float(q_hi), 2 * point - float(q_lo)))
    return min(low, point), max(high, point), int(finite.size)


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    y_prob: Any,
    y_true: Any,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile-bootstrap confidence interval of ``metric_fn``.

    Rows are resampled with replacement ``n_boot`` times. Resamples where the metric is NaN
    (e.g. one class only) are skipped, silently; if all are NaN the bounds are NaN.

    Args:
        metric_fn: ``f(y_prob, y_true) -> float``; use ``functools.partial`` for options.
        y_prob: probabilities (N, C).
        y_true: class indices (N,).
        n_boot: number of resamples.
        alpha: 1 - confidence level (0.05 gives a 95% interval).
        seed: seed of the resampling generator.

    Returns:
        ``(point, low, high)``.

    Example:
        >>> bootstrap_ci(compute_roc_auc, y_prob, y_true, n_boot=500)
        (0.84, 0.79, 0.88)
    """
    check_bootstrap(n_boot, alpha, seed, owner="bootstrap_ci")
    p, y = to_numpy(y_prob), to_numpy(y_true)
    if p.ndim < 1 or len(p) != len(y) or len(y) == 0:
        raise DataError(
            f"bootstrap_ci: y_prob and y_true must have the same number (> 0) of rows. "
            f"Got {p.shape} and {y.shape}."
        )
    point = float(metric_fn(p, y))
    values = np.empty(n_boot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for b, idx in enumerate(resamples(len(y), n_boot, seed)):
            values[b] = metric_fn(p[idx], y[idx])
    low, high, _ = percentile_ci(values, alpha)
    return point, low, high


def paired_auc_difference(
    y_prob_a: Any,
    y_prob_b: Any,
    y_true: Any,
    *,
    positive_index: int = 1,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """AUC of model A minus AUC of model B on the same rows, with a paired bootstrap interval.

    Both models are scored on the *same* resamples (the stream :func:`evaluate_classification`
    draws with the same ``seed``), so the interval reflects the difference, not two independent
    uncertainties. An interval that contains 0 means the data cannot tell the two apart.

    Args:
        y_prob_a: probabilities (N, C) of model A (the model under review).
        y_prob_b: probabilities (N, C) of model B (the comparator, e.g. a baseline).
        y_true: class indices (N,).
        positive_index: column of the positive class (binary only).
        n_boot: resamples; 0 gives no interval (bounds None).
        alpha: 1 - confidence level.
        seed: seed of the resampling generator.

    Returns:
        ``{"auc_a", "auc_b", "difference", "ci_low", "ci_high", "n_boot", "n_boot_valid",
        "alpha", "seed", "method"}``; undefined values are None.

    Example:
        >>> paired_auc_difference(p_mlp, p_logistic, y, n_boot=500)["difference"]
        -0.012
    """
    owner = "paired_auc_difference"
    pa, y = check_inputs(y_prob_a, y_true, positive_index=positive_index, owner=owner)
    pb, _ = check_inputs(y_prob_b, y_true, positive_index=positive_index, owner=owner)
    if pa.shape != pb.shape:
        raise DataError(f"{owner}: both models need probabilities of the same shape. Got {pa.shape} and {pb.shape}.")
    check_bootstrap(n_boot, alpha, seed, owner=owner, min_boot=0)
    pos = positive_column(positive_index, pa.shape[1])
    n = len(y)
    one = np.ones((1, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        auc_a = float(_metric_matrix(pa, y, pos, 0.5, 15, one, ("auc",))["auc"][0])
        auc_b = float(_metric_matrix(pb, y, pos, 0.5, 15, one, ("auc",))["auc"][0])
    diffs = np.full(n_boot, math.nan)
    for start, W in resample_weights(n, n_boot, seed, chunk_elems=_CHUNK_ELEMS):
        diffs[start : start + len(W)] = (_metric_matrix(pa, y, pos, 0.5, 15, W, ("auc",))["auc"]
                                         - _metric_matrix(pb, y, pos, 0.5, 15, W, ("auc",))["auc"])
    low, high, n_valid = percentile_ci(diffs, alpha) if n_boot else (math.nan, math.nan, 0)
    return {
        "auc_a": json_float(auc_a), "auc_b": json_float(auc_b), "difference": json_float(auc_a - auc_b),
        "ci_low": json_float(low), "ci_high": json_float(high), "n_boot": int(n_boot), "n_boot_valid": n_valid,
        "alpha": float(alpha), "seed": int(seed), "method": "paired percentile bootstrap (same resamples for both models)",
    }


# --------------------------------------------------------------------------- evaluation


def check_classes(classes: Any, n_classes: int, *, owner: str) -> list[str]:
    """Validate class names: ``n_classes`` distinct names, one per column of y_prob."""
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise ConfigError(f"The 'classes' parameter of {owner} must be a list of names. "
                          f"Got {classes!r} instead.")
    names = [str(c) for c in classes]
    if len(names) != n_classes or len(set(names)) != len(names):
        raise ConfigError(
            f"The 'classes' parameter of {owner} must hold {n_classes} distinct names, one per "
            f"column of y_prob. Got {names!r} instead."
        )
    return names


def evaluate_classification(
    y_prob: Any,
    y_true: Any,
    *,
    classes: Sequence[str],
    positive_index: int = 1,
    threshold: float = 0.5,
    n_boot: int = 1000,
    alpha: float = 0.05,
    n_bins: int = 15,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric with a bootstrap CI, class counts and the confusion matrix, as plain JSON.

    Args:
        y_prob: probabilities (N, C).
        y_true: class indices (N,).
        classes: C class names, in column order.
        positive_index: column of the positive class (binary only).
        threshold: decision threshold on the positive-class probability (binary only).
        n_boot: bootstrap resamples; 0 skips the intervals (their bounds are None).
        alpha: 1 - confidence level of the intervals.
        n_bins: bins of the expected calibration error.
        seed: seed of the resampling generator.

    Returns:
        ``{"n", "task", "classes", "positive_class", "threshold", "class_counts",
        "metrics": {name: {"value", "ci_low", "ci_high", "n_boot_valid"}},
        "confusion_matrix" (rows true, columns predicted), "bootstrap": {...}}``.
        Undefined values are None, so ``json.dumps(..., allow_nan=False)`` works.
    """
    owner = "evaluate_classification"
    p, y = check_inputs(y_prob, y_true, positive_index=positive_index, owner=owner)
    n_classes = p.shape[1]
    names = check_classes(classes, n_classes, owner=owner)
    thr = _check_threshold(threshold, owner=owner)
    bins = check_n_bins(n_bins, owner=owner)
    check_bootstrap(n_boot, alpha, seed, owner=owner, min_boot=0)
    pos = positive_column(positive_index, n_classes)

    point = _point_metrics(p, y, pos, thr, bins)
    boot = _bootstrap_matrix(p, y, pos, thr, bins, n_boot=n_boot, seed=seed)

    metrics: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(METRIC_NAMES):
        if not n_boot:
            low, high, n_valid = None, None, 0
        elif name == "ece":
            low, high, n_valid = _ece_interval(p, y, pos, bins, point[name], boot[:, j], alpha, seed)
        else:
            low, high, n_valid = percentile_ci(boot[:, j], alpha)
        metrics[name] = {
            "value": json_float(point[name]),
            "ci_low": json_float(low),
            "ci_high": json_float(high),
            "n_boot_valid": n_valid,
        }
    counts = np.bincount(y, minlength=n_classes)
    binary = n_classes == 2
    return {
        "n": int(len(y)),
        "task": "binary" if binary else "multiclass",
        "classes": names,
        "positive_class": names[pos] if binary else None,
        "threshold": thr if binary else None,
        "class_counts": {name: int(c) for name, c in zip(names, counts)},
        "metrics": metrics,
        "confusion_matrix": _confusion(y, _predict(p, pos, thr), n_classes).tolist(),
        "bootstrap": {"n_boot": int(n_boot), "alpha": float(alpha), "seed": int(seed),
                      "method": "percentile", "ece_method": ECE_INTERVAL_METHOD},
        "ece_bins": bins,
    }


def subgroup_metrics(
    y_prob: Any,
    y_true: Any,
    groups: Any,
    *,
    classes: Sequence[str],
    positive_index: int = 1,
    threshold: float = 0.5,
    min_size: int = 10,
) -> list[dict[str, Any]]:
    """Metrics per subgroup (e.g. sex or age band), for fairness tables in reports.

    Groups smaller than ``min_size`` are listed with ``"suppressed": True`` and no metrics,
    since a number from a handful of patients misleads (and may identify them). A missing group
    label (None or NaN) forms its own group, ``"(missing)"``, rather than joining another.

    Args:
        y_prob: probabilities (N, C).
        y_true: class indices (N,).
        groups: group label per sample (N,).
        classes: C class names.
        positive_index: column of the positive class (binary only).
        threshold: decision threshold (binary only).
        min_size: smallest group that gets metrics.

    Returns:
        One dict per group, sorted by name: ``{"group", "n", "class_counts", "suppressed",
        "auc", "accuracy", "sensitivity", "specificity"}`` (undefined values are None).
    """
    owner = "subgroup_metrics"
    p, y = check_inputs(y_prob, y_true, positive_index=positive_index, owner=owner)
    names = check_classes(classes, p.shape[1], owner=owner)
    thr = _check_threshold(threshold, owner=owner)
    check_number(min_size, name="min_size", owner=owner, low=1, integer=True)
    g = to_numpy(groups)
    if g.ndim != 1 or len(g) != len(y):
        raise DataError(f"{owner}: groups must be 1-D with {len(y)} labels. Got shape {g.shape}.")
    labels = np.array(
        ["(missing)" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
         for v in g.tolist()],
        dtype=object,
    )
    pos = positive_column(positive_index, p.shape[1])
    rows = []
    for name in sorted(set(labels.tolist())):
        mask = labels == name
        pg, yg = p[mask], y[mask]
        counts = np.bincount(yg, minlength=p.shape[1])
        row: dict[str, Any] = {
            "group": name,
            "n": int(mask.sum()),
            "class_counts": {c: int(k) for c, k in zip(names, counts)},
            "suppressed": bool(mask.sum() < min_size),
        }
        names_ = ("auc", "accuracy", "sensitivity", "specificity")
        values = {} if row["suppressed"] else _point_metrics(pg, yg, pos, thr, 15, names_)
        row.update({m: json_float(values.get(m, math.nan)) for m in names_})
        rows.append(row)
    return rows
