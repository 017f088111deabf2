"""The one bootstrap of medassist: seeded row resamples and percentile intervals.

Every interval medassist reports (classification, regression, multilabel, survival and causal
metrics, paired model comparisons) is built from the same stream of resamples: generator
``numpy.random.default_rng(seed)``, one ``integers(0, n, size=n)`` draw per resample. Two
evaluations of the same rows with the same seed therefore see the very same resamples, which
is what makes a paired comparison paired.

Example:
    >>> for idx in resamples(len(y), 1000, seed=0):
    ...     values.append(metric(p[idx], y[idx]))
    >>> low, high, n_valid = percentile_ci(np.asarray(values), 0.05)
    >>> point, low, high = bootstrap(lambda r: y[r].mean(), len(y), n_boot=1000)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from medassist.exceptions import DataError
from medassist.validation import check_number


def check_bootstrap(n_boot: Any, alpha: Any, seed: Any, *, owner: str, min_boot: int = 1) -> None:
    """Validate ``n_boot`` (an int >= ``min_boot``), ``alpha`` (in (0, 1)) and ``seed`` (an int >= 0)."""
    check_number(n_boot, name="n_boot", owner=owner, low=min_boot, integer=True)
    check_number(alpha, name="alpha", owner=owner, low=0, high=1, low_open=True, high_open=True)
    check_number(seed, name="seed", owner=owner, low=0, integer=True)


def resamples(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Row indices (n,) of each of ``n_boot`` resamples with replacement, from one seeded stream."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield rng.integers(0, n, size=n)


def resample_weights(n: int, n_boot: int, seed: int, *, chunk_elems: int) -> Iterator[tuple[int, np.ndarray]]:
    """The resamples of :func:`resamples` as count matrices, a chunk at a time.

    Yields ``(start, W)`` where ``W`` (b, n) float64 counts how often each row is drawn in
    resamples ``start .. start + b - 1``; ``b * n`` stays near ``chunk_elems``, so metrics can
    be computed for a chunk of resamples at once as weighted sums.
    """
    stream = resamples(n, n_boot, seed)
    chunk = max(1, chunk_elems // max(n, 1))
    for start in range(0, n_boot, chunk):
        idx = np.stack([next(stream) for _ in range(min(chunk, n_boot - start))])  # (b, n)
        b = len(idx)
        flat = (np.arange(b)[:, None] * n + idx).ravel()
        yield start, np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def percentile_ci(values: np.ndarray, alpha: float) -> tuple[float, float, int]:
    """``(low, high, n_valid)``: the percentile interval of the finite ``values`` (NaN bounds, 0 if none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan, 0
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high), int(finite.size)


def json_float(x: float | None) -> float | None:
    """A float for JSON: None for None, NaN and infinities."""
    return None if x is None or not math.isfinite(x) else float(x)


def bootstrap(
    fn: Callable[[np.ndarray], float | np.ndarray], n: int, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimate and percentile interval of ``fn(rows)`` over row resamples.

    ``fn`` takes an index array into the N rows and returns a float or an array.
    Returns ``(point, low, high)`` as arrays of the shape ``fn`` returns; NaN draws are skipped.
    """
    check_number(n_boot, name="n_boot", owner="bootstrap", low=1, integer=True)
    check_number(alpha, name="alpha", owner="bootstrap", low=0, high=1, low_open=True, high_open=True)
    if n < 2:
        raise DataError(f"bootstrap: needs at least 2 rows; got {n}.")
    point = np.asarray(fn(np.arange(n)), dtype=float)
    draws = np.stack([np.asarray(fn(idx), dtype=float) for idx in resamples(n, n_boot, seed)])
    lo, hi = np.nanquantile(draws, [alpha / 2, 1 - alpha / 2], axis=0)
    return point, lo, hi
