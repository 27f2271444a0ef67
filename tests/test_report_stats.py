"""The report's statistics on inputs with known answers (the rliable protocol, Agarwal et al. 2021)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from offrl.errors import ConfigError
from offrl.report import stats


# ------------------------------------------------------------------------------ IQM
def test_iqm_of_known_arrays():
    # arange(100): 25 cut from each end, the mean of 25..74
    assert stats.interquartile_mean(np.arange(100)) == pytest.approx(49.5)
    # arange(8): int(0.25 * 8) = 2 cut from each end -> mean of 2, 3, 4, 5
    assert stats.interquartile_mean(np.arange(8)) == pytest.approx(3.5)
    # five values: int(1.25) = 1 cut from each end, so the outliers go
    assert stats.interquartile_mean([1000.0, 2.0, -1000.0, 3.0, 4.0]) == pytest.approx(3.0)
    # three or fewer values: nothing is cut
    assert stats.interquartile_mean([1.0, 2.0, 10.0]) == pytest.approx(13.0 / 3)


def test_iqm_matches_scipy_trim_mean():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for size in range(1, 41):
        values = rng.standard_cauchy(size)
        assert stats.interquartile_mean(values) == pytest.approx(scipy_stats.trim_mean(values, 0.25))


def test_iqm_along_an_axis_is_per_row():
    rows = np.random.default_rng(1).normal(size=(5, 12))
    expected = [np.sort(row)[3:9].mean() for row in rows]
    np.testing.assert_allclose(stats.interquartile_mean(rows, axis=1), expected)


def test_aggregate_pools_runs_over_tasks():
    tasks = [np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 20.0, 30.0, 40.0])]
    interval = stats.aggregate_interval(tasks, "IQM", reps=200, seed=0)
    # pooled sorted: 1 2 3 4 10 20 30 40 -> cut 2 from each end -> 3 4 10 20
    assert interval.point == pytest.approx((3 + 4 + 10 + 20) / 4)
    assert stats.aggregate_interval(tasks, "Mean", reps=200, seed=0).point == pytest.approx(110 / 8)


# ------------------------------------------------------------------ bootstrap intervals
@pytest.mark.parametrize("statistic", ["IQM", "Mean"])
def test_ci_coverage_on_synthetic_normal_data(statistic):
    """The 95% interval holds the true value in roughly 95% of repetitions. Three tasks of 10 runs
    from N(-3, 1), N(0, 1), N(3, 1): the pooled distribution is symmetric about 0, so its true
    mean and true IQM are both 0. A non-stratified bootstrap adds the between-task spread and
    covers almost always; an interval too narrow covers far less."""
    rng = np.random.default_rng(12345)
    repetitions, covered = 300, 0
    for _ in range(repetitions):
        tasks = [rng.normal(centre, 1.0, size=10) for centre in (-3.0, 0.0, 3.0)]
        covered += stats.aggregate_interval(tasks, statistic, reps=1000, seed=rng).contains(0.0)
    coverage = covered / repetitions
    # percentile intervals under-cover slightly at 10 runs per task; 0.95 +- ~3.5 binomial sd
    assert 0.89 <= coverage <= 0.985, coverage


def test_difference_interval_coverage():
    rng = np.random.default_rng(7)
    repetitions, covered = 200, 0
    for _ in range(repetitions):
        x = [rng.normal(2.0, 1.0, size=8), rng.normal(12.0, 1.0, size=8)]
        y = [rng.normal(0.0, 1.0, size=8), rng.normal(10.0, 1.0, size=8)]
        covered += stats.difference_interval(x, y, "Mean", reps=1000, seed=rng).contains(2.0)
    assert 0.88 <= covered / repetitions <= 0.99


def test_stratified_resamples_never_move_runs_between_tasks():
    rng = np.random.default_rng(0)
    tasks = [rng.uniform(0, 1, size=4), rng.uniform(100, 101, size=7), rng.uniform(-50, -49, size=1)]
    resamples = stats.stratified_resamples(tasks, reps=500, rng=np.random.default_rng(1))
    for task, resampled in zip(tasks, resamples):
        assert resampled.shape == (500, task.size)  # every replicate keeps each task's run count
        assert np.isin(resampled, task).all()  # and draws only that task's own runs
    # with replacement: some replicate repeats a run of the 7-run task
    assert any(len(set(row)) < 7 for row in resamples[1])


def test_stratification_keeps_the_interval_of_far_apart_tasks_narrow():
    """Tasks 0 and 100 apart, each with a spread of 1: resampling within tasks keeps the pooled
    mean's interval about as wide as the within-task noise; resampling the pool would let the
    share of each task vary and widen it to tens of points."""
    rng = np.random.default_rng(3)
    tasks = [rng.uniform(0, 1, size=5), rng.uniform(100, 101, size=5)]
    interval = stats.aggregate_interval(tasks, "Mean", reps=2000, seed=0)
    assert interval.high - interval.low < 1.0
    assert interval.contains(np.concatenate(tasks).mean())


def test_constant_scores_give_a_point_interval():
    interval = stats.aggregate_interval([np.full(5, 42.0), np.full(3, 42.0)], "IQM", reps=300, seed=0)
    assert (interval.point, interval.low, interval.high) == (42.0, 42.0, 42.0)


def test_bootstrap_is_reproducible_with_a_seed():
    tasks = [np.random.default_rng(0).normal(size=6)]
    assert stats.aggregate_interval(tasks, "IQM", 500, seed=4) == stats.aggregate_interval(tasks, "IQM", 500, seed=4)


# --------------------------------------------------------- probability of improvement
def test_probability_of_improvement_known_values():
    same = [np.array([3.0, 1.0, 4.0, 1.5, 9.0])]
    assert stats.probability_of_improvement(same, same) == 0.5  # identical inputs
    assert stats.probability_of_improvement([[7.0, 7.0]], [[7.0, 7.0, 7.0]]) == 0.5  # all ties count 1/2
    assert stats.probability_of_improvement([[10.0, 11.0, 12.0]], [[1.0, 2.0]]) == 1.0  # fully separated
    assert stats.probability_of_improvement([[1.0, 2.0]], [[10.0, 11.0, 12.0]]) == 0.0
    # 3 beats 1 and 2 but not 3.5; 4 beats all three: 5 wins of 6 pairs
    assert stats.probability_of_improvement([[3.0, 4.0]], [[1.0, 2.0, 3.5]]) == pytest.approx(5 / 6)
    # averaged over tasks: one task won outright, one lost outright
    assert stats.probability_of_improvement([[5.0], [0.0]], [[0.0], [5.0]]) == 0.5


def test_probability_of_improvement_matches_mann_whitney_u():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(2)
    for n, m in ((3, 4), (5, 5), (10, 7)):
        x, y = rng.integers(0, 6, n).astype(float), rng.integers(0, 6, m).astype(float)  # with ties
        u = scipy_stats.mannwhitneyu(x, y).statistic
        assert stats.probability_of_improvement([x], [y]) == pytest.approx(u / (n * m))


def test_probability_of_improvement_intervals():
    rng = np.random.default_rng(5)
    same = [rng.normal(size=10), rng.normal(size=10)]
    interval = stats.probability_of_improvement_interval(same, same, reps=2000, seed=0)
    assert interval.point == 0.5 and interval.low < 0.5 < interval.high
    # the bootstrap of identical inputs is symmetric about 0.5
    assert interval.low == pytest.approx(1 - interval.high, abs=0.03)
    separated = stats.probability_of_improvement_interval([[10.0, 11, 12]], [[1.0, 2, 3]], reps=500, seed=0)
    assert (separated.point, separated.low, separated.high) == (1.0, 1.0, 1.0)


def test_permutation_p_value_matches_exact_mann_whitney_values():
    # fully separated groups: two of the C(n+m, n) splits are as extreme (two-sided)
    p = stats.improvement_permutation_p_value([np.arange(5.0) + 10], [np.arange(5.0)], reps=20000, seed=0)
    assert p == pytest.approx(2 / math.comb(10, 5), abs=0.003)
    p = stats.improvement_permutation_p_value([[10.0, 11, 12]], [[1.0, 2, 3]], reps=20000, seed=0)
    assert p == pytest.approx(2 / math.comb(6, 3), abs=0.01)  # 0.1: three seeds each cannot show p < 0.05


def test_permutation_p_value_is_roughly_uniform_under_no_difference():
    rng = np.random.default_rng(11)
    p_values = [stats.improvement_permutation_p_value([rng.normal(size=8)], [rng.normal(size=8)], reps=500, seed=rng)
                for _ in range(200)]
    assert 0.01 <= np.mean(np.array(p_values) < 0.05) <= 0.10
    assert 0.4 <= np.mean(p_values) <= 0.6


# ----------------------------------------------------------------- performance profiles
def test_performance_profile_known_values():
    taus = [-1.0, 0.0, 1.5, 3.0]
    # strictly greater than tau: 4/4, 3/4 (0 is not > 0), 2/4, 0/4
    np.testing.assert_allclose(stats.performance_profile([[0.0, 1.0], [2.0, 3.0]], taus), [1.0, 0.75, 0.5, 0.0])


def test_performance_profile_band_brackets_the_profile():
    rng = np.random.default_rng(0)
    tasks = [rng.normal(50, 10, size=6), rng.normal(70, 10, size=6)]
    taus = np.linspace(0, 100, 51)
    point, low, high = stats.performance_profile_band(tasks, taus, reps=500, seed=0)
    np.testing.assert_allclose(point, stats.performance_profile(tasks, taus))
    assert np.all(low <= point + 1e-12) and np.all(point <= high + 1e-12)
    assert np.all((0 <= low) & (high <= 1))
    assert np.any(high - low > 0.1)  # a real band where the runs spread
    constant = stats.performance_profile_band([np.full(4, 5.0)], taus, reps=100, seed=0)
    np.testing.assert_array_equal(constant[1], constant[2])


# ------------------------------------------------------------------------- bad input
def test_bad_input_is_refused_with_a_sentence():
    with pytest.raises(ConfigError, match="empty task"):
        stats.aggregate_interval([[1.0], []], "IQM")
    with pytest.raises(ConfigError, match="NaN"):
        stats.aggregate_interval([[1.0, float("nan")]], "Mean")
    with pytest.raises(ConfigError, match="--bootstrap"):
        stats.aggregate_interval([[1.0, 2.0]], "Mean", reps=0)
    with pytest.raises(ConfigError, match="same tasks"):
        stats.probability_of_improvement([[1.0], [2.0]], [[1.0]])
