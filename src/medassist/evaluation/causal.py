"""Treatment-effect evaluation: doubly robust pseudo-outcomes, policy values, effect calibration,
and the semi-synthetic scores sqrt(PEHE) and ATE error, with percentile-bootstrap intervals.

Conventions: ``arm`` is an int array (N,) of arm indices ``0..A-1``; ``mu`` (N, A) the predicted
outcome of every row under every arm; ``propensity`` (N, A) the probability of each arm given
the covariates (known by design in a randomised trial); ``weights`` (N,) optional inverse
probability of censoring weights (1 for an uncensored outcome, 0 for a row whose outcome is not
observed up to the horizon). Effects are contrasts against a reference arm ``ref``.

Example:
    >>> phi = dr_pseudo_outcomes(y, arm, mu, propensity, ref=0)       # (N, A-1)
    >>> policy_value(y, arm, policy, propensity, mu=mu)               # doubly robust value
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from medassist.evaluation.bootstrap import bootstrap
from medassist.evaluation.survival import kaplan_meier as _kaplan_meier
from medassist.exceptions import DataError


def _arrays(y: Any, arm: Any, propensity: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, arm, e = np.asarray(y, dtype=float), np.asarray(arm, dtype=int), np.asarray(propensity, dtype=float)
    if y.ndim != 1 or arm.shape != y.shape or e.ndim != 2 or len(e) != len(y):
        raise DataError(f"Expected y (N,), arm (N,) and propensity (N, A); got {y.shape}, {arm.shape} and {e.shape}.")
    if len(y) == 0:
        raise DataError("No rows to evaluate.")
    if np.any(e[np.arange(len(arm)), arm] <= 0):
        raise DataError("A row's own arm has propensity 0: its outcome cannot be weighted (clip propensities first).")
    return y, arm, e


def dr_pseudo_outcomes(
    y: Any, arm: Any, mu: Any, propensity: Any, *, ref: int, weights: Any | None = None
) -> np.ndarray:
    """AIPW pseudo-outcomes of every arm against ``ref`` (Kennedy's DR-learner), (N, A-1).

    phi_a = mu_a - mu_ref + 1[T=a] w (Y - mu_a) / e_a - 1[T=ref] w (Y - mu_ref) / e_ref; their
    mean is the doubly robust ATE and their regression on X the DR-learner's CATE.
    """
    y, arm, e = _arrays(y, arm, propensity)
    mu = np.asarray(mu, dtype=float)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    yy = np.where(w > 0, y, 0.0)  # an unobserved outcome has weight 0; its value never enters
    n_arms = mu.shape[1]
    cols = []
    for a in range(n_arms):
        if a == ref:
            continue
        phi = mu[:, a] - mu[:, ref]
        phi = phi + (arm == a) * w * (yy - mu[:, a]) / e[:, a] - (arm == ref) * w * (yy - mu[:, ref]) / e[:, ref]
        cols.append(phi)
    return np.stack(cols, axis=1)


def policy_value(
    y: Any, arm: Any, policy: Any, propensity: Any, *, mu: Any | None = None, weights: Any | None = None
) -> float:
    """Mean outcome if every row received ``policy`` (N,) arm indices: IPW, or AIPW with ``mu``.

    IPW: mean(1[T=pi] w Y / e_pi). Doubly robust: mean(mu_pi + 1[T=pi] w (Y - mu_pi) / e_pi).
    """
    y, arm, e = _arrays(y, arm, propensity)
    pi = np.asarray(policy, dtype=int)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    yy = np.where(w > 0, y, 0.0)
    rows = np.arange(len(y))
    match = (arm == pi).astype(float)
    e_pi = e[rows, pi]
    if mu is None:
        return float(np.mean(match * w * yy / e_pi))
    m = np.asarray(mu, dtype=float)[rows, pi]
    return float(np.mean(m + match * w * (yy - m) / e_pi))


def interval(point: Any, lo: Any, hi: Any) -> dict[str, float] | list[dict[str, float]]:
    """``{"value", "ci_low", "ci_high"}`` (or a list of them) as plain floats for JSON."""
    p, a, b = np.atleast_1d(point), np.atleast_1d(lo), np.atleast_1d(hi)
    rows = [{"value": float(x), "ci_low": float(u), "ci_high": float(v)} for x, u, v in zip(p, a, b)]
    return rows[0] if np.ndim(point) == 0 else rows


# ---------------------------------------------------------------- semi-synthetic scores


def sqrt_pehe(tau_hat: Any, tau_true: Any) -> float:
    """Root mean squared error of individual effects, sqrt(PEHE), over rows (and contrasts)."""
    a, b = np.asarray(tau_hat, dtype=float), np.asarray(tau_true, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise DataError(f"sqrt_pehe: tau_hat {a.shape} and tau_true {b.shape} must have the same non-empty shape.")
    return float(np.sqrt(np.mean((a - b) ** 2)))


def ate_error(tau_hat: Any, tau_true: Any) -> float:
    """Absolute error of the average effect, averaged over contrasts (columns)."""
    a, b = np.atleast_2d(np.asarray(tau_hat, dtype=float).T).T, np.atleast_2d(np.asarray(tau_true, dtype=float).T).T
    if a.shape != b.shape or a.size == 0:
        raise DataError(f"ate_error: tau_hat {a.shape} and tau_true {b.shape} must have the same non-empty shape.")
    return float(np.mean(np.abs(a.mean(axis=0) - b.mean(axis=0))))


def interval_coverage(lo: Any, hi: Any, truth: Any) -> float:
    """Share of true values inside their intervals."""
    lo, hi, t = (np.asarray(v, dtype=float) for v in (lo, hi, truth))
    return float(np.mean((lo <= t) & (t <= hi)))


# ---------------------------------------------------------------- effect calibration


def blp_calibration(tau_hat: Any, pseudo: Any) -> dict[str, float]:
    """Best linear predictor test (Chernozhukov et al.): regress the DR pseudo-outcome on
    ``mean(tau_hat)`` and ``tau_hat - mean(tau_hat)``.

    ``slope`` near 1 means the predicted heterogeneity is real and well scaled, near 0 that it is
    noise; ``ate`` is the intercept. Standard errors are heteroskedasticity-robust (HC1).
    """
    t, p = np.asarray(tau_hat, dtype=float), np.asarray(pseudo, dtype=float)
    n = len(t)
    if n < 4 or t.shape != p.shape:
        raise DataError(f"blp_calibration: needs matching (N,) arrays with N >= 4; got {t.shape} and {p.shape}.")
    x = np.column_stack([np.ones(n), t - t.mean()])
    xtx_inv = np.linalg.pinv(x.T @ x)
    beta = xtx_inv @ x.T @ p
    resid = p - x @ beta
    meat = (x * resid[:, None] ** 2).T @ x
    cov = xtx_inv @ meat @ xtx_inv * n / max(1, n - 2)
    se = np.sqrt(np.diag(cov))
    if np.std(t) < 1e-12:
        return {"ate": float(beta[0]), "ate_se": float(se[0]), "slope": float("nan"), "slope_se": float("nan")}
    return {"ate": float(beta[0]), "ate_se": float(se[0]), "slope": float(beta[1]), "slope_se": float(se[1])}


def mean_of(values: np.ndarray) -> Callable[[np.ndarray], float]:
    """The statistic "mean of ``values`` over the resampled rows", for :func:`bootstrap`."""
    return lambda rows: float(values[rows].mean())


def calibration_groups(tau_hat: Any, pseudo: Any, *, n_groups: int = 4, n_boot: int = 200, seed: int = 0) -> list[dict[str, float]]:
    """Rows grouped by quantiles of predicted effect: mean prediction beside the DR estimate
    (mean pseudo-outcome, with a bootstrap interval) in each group."""
    t, p = np.asarray(tau_hat, dtype=float), np.asarray(pseudo, dtype=float)
    order = np.argsort(t, kind="stable")
    out = []
    for g, idx in enumerate(np.array_split(order, n_groups)):
        if len(idx) < 2:
            continue
        point, lo, hi = bootstrap(mean_of(p[idx]), len(idx), n_boot=n_boot, seed=seed + g)
        out.append({"group": g + 1, "n": int(len(idx)), "predicted": float(t[idx].mean()),
                    "observed": float(point), "ci_low": float(lo), "ci_high": float(hi)})
    return out


# ---------------------------------------------------------------- censoring


def kaplan_meier(times: Any, events: Any) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate: distinct event times and S just after each of them (the one
    estimator, :func:`medassist.evaluation.survival.kaplan_meier`, read at its event times)."""
    t, d = np.asarray(times, dtype=float), np.asarray(events, dtype=float)
    grid = np.unique(t[d > 0])
    if len(grid) == 0:
        return grid, np.zeros(0)
    curve = _kaplan_meier(t, d)
    k = np.searchsorted(curve.timeline, grid, side="right") - 1
    return grid, curve.survival[k]


def ipcw_weights(times: Any, events: Any, horizon: float, *, groups: Any | None = None, floor: float = 0.05) -> tuple[np.ndarray, int]:
    """Inverse-probability-of-censoring weights for an outcome restricted to ``horizon``.

    A row's outcome (min(T, h), or whether T <= h) is known when the event was seen by ``h`` or
    follow-up reached ``h``; it gets weight 1 / G(min(t, h)-), with G the Kaplan-Meier survival of
    censoring (within each group, e.g. arm). Rows censored before ``h`` get 0.

    Returns:
        weights (N,) and how many were capped because G fell below ``floor``.
    """
    t, d = np.asarray(times, dtype=float), np.asarray(events, dtype=float)
    g = np.zeros(len(t), dtype=int) if groups is None else np.asarray(groups)
    w = np.zeros(len(t))
    capped = 0
    for key in np.unique(g):
        rows = np.flatnonzero(g == key)
        grid, surv = kaplan_meier(t[rows], 1.0 - d[rows])  # censoring is the "event" here
        for i in rows:
            complete = (d[i] > 0 and t[i] <= horizon) or t[i] >= horizon
            if not complete:
                continue
            u = min(t[i], horizon)
            k = np.searchsorted(grid, u, side="left")  # censorings strictly before u
            gval = surv[k - 1] if k > 0 else 1.0
            if gval < floor:
                capped += 1
                gval = floor
            w[i] = 1.0 / gval
    return w, capped
