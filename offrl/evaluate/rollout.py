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
    costs: np.ndarray | None = None  # summed `info["cost"]` per episode, for envs that report one

    @property
    def mean_cost(self) -> float | None:
        return None if self.costs is None else float(np.mean(self.costs))

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
        costs, has_costs = np.zeros(num_episodes), False
        step_costs = np.zeros(num_episodes, dtype=np.float32)  # the last step's, for a policy that acts on costs
        uses_costs = stateful and bool(getattr(policy, "uses_costs", False))
        while running.any():
            observations = observations.astype(np.float32)
            if uses_costs:
                actions = policy(observations, rewards, starts, costs=step_costs)
            else:
                actions = policy(observations, rewards, starts) if stateful else policy(observations)
            actions = np.asarray(actions, dtype=envs.action_space.dtype)
            observations, rewards, terminated, truncated, infos = envs.step(actions)
            returns += np.where(running, rewards, 0.0)
            step_costs = vector_step_costs(infos, terminated | truncated)
            if step_costs is not None:
                has_costs = True
                costs += np.where(running, step_costs, 0.0)
            else:
                step_costs = np.zeros(num_episodes, dtype=np.float32)
            lengths += running
            starts = terminated | truncated
            running &= ~starts
        return EpisodeStats(returns=returns, lengths=lengths, costs=costs if has_costs else None)
    finally:
        envs.close()


def vector_step_costs(infos: dict, done: np.ndarray) -> np.ndarray | None:
    """Each sub-env's `info["cost"]` for this step (constrained tasks, e.g. offrl/envs/velocity_cost.py).
    With same-step autoreset a finished sub-env's info is its reset's; its step's is in `final_info`."""
    if "cost" not in infos:
        return None
    costs = np.asarray(infos["cost"], np.float64).copy()
    final = infos.get("final_info")
    if isinstance(final, dict) and "cost" in final and done.any():
        costs = np.where(done, np.asarray(final["cost"], np.float64), costs)
    return costs
