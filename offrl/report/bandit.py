"""Unifloral's policy-selection protocol for a small online budget (Jackson et al. 2025, "A Clean
Slate for Offline RL", Section 5; the authors' evaluation.py).

Given several trained policies (the seeds of one configuration) and the returns of their evaluation
episodes, a UCB bandit spends k online episodes choosing among a random subset of them: each pull
plays the arm with the largest mean + sqrt(α log(pulls) / count) (ties broken at random) and
observes one of that policy's evaluation returns, drawn at random. After each pull the policy with
the best empirical mean is the pick; the curve is the expected true mean return of the pick after
k pulls, over many repeats, with a percentile bootstrap interval over the repeats. (One difference:
evaluation.py lets an arm not yet pulled, mean 0, be the pick; here only pulled arms can be, so
negative returns are handled.)
Defaults are those of the paper's figure as evaluation.py runs it: α = 2, 5 policies subsampled
per repeat, 500 repeats, 100 pulls, 1000 bootstrap resamples, 95% intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from offrl.errors import ConfigError

UCB_ALPHA = 2.0  # evaluation.py bootstrap_bandit_trials(ucb_alpha=2.0)
SUBSAMPLE = 5  # evaluation.py: num_subsample=5 in the paper's figure
REPEATS = 500  # evaluation.py: num_repeats=500
MAX_PULLS = 100  # evaluation.py: max_pulls=100


@dataclass(frozen=True)
class BanditCurve:
    pulls: np.ndarray  # 1 .. max_pulls
    mean: np.ndarray  # expected true mean return of the pick after each pull
    low: np.ndarray
    high: np.ndarray
    policies: int


def ucb_selection_curve(returns: Sequence[Sequence[float]], max_pulls: int = MAX_PULLS, subsample: int = SUBSAMPLE,
                        repeats: int = REPEATS, alpha: float = UCB_ALPHA, reps: int = 1000, confidence: float = 0.95,
                        seed: int = 0) -> BanditCurve:
    """The curve for policies whose evaluation returns are `returns[i]` (one sequence per policy)."""
    arms = [np.asarray(r, np.float64) for r in returns]
    if len(arms) < 2 or any(len(a) == 0 for a in arms):
        raise ConfigError(f"The bandit protocol needs at least 2 policies with evaluation returns; got {len(arms)}.")
    rng = np.random.default_rng(seed)
    k = min(subsample, len(arms))
    chosen = np.stack([rng.choice(len(arms), k, replace=False) for _ in range(repeats)])  # (repeats, k)
    true_means = np.array([a.mean() for a in arms])[chosen]
    counts = np.zeros((repeats, k))
    sums = np.zeros((repeats, k))
    rows = np.arange(repeats)
    picks = np.empty((repeats, max_pulls))
    for pull in range(max_pulls):
        means = sums / np.maximum(counts, 1)
        ucb = means + np.sqrt(alpha * np.log(pull + 1) / (counts + 1e-9))
        tied = ucb == ucb.max(axis=1, keepdims=True)
        arm = np.where(tied, rng.random(ucb.shape), -1.0).argmax(axis=1)
        policy = chosen[rows, arm]
        draws = np.array([arms[p][rng.integers(len(arms[p]))] for p in policy])
        counts[rows, arm] += 1
        sums[rows, arm] += draws
        best = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf).argmax(axis=1)  # only pulled arms can be picked
        picks[:, pull] = true_means[rows, best]
    boot = picks[rng.integers(0, repeats, (reps, repeats))].mean(axis=1)  # (reps, max_pulls)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail], axis=0)
    return BanditCurve(np.arange(1, max_pulls + 1), picks.mean(axis=0), low, high, len(arms))
