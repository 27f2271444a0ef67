"""Interval statistics for few-seed RL results, the rliable protocol, in NumPy.

Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the Statistical Precipice"
(NeurIPS), and its library rliable. We implement it ourselves because rliable 1.2.0 fails to
import beside pandas 3 (see DESIGN.md).

Scores come as `tasks`: a sequence of 1-D arrays, one per task (dataset), each holding one score
per run (seed). Tasks may hold different numbers of runs.

- IQM: the interquartile mean, the mean of the middle 50% of all runs' scores pooled over tasks,
  cutting int(0.25 * n) scores from each end (scipy.stats.trim_mean(x, 0.25), as rliable does).
- Stratified bootstrap: each replicate resamples runs with replacement *within each task*, so a
  task never gains or loses runs and runs never move between tasks.
- Confidence intervals: percentile intervals of the bootstrap replicates (rliable's default).
- Performance profile: the fraction of runs (pooled over tasks) whose score exceeds tau.
- Probability of improvement P(X > Y): per task, the probability that a random run of X beats a
  random run of Y (the Mann-Whitney U statistic divided by n_x * n_y, ties counted 1/2), averaged
  over tasks; its bootstrap resamples X's and Y's runs independently within each task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from offrl.errors import ConfigError

IQM_CUT = 0.25  # Agarwal et al. 2021: discard the bottom and top 25% of runs


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval [low, high]."""

    point: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def format(self, digits: int = 1) -> str:
        return f"{self.point:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _as_tasks(tasks: Sequence[Sequence[float]], what: str = "scores") -> list[np.ndarray]:
    arrays = [np.asarray(task, dtype=np.float64).reshape(-1) for task in tasks]
    if not arrays or any(array.size == 0 for array in arrays):
        raise ConfigError(f"The {what} have an empty task; expected at least one score in every task.")
    if any(not np.all(np.isfinite(array)) for array in arrays):
        raise ConfigError(f"The {what} hold NaN or infinite values; expected finite scores.")
    return arrays


# ------------------------------------------------------------------------- point statistics
def interquartile_mean(scores, axis: int = -1) -> np.ndarray:
    """Mean of the middle 50% along `axis`: int(0.25 * n) values cut from each end after sorting."""
    scores = np.sort(np.asarray(scores, dtype=np.float64), axis=axis)
    count = scores.shape[axis]
    cut = int(IQM_CUT * count)
    return np.take(scores, np.arange(cut, count - cut), axis=axis).mean(axis=axis)


def mean(scores, axis: int = -1) -> np.ndarray:
    return np.asarray(scores, dtype=np.float64).mean(axis=axis)


AGGREGATES: dict[str, Callable] = {"IQM": interquartile_mean, "Mean": mean}


def pooled(tasks: Sequence[Sequence[float]]) -> np.ndarray:
    """All runs' scores of all tasks in one array."""
    return np.concatenate(_as_tasks(tasks))


def performance_profile(tasks: Sequence[Sequence[float]], taus) -> np.ndarray:
    """For each tau, the fraction of runs (pooled over tasks) with a score above tau."""
    scores = pooled(tasks)
    taus = np.asarray(taus, dtype=np.float64)
    return (scores[None, :] > taus[:, None]).mean(axis=1)


def _pairwise_win_rate(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 over all pairs of the last axis (leading axes are batches):
    the Mann-Whitney U statistic of X divided by n_x * n_y."""
    greater = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    equal = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return greater + 0.5 * equal


def _batched_win_rate(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """_pairwise_win_rate for (batch, n_x) and (batch, n_y) arrays, in chunks that keep the
    (chunk, n_x, n_y) comparison arrays near 10 million entries."""
    chunk = max(1, 10_000_000 // (x.shape[1] * y.shape[1]))
    return np.concatenate([_pairwise_win_rate(x[i:i + chunk], y[i:i + chunk]) for i in range(0, x.shape[0], chunk)])


def probability_of_improvement(x_tasks, y_tasks) -> float:
    """P(X > Y) averaged over tasks; the two must list the same tasks in the same order."""
    x_tasks, y_tasks = _paired_tasks(x_tasks, y_tasks)
    return float(np.mean([_pairwise_win_rate(x, y) for x, y in zip(x_tasks, y_tasks)]))


def _paired_tasks(x_tasks, y_tasks) -> tuple[list[np.ndarray], list[np.ndarray]]:
    x_tasks, y_tasks = _as_tasks(x_tasks, "first scores"), _as_tasks(y_tasks, "second scores")
    if len(x_tasks) != len(y_tasks):
        raise ConfigError(
            f"The two sets of scores have {len(x_tasks)} and {len(y_tasks)} tasks; expected the same tasks for both."
        )
    return x_tasks, y_tasks


# ------------------------------------------------------------------- stratified bootstrap
def stratified_resamples(tasks: Sequence[Sequence[float]], reps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`reps` stratified bootstrap replicates: for each task an array (reps, n_task) of its own
    runs' scores drawn with replacement."""
    if reps < 1:
        raise ConfigError(f"--bootstrap is {reps}; expected a positive number of bootstrap replicates.")
    return [task[rng.integers(0, task.size, size=(reps, task.size))] for task in _as_tasks(tasks)]


def percentile_interval(point: float, replicates: np.ndarray, confidence: float = 0.95) -> Interval:
    if not 0 < confidence < 1:
        raise ConfigError(f"The confidence level is {confidence}; expected a number between 0 and 1.")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return Interval(float(point), float(low), float(high))


def aggregate_interval(tasks, statistic: Callable | str, reps: int = 2000, seed: int | np.random.Generator = 0,
                       confidence: float = 0.95) -> Interval:
    """`statistic` (a name in AGGREGATES or a function over the last axis) of the pooled runs,
    with its stratified-bootstrap percentile interval."""
    statistic = AGGREGATES[statistic] if isinstance(statistic, str) else statistic
    rng = np.random.default_rng(seed)
    point = statistic(pooled(tasks))
    replicates = statistic(np.concatenate(stratified_resamples(tasks, reps, rng), axis=1))
    return percentile_interval(point, replicates, confidence)


def difference_interval(x_tasks, y_tasks, statistic: Callable | str = "Mean", reps: int = 2000,
                        seed: int | np.random.Generator = 0, confidence: float = 0.95) -> Interval:
    """statistic(X) - statistic(Y) with a stratified-bootstrap interval; X and Y are resampled
    independently (they are different runs), each within its own tasks."""
    statistic = AGGREGATES[statistic] if isinstance(statistic, str) else statistic
    x_tasks, y_tasks = _paired_tasks(x_tasks, y_tasks)
    rng = np.random.default_rng(seed)
    point = statistic(pooled(x_tasks)) - statistic(pooled(y_tasks))
    x_replicates = statistic(np.concatenate(stratified_resamples(x_tasks, reps, rng), axis=1))
    y_replicates = statistic(np.concatenate(stratified_resamples(y_tasks, reps, rng), axis=1))
    return percentile_interval(point, x_replicates - y_replicates, confidence)


def probability_of_improvement_interval(x_tasks, y_tasks, reps: int = 2000, seed: int | np.random.Generator = 0,
                                        confidence: float = 0.95) -> Interval:
    """P(X > Y) averaged over tasks, with a stratified-bootstrap percentile interval."""
    x_tasks, y_tasks = _paired_tasks(x_tasks, y_tasks)
    rng = np.random.default_rng(seed)
    x_samples = stratified_resamples(x_tasks, reps, rng)
    y_samples = stratified_resamples(y_tasks, reps, rng)
    per_task = [_batched_win_rate(x, y) for x, y in zip(x_samples, y_samples)]
    point = probability_of_improvement(x_tasks, y_tasks)
    return percentile_interval(point, np.mean(per_task, axis=0), confidence)


def performance_profile_band(tasks, taus, reps: int = 2000, seed: int | np.random.Generator = 0,
                             confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The performance profile at `taus` and its pointwise stratified-bootstrap band (low, high)."""
    rng = np.random.default_rng(seed)
    taus = np.asarray(taus, dtype=np.float64)
    point = performance_profile(tasks, taus)
    resampled = np.sort(np.concatenate(stratified_resamples(tasks, reps, rng), axis=1), axis=1)
    # fraction above tau = 1 - (number of scores <= tau) / n, for each replicate (row) and tau
    at_or_below = np.stack([np.searchsorted(row, taus, side="right") for row in resampled])
    replicates = 1.0 - at_or_below / resampled.shape[1]
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail], axis=0)
    return point, low, high


def improvement_permutation_p_value(x_tasks, y_tasks, reps: int = 2000, seed: int | np.random.Generator = 0) -> float:
    """Two-sided p-value of "P(X > Y) = 0.5" by a stratified permutation test: within each task
    the runs of X and Y are shuffled between the two, and P(X > Y) averaged over tasks is
    recomputed. Unlike the bootstrap interval it stays honest with very few seeds (with 3 runs
    each, fully separated, the smallest possible p is 0.1). Monte Carlo with `reps` shuffles,
    (count + 1) / (reps + 1), so it never returns 0."""
    x_tasks, y_tasks = _paired_tasks(x_tasks, y_tasks)
    if reps < 1:
        raise ConfigError(f"--bootstrap is {reps}; expected a positive number of permutations.")
    rng = np.random.default_rng(seed)
    observed = abs(probability_of_improvement(x_tasks, y_tasks) - 0.5)
    shuffled_rates = []
    for x, y in zip(x_tasks, y_tasks):
        both = rng.permuted(np.tile(np.concatenate([x, y]), (reps, 1)), axis=1)
        shuffled_rates.append(_batched_win_rate(both[:, :x.size], both[:, x.size:]))
    shuffled = np.abs(np.mean(shuffled_rates, axis=0) - 0.5)
    extreme = np.count_nonzero(shuffled >= observed - 1e-12)
    return float((extreme + 1) / (reps + 1))
