"""Latency statistics on synthetic timings whose percentiles are known exactly or analytically."""

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edgepack.benchmarks import stats
from edgepack.benchmarks.errors import BenchmarkError


def test_percentiles_of_a_ramp_follow_linear_interpolation():
    # Type 7: position p/100 * (n - 1) between sorted samples.
    assert stats.percentiles(np.arange(0, 1001)) == {50.0: 500.0, 90.0: 900.0, 99.0: 990.0}
    got = stats.percentiles(np.arange(1, 101))
    assert got[50.0] == pytest.approx(50.5)
    assert got[90.0] == pytest.approx(90.1)
    assert got[99.0] == pytest.approx(99.01)


def test_percentiles_do_not_depend_on_order():
    x = np.arange(1, 201) / 1000
    shuffled = np.random.default_rng(3).permutation(x)
    assert stats.percentiles(shuffled, (25, 75)) == stats.percentiles(x, (25, 75))


def test_summary_mean_std_and_extremes_of_a_ramp():
    s = stats.summarize(np.arange(1, 101) / 1000, resamples=200)
    assert s.count == 100
    assert s.mean_s == pytest.approx(0.0505)
    # Sample std of 1..n is sqrt(n(n+1)/12).
    assert s.std_s == pytest.approx(math.sqrt(100 * 101 / 12) / 1000)
    assert (s.min_s, s.max_s) == (0.001, 0.1)
    assert s.method == stats.PERCENTILE_METHOD == "linear"


def test_single_sample_has_zero_std_and_a_degenerate_interval():
    s = stats.summarize([0.02], resamples=50)
    assert s.std_s == 0.0
    assert s.percentiles[99.0] == 0.02
    assert s.ci[99.0] == (0.02, 0.02)


def test_throughput_of_back_to_back_calls():
    assert stats.throughput(np.full(100, 0.01)) == pytest.approx(100.0)
    assert stats.throughput(np.full(100, 0.01), batch_size=8) == pytest.approx(800.0)
    assert stats.summarize(np.full(10, 0.5), resamples=10).throughput_per_s == pytest.approx(2.0)


def test_bootstrap_interval_contains_the_true_quantiles_of_an_exponential():
    scale = 0.01  # 10 ms mean
    x = np.random.default_rng(42).exponential(scale, size=5000)
    ci = stats.bootstrap_ci(x, (50, 90, 99), resamples=1000, seed=1)
    for q in (50, 90, 99):
        true = -scale * math.log(1 - q / 100)
        low, high = ci[float(q)]
        assert low <= true <= high, (q, low, true, high)
        # And the interval is informative: narrower than a fifth of the value.
        assert high - low < 0.2 * true


def test_bootstrap_coverage_is_close_to_nominal():
    # Over many datasets from a log-normal, the 90 % interval for the median holds the true median
    # about 90 % of the time. Seeds are fixed, so this is deterministic.
    rng = np.random.default_rng(7)
    true_median = math.exp(-4.0)
    hits = 0
    trials = 100
    for seed in range(trials):
        x = rng.lognormal(mean=-4.0, sigma=0.5, size=300)
        low, high = stats.bootstrap_ci(x, (50,), confidence=0.9, resamples=400, seed=seed)[50.0]
        hits += low <= true_median <= high
    assert 0.8 <= hits / trials <= 0.98


def test_bootstrap_is_reproducible_by_seed():
    x = np.random.default_rng(0).gamma(2.0, 0.005, size=500)
    assert stats.bootstrap_ci(x, seed=5) == stats.bootstrap_ci(x, seed=5)
    assert stats.bootstrap_ci(x, seed=5) != stats.bootstrap_ci(x, seed=6)


def test_bootstrap_in_small_chunks_still_brackets_the_estimate(monkeypatch):
    # Force one resample per chunk, as on a big run on a small board.
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 10)
    x = np.random.default_rng(1).normal(0.05, 0.005, size=400)
    ci = stats.bootstrap_ci(x, (50, 90), resamples=300)
    for q, p in stats.percentiles(x, (50, 90)).items():
        assert ci[q][0] <= p <= ci[q][1]


def test_more_confidence_gives_a_wider_interval():
    x = np.random.default_rng(2).exponential(0.01, size=1000)
    narrow = stats.bootstrap_ci(x, (90,), confidence=0.5, seed=3)[90.0]
    wide = stats.bootstrap_ci(x, (90,), confidence=0.99, seed=3)[90.0]
    assert wide[0] <= narrow[0] and narrow[1] <= wide[1]
    assert wide[1] - wide[0] > narrow[1] - narrow[0]


def test_to_dict_names_percentiles_and_states_the_method():
    d = stats.summarize(np.arange(1, 1001) / 1e4, (50, 99.9), resamples=100).to_dict()
    assert set(d["percentiles_s"]) == {"p50", "p99.9"}
    assert set(d["ci_s"]) == {"p50", "p99.9"}
    assert d["percentile_method"] == "linear"
    assert d["count"] == 1000


@pytest.mark.parametrize(
    "bad", [[], [[0.1, 0.2]], [0.1, -0.01], [0.1, float("nan")], [0.1, float("inf")]]
)
def test_bad_latencies_are_rejected(bad):
    with pytest.raises(BenchmarkError, match="latencies"):
        stats.summarize(bad)


def test_bad_bootstrap_parameters_are_rejected():
    with pytest.raises(BenchmarkError, match="confidence"):
        stats.bootstrap_ci([0.1, 0.2], confidence=1.0)
    with pytest.raises(BenchmarkError, match="resamples"):
        stats.bootstrap_ci([0.1, 0.2], resamples=1)
    with pytest.raises(BenchmarkError, match="batch_size"):
        stats.throughput([0.1], batch_size=0)


latency_lists = st.lists(
    st.floats(min_value=1e-6, max_value=10.0, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=200,
)


@settings(max_examples=60, deadline=None)
@given(latency_lists)
def test_percentiles_are_ordered_and_within_the_samples(xs):
    p = stats.percentiles(xs)
    assert min(xs) <= p[50.0] <= p[90.0] <= p[99.0] <= max(xs)


@settings(max_examples=40, deadline=None)
@given(latency_lists, st.integers(min_value=0, max_value=2**32 - 1))
@example([1.9, 1.9, 1.9], 0)  # np.mean gives 1.8999999999999997 here
def test_intervals_are_ordered_and_within_the_samples(xs, seed):
    s = stats.summarize(xs, resamples=50, seed=seed)
    for q, (low, high) in s.ci.items():
        assert min(xs) <= low <= high <= max(xs), q
    assert s.min_s <= s.mean_s <= s.max_s
    assert s.std_s >= 0
    assert s.throughput_per_s > 0


@settings(max_examples=40, deadline=None)
@given(latency_lists, st.floats(min_value=0.1, max_value=100.0))
def test_scaling_latencies_scales_percentiles_and_inverts_throughput(xs, k):
    base, scaled = (
        stats.summarize(xs, resamples=20),
        stats.summarize(np.asarray(xs) * k, resamples=20),
    )
    for q in base.percentiles:
        assert scaled.percentiles[q] == pytest.approx(base.percentiles[q] * k, rel=1e-9)
    assert scaled.throughput_per_s == pytest.approx(base.throughput_per_s / k, rel=1e-9)
