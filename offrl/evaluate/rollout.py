"""Roll out a policy for many episodes at once in a Gymnasium vector env."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from offrl.envs.factory import make_vector_env


@dataclass(frozen=True)
class EpisodeStats:
    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))


def evaluate_policy(
    policy: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    num_episodes: int = 10,
    seed: int = 0,
) -> EpisodeStats:
    """Run `num_episodes` episodes in parallel, one per sub-environment, seeded `seed + i`.

    `policy` maps a batch of observations (num_episodes, obs_dim) to a batch of actions in the
    environment's own action bounds. Each sub-environment counts only its first episode.
    """
    envs = make_vector_env(env_id, num_episodes)
    try:
        observations, _ = envs.reset(seed=seed)
        returns = np.zeros(num_episodes)
        lengths = np.zeros(num_episodes, dtype=np.int64)
        running = np.ones(num_episodes, dtype=bool)
        while running.any():
            actions = np.asarray(policy(observations.astype(np.float32)), dtype=envs.action_space.dtype)
            observations, rewards, terminated, truncated, _ = envs.step(actions)
            returns += np.where(running, rewards, 0.0)
            lengths += running
            running &= ~(terminated | truncated)
        return EpisodeStats(returns=returns, lengths=lengths)
    finally:
        envs.close()
