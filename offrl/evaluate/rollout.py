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
    policy: Callable[..., np.ndarray],
    env_id: str,
    num_episodes: int = 10,
    seed: int = 0,
) -> EpisodeStats:
    """Run `num_episodes` episodes in parallel, one per sub-environment, seeded `seed + i`.

    `policy` maps a batch of observations (num_episodes, obs_dim) to a batch of actions in the
    environment's own action bounds. Each sub-environment counts only its first episode.
    A stateful policy (`policy.stateful`, e.g. a Decision Transformer's `Policy`) is `reset()`
    first and called as `policy(observations, rewards, starts)`: the reward each sub-env received
    on its last step, and whether its observation begins a new episode (every one at the first
    call; with same-step autoreset, a finished sub-env's next observation starts its next episode).
    """
    stateful = bool(getattr(policy, "stateful", False))
    if stateful:
        policy.reset()
    envs = make_vector_env(env_id, num_episodes)
    try:
        observations, _ = envs.reset(seed=seed)
        returns = np.zeros(num_episodes)
        lengths = np.zeros(num_episodes, dtype=np.int64)
        running = np.ones(num_episodes, dtype=bool)
        rewards = np.zeros(num_episodes, dtype=np.float32)
        starts = np.ones(num_episodes, dtype=bool)
        while running.any():
            observations = observations.astype(np.float32)
            actions = policy(observations, rewards, starts) if stateful else policy(observations)
            actions = np.asarray(actions, dtype=envs.action_space.dtype)
            observations, rewards, terminated, truncated, _ = envs.step(actions)
            returns += np.where(running, rewards, 0.0)
            lengths += running
            starts = terminated | truncated
            running &= ~starts
        return EpisodeStats(returns=returns, lengths=lengths)
    finally:
        envs.close()
