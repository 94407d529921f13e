"""Latency statistics for benchmark runs: percentiles with bootstrap confidence intervals, mean, std
and throughput, as pure functions on 1-D arrays of latencies in seconds.

>>> import numpy as np
>>> s = summarize(np.arange(1, 101) / 1000)
>>> round(s.percentiles[50] * 1000, 2), round(s.throughput_per_s, 2)
(50.5, 19.8)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgepack.benchmarks.errors import BenchmarkError

# numpy's "linear" method: Hyndman & Fan (1996) type 7, the position is p/100 * (n - 1) between the
# sorted samples, interpolated linearly. It is numpy's and R's default, so numbers are reproducible.
PERCENTILE_METHOD = "linear"
DEFAULT_PERCENTILES = (50.0, 90.0, 99.0)
DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
# Elements per bootstrap chunk: bounds memory (8 MB of float64) so a 512 MB board can bootstrap
# tens of thousands of samples.
_CHUNK_ELEMENTS = 1_000_000


def _as_latencies(latencies_s: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(latencies_s, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise BenchmarkError(
            f"latencies must be a non-empty 1-D array of seconds, got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise BenchmarkError("latencies must be finite and non-negative (seconds)")
    return x


def percentiles(
    latencies_s: Sequence[float] | np.ndarray, qs: Sequence[float] = DEFAULT_PERCENTILES
) -> dict[float, float]:
    """{q: the q-th percentile in seconds} by numpy's 'linear' method (see PERCENTILE_METHOD)."""
    x = _as_latencies(latencies_s)
    values = np.percentile(x, qs, method=PERCENTILE_METHOD)
    return {float(q): float(v) for q, v in zip(qs, values, strict=True)}


def bootstrap_ci(
    latencies_s: Sequence[float] | np.ndarray,
    qs: Sequence[float] = DEFAULT_PERCENTILES,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[float, tuple[float, float]]:
    """{q: (low, high)}: a percentile-bootstrap confidence interval for each percentile q.

    Resamples the latencies with replacement `resamples` times (seeded, so reruns agree),
    takes each percentile of every resample, and returns the (1 - confidence) / 2 and
    (1 + confidence) / 2 quantiles of those. A tail percentile needs enough samples beyond it
    (p99 wants several hundred); with fewer, its interval is too narrow to trust.
    """
    x = _as_latencies(latencies_s)
    if not 0 < confidence < 1:
        raise BenchmarkError(f"confidence must be between 0 and 1, got {confidence}")
    if resamples < 2:
        raise BenchmarkError(f"resamples must be at least 2, got {resamples}")
    rng = np.random.default_rng(seed)
    n = x.size
    rows = max(1, _CHUNK_ELEMENTS // n)
    stats = []
    for start in range(0, resamples, rows):
        count = min(rows, resamples - start)
        sample = x[rng.integers(0, n, size=(count, n))]
        stats.append(np.percentile(sample, qs, axis=1, method=PERCENTILE_METHOD))
    boot = np.concatenate(stats, axis=1)  # (len(qs), resamples)
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot, [tail, 1 - tail], axis=1, method=PERCENTILE_METHOD)
    return {float(q): (float(lo), float(hi)) for q, lo, hi in zip(qs, low, high, strict=True)}


def throughput(latencies_s: Sequence[float] | np.ndarray, batch_size: int = 1) -> float:
    """Items per second when the calls ran back to back: batch_size * calls / total busy time."""
    x = _as_latencies(latencies_s)
    if batch_size < 1:
        raise BenchmarkError(f"batch_size must be at least 1, got {batch_size}")
    total = float(x.sum())
    return batch_size * x.size / total if total > 0 else float("inf")


@dataclass(frozen=True)
class LatencySummary:
    """The statistics of one run, in seconds; `to_dict` gives the JSON form."""

    count: int
    mean_s: float
    std_s: float  # sample standard deviation (ddof=1); 0.0 for a single sample
    min_s: float
    max_s: float
    percentiles: dict[float, float]
    ci: dict[float, tuple[float, float]]
    confidence: float
    resamples: int
    throughput_per_s: float
    batch_size: int = 1
    method: str = PERCENTILE_METHOD

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: percentile keys become 'p50', 'p90', ... ('p99.9' for fractional ones)."""

        def key(q: float) -> str:
            return f"p{q:g}"

        return {
            "count": self.count,
            "mean_s": self.mean_s,
            "std_s": self.std_s,
            "min_s": self.min_s,
            "max_s": self.max_s,
            "percentiles_s": {key(q): v for q, v in self.percentiles.items()},
            "ci_s": {key(q): list(v) for q, v in self.ci.items()},
            "confidence": self.confidence,
            "resamples": self.resamples,
            "throughput_per_s": self.throughput_per_s,
            "batch_size": self.batch_size,
            "percentile_method": self.method,
        }


def summarize(
    latencies_s: Sequence[float] | np.ndarray,
    qs: Sequence[float] = DEFAULT_PERCENTILES,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    batch_size: int = 1,
) -> LatencySummary:
    """Everything the harness reports about one run's latencies."""
    x = _as_latencies(latencies_s)
    return LatencySummary(
        count=int(x.size),
        mean_s=float(np.clip(x.mean(), x.min(), x.max())),  # rounding can step outside
        std_s=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        min_s=float(x.min()),
        max_s=float(x.max()),
        percentiles=percentiles(x, qs),
        ci=bootstrap_ci(x, qs, confidence=confidence, resamples=resamples, seed=seed),
        confidence=confidence,
        resamples=resamples,
        throughput_per_s=throughput(x, batch_size),
        batch_size=batch_size,
    )
