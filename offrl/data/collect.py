"""Record a policy's interaction with a Gymnasium env as a `Dataset` (vectorised)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.envs.factory import action_bounds, make_vector_env

_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


def collect_episodes(
    env_id: str,
    policy: Callable[[np.ndarray, np.random.Generator], np.ndarray],
    num_episodes: int,
    seed: int = 0,
    num_envs: int = 8,
    name: str | None = None,
) -> Dataset:
    """Run `policy(observations, rng) -> actions` until `num_episodes` episodes are complete.

    Terminations become `terminals`, time-limit truncations `timeouts`, and each transition
    keeps its true next observation (the episode's final one, not the next episode's first).
    Episodes are stored in the order they finish.
    """
    rng = np.random.default_rng(seed)
    low, high = action_bounds(env_id)
    num_envs = min(num_envs, num_episodes)
    envs = make_vector_env(env_id, num_envs)
    episodes: list[dict[str, list]] = []
    buffers = [{field: [] for field in _FIELDS} for _ in range(num_envs)]
    try:
        observations, _ = envs.reset(seed=seed)
        while len(episodes) < num_episodes:
            actions = np.clip(np.asarray(policy(observations.astype(np.float32), rng), np.float32), low, high)
            next_observations, rewards, terminated, truncated, infos = envs.step(actions)
            done = terminated | truncated
            for i in range(num_envs):
                buffer = buffers[i]
                buffer["observations"].append(observations[i])
                buffer["actions"].append(actions[i])
                buffer["rewards"].append(rewards[i])
                buffer["next_observations"].append(infos["final_obs"][i] if done[i] else next_observations[i])
                buffer["terminals"].append(bool(terminated[i]))
                buffer["timeouts"].append(bool(truncated[i] and not terminated[i]))
                if done[i]:
                    episodes.append(buffer)
                    buffers[i] = {field: [] for field in _FIELDS}
            observations = next_observations
    finally:
        envs.close()
    episodes = episodes[:num_episodes]
    lengths = np.array([len(episode["rewards"]) for episode in episodes])
    flat = {field: np.concatenate([np.asarray(episode[field]) for episode in episodes]) for field in _FIELDS}
    return Dataset(
        **flat,
        episode_starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]),
        metadata=DatasetMetadata(name=name, env_id=env_id, action_low=low, action_high=high,
                                 provenance={"collected_by": "offrl.data.collect.collect_episodes", "seed": seed}),
    )
