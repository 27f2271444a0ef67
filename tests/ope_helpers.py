"""A one-dimensional control task whose policy values are known, for the OPE tests.

State s in [-3, 3], action a in [-1, 1], s' = clip(0.9 s + 0.5 a), reward -s². The behaviour policy
acts uniformly at random, so the data cover every action; a policy a = clip(-k s) with a larger
gain k drives the state to 0 faster and is worth more. True discounted values (γ = 0.9) come from
Monte-Carlo rollouts of the same dynamics from the same start distribution, U(-2, 2).
"""

from __future__ import annotations

import numpy as np

from offrl.data.dataset import Dataset, DatasetMetadata

GAMMA = 0.9


def step(states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    return np.clip(0.9 * states + 0.5 * actions, -3.0, 3.0)


def gain_policy(gain: float):
    return lambda observations: np.clip(-gain * np.asarray(observations), -1.0, 1.0).astype(np.float32)


def linear_task_dataset(episodes: int = 40, length: int = 60, seed: int = 0) -> Dataset:
    """Random-behaviour episodes, each cut by a timeout after `length` steps (the target bootstraps)."""
    rng = np.random.default_rng(seed)
    states = rng.uniform(-2, 2, (episodes, 1))
    observations, actions, rewards, next_observations = [], [], [], []
    for _ in range(length):
        chosen = rng.uniform(-1, 1, (episodes, 1))
        following = step(states, chosen)
        observations.append(states), actions.append(chosen), rewards.append(-states[:, 0] ** 2), next_observations.append(following)
        states = following
    # (time, episode) -> episode-major rows
    def rows(values):
        return np.swapaxes(np.stack(values), 0, 1).reshape(episodes * length, -1)

    timeouts = np.zeros(episodes * length, bool)
    timeouts[length - 1::length] = True
    return Dataset(
        observations=rows(observations), actions=rows(actions), rewards=rows([r[:, None] for r in rewards])[:, 0],
        next_observations=rows(next_observations), terminals=np.zeros(episodes * length, bool), timeouts=timeouts,
        episode_starts=np.arange(0, episodes * length, length),
        metadata=DatasetMetadata(name="linear-task", action_low=-np.ones(1, np.float32), action_high=np.ones(1, np.float32)),
    )


def true_value(policy, episodes: int = 2000, horizon: int = 120, seed: int = 1) -> float:
    """Mean discounted return from U(-2, 2) starts (γ^120 < 4e-6: the infinite-horizon value)."""
    rng = np.random.default_rng(seed)
    states, total = rng.uniform(-2, 2, (episodes, 1)), np.zeros(episodes)
    for t in range(horizon):
        actions = rng.uniform(-1, 1, states.shape) if policy is None else policy(states)
        total += GAMMA**t * -states[:, 0] ** 2
        states = step(states, actions)
    return float(total.mean())
