"""Unifloral's UCB selection protocol (offrl/report/bandit.py): with one pull the pick is a random
seed; with many pulls the bandit finds the best seed of its subset."""

from __future__ import annotations

import numpy as np
import pytest

from offrl.errors import ConfigError
from offrl.report.bandit import ucb_selection_curve


def test_more_online_episodes_pick_better_seeds():
    rng = np.random.default_rng(0)
    means = np.array([-300.0, -250.0, -200.0, -150.0, -100.0])
    returns = [rng.normal(mean, 30.0, 10) for mean in means]
    curve = ucb_selection_curve(returns, max_pulls=100, subsample=5, repeats=300, reps=300)
    true_means = np.array([r.mean() for r in returns])
    # One pull: a seed at random (ties broken at random), so about the average of the seeds.
    assert abs(curve.mean[0] - true_means.mean()) < 15
    # A hundred pulls: nearly always the best seed.
    assert curve.mean[-1] > true_means.max() - 10
    assert curve.mean[-1] > curve.mean[4] > curve.mean[0]
    assert np.all(curve.low <= curve.mean) and np.all(curve.mean <= curve.high)


def test_one_policy_is_refused():
    with pytest.raises(ConfigError, match="at least 2 policies"):
        ucb_selection_curve([[1.0, 2.0]])
