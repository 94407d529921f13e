"""The timing loops of the harness: interleaved back-to-back queries (single-stream, offline) and
Poisson arrivals with queueing (server), plus the search for the rate at which p99 breaks a bound.

>>> latencies, spent = measure([lambda: None], warmup=1, min_count=5, min_duration_s=0)
>>> len(latencies[0]) >= 5
True
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import numpy as np

from edgepack.benchmarks.errors import BenchmarkError

Progress = Callable[[float, str], None]
BLOCK_S = 0.1  # how long one pack runs before the next takes over, when several are interleaved
OVERLOAD_FACTOR = 2.0  # a server run stops at this multiple of its arrival span
SPIN_S = 0.0005  # the last stretch before an arrival is spun, not slept: sleep overshoots
SEARCH_STEPS = 6  # bisection steps of the rate search: the answer is within 1/64 of capacity


def _quiet(fraction: float, detail: str) -> None:
    return None


def progress_bar(label: str, stream: TextIO | None = None, every_s: float = 0.2) -> Progress:
    """A plain-text progress line on stderr, redrawn in place at most every `every_s` seconds;
    call it with fraction >= 1 to finish the line."""
    out = stream or sys.stderr
    state = {"last": -math.inf, "width": 0}

    def show(fraction: float, detail: str) -> None:
        now = time.monotonic()
        done = fraction >= 1
        if not done and now - state["last"] < every_s:
            return
        state["last"] = now
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(24 * fraction)
        line = f"{label} [{'#' * filled}{'.' * (24 - filled)}] {int(100 * fraction):3d}% {detail}"
        out.write("\r" + line.ljust(state["width"]) + ("\n" if done else ""))
        out.flush()
        state["width"] = 0 if done else len(line)

    return show


def measure(
    calls: Sequence[Callable[[], Any]],
    *,
    warmup: int,
    min_count: int,
    min_duration_s: float,
    progress: Progress | None = None,
) -> tuple[list[np.ndarray], list[float]]:
    """Time each call back to back until every one has at least `min_count` queries AND
    `min_duration_s` of measured time (MLPerf's rule: both minimums). Several calls take turns
    in blocks of about BLOCK_S, the order reversed every round, so that drift in the machine
    (clock, heat, other load) hits all of them alike.

    Returns (latencies in seconds per call, measured seconds per call).
    """
    show = progress or _quiet
    for call in calls:
        for _ in range(warmup):
            call()
    samples: list[list[int]] = [[] for _ in calls]
    spent_ns = [0] * len(calls)
    need_ns = int(min_duration_s * 1e9)
    block_ns = int(BLOCK_S * 1e9)

    def fraction(i: int) -> float:
        by_time = spent_ns[i] / need_ns if need_ns else 1.0
        return min(len(samples[i]) / min_count, by_time)

    rounds = 0
    while min(fraction(i) for i in range(len(calls))) < 1:
        order = range(len(calls)) if rounds % 2 == 0 else reversed(range(len(calls)))
        for i in order:
            call, bucket = calls[i], samples[i]
            block_start = end = time.perf_counter_ns()
            while end - block_start < block_ns:
                start = time.perf_counter_ns()
                call()
                end = time.perf_counter_ns()
                bucket.append(end - start)
            spent_ns[i] += end - block_start
        rounds += 1
        done = min(fraction(i) for i in range(len(calls)))
        show(min(done, 0.999), f"{sum(len(s) for s in samples)} queries")
    show(1.0, f"{sum(len(s) for s in samples)} queries")
    return [np.asarray(s, dtype=np.float64) / 1e9 for s in samples], [t / 1e9 for t in spent_ns]


def poisson_arrivals(
    rate: float, *, min_count: int, min_duration_s: float, seed: int = 0
) -> np.ndarray:
    """Arrival times (seconds from the start) of a Poisson process at `rate` queries per second,
    as few as give at least `min_count` arrivals spanning at least `min_duration_s`. Seeded, so
    runs at different rates share one pattern, stretched (common random numbers)."""
    if rate <= 0:
        raise BenchmarkError(f"rate must be greater than 0 queries/s, got {rate}")
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0, max(min_count, 16))) / rate
    while arrivals[-1] < min_duration_s:
        more = np.cumsum(rng.exponential(1.0, arrivals.size)) / rate
        arrivals = np.concatenate([arrivals, arrivals[-1] + more])
    enough = (np.arange(1, arrivals.size + 1) >= min_count) & (arrivals >= min_duration_s)
    return arrivals[: int(np.argmax(enough)) + 1]


def _wait_until(deadline: float) -> None:
    remaining = deadline - time.perf_counter()
    if remaining > SPIN_S:
        time.sleep(remaining - SPIN_S)
    while time.perf_counter() < deadline:
        pass


def serve(
    call: Callable[[], Any],
    rate: float,
    *,
    min_count: int,
    min_duration_s: float,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Serve Poisson arrivals one at a time (one model, one stream of work, as on a board) and
    time each query from its arrival, so latency includes the wait in the queue.

    Bounded: queries still waiting at OVERLOAD_FACTOR x the arrival span (plus one query) are
    not served, and the run is marked overloaded; percentiles of an overloaded run cover the
    served queries only and understate the truth.
    """
    show = progress or _quiet
    arrivals = poisson_arrivals(rate, min_count=min_count, min_duration_s=min_duration_s, seed=seed)
    latencies: list[float] = []
    t0 = time.perf_counter()
    deadline = math.inf
    for index, arrival in enumerate(arrivals):
        if time.perf_counter() - t0 > deadline:
            break
        if time.perf_counter() - t0 < arrival:
            _wait_until(t0 + arrival)
        call()
        latencies.append(time.perf_counter() - t0 - arrival)
        if index == 0:
            deadline = OVERLOAD_FACTOR * arrivals[-1] + latencies[0]
        show(index / arrivals.size, f"{index + 1}/{arrivals.size} queries at {rate:.4g}/s")
    show(1.0, f"{len(latencies)}/{arrivals.size} queries at {rate:.4g}/s")
    return {
        "rate_per_s": float(rate),
        "latencies_s": np.asarray(latencies),
        "served": len(latencies),
        "unserved": int(arrivals.size - len(latencies)),
        "overloaded": len(latencies) < arrivals.size,
        "wall_s": time.perf_counter() - t0,
    }


def search_rate(
    call: Callable[[], Any],
    *,
    p99_bound_s: float,
    capacity_per_s: float,
    min_count: int,
    min_duration_s: float,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Bisect the arrival rate in (0, capacity] for the highest rate whose p99 (queueing
    included) stays within `p99_bound_s`. A queue fed faster than the service rate grows
    without end, so one stream's capacity (1 / mean service time) caps the search.

    Each probe is a full bounded server run with the given minimums; probes reuse one seeded
    arrival pattern, so neighbouring rates differ by their rate, not by luck.
    """
    probes = []

    def within(rate: float) -> bool:
        run = serve(call, rate, min_count=min_count, min_duration_s=min_duration_s, seed=seed)
        p99 = float(np.percentile(run["latencies_s"], 99)) if run["served"] else math.inf
        ok = p99 <= p99_bound_s and not run["overloaded"]
        probes.append(
            {
                "rate_per_s": rate,
                "p99_s": p99 if math.isfinite(p99) else None,
                "overloaded": run["overloaded"],
                "within_bound": ok,
            }
        )
        if progress:
            progress(len(probes) / (SEARCH_STEPS + 1), f"probe {len(probes)}: {rate:.4g}/s")
        return ok

    low, high = 0.0, capacity_per_s
    if within(high):
        low, high = high, None
    else:
        for _ in range(SEARCH_STEPS):
            middle = (low + high) / 2
            if within(middle):
                low = middle
            else:
                high = middle
    if progress:
        progress(1.0, f"{len(probes)} probes")
    return {
        "p99_bound_s": p99_bound_s,
        "capacity_per_s": capacity_per_s,
        "max_rate_within_bound_per_s": low or None,
        "first_rate_over_bound_per_s": high,
        "probes": probes,
    }
