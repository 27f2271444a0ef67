"""Record a policy's interaction with a Gymnasium env as a `Dataset` (vectorised)."""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.envs.factory import action_bounds, make_vector_env

_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


def finished_episodes(
    env_id: str,
    policy: Callable[[np.ndarray, np.random.Generator], np.ndarray],
    rng: np.random.Generator,
    seed: int = 0,
    num_envs: int = 8,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield complete episodes of `policy(observations, rng) -> actions` in the order they finish.

    Terminations become `terminals`, time-limit truncations `timeouts`, and each transition
    keeps its true next observation (the episode's final one, not the next episode's first).
    The vector env is closed when the caller stops iterating.
    """
    low, high = action_bounds(env_id)
    envs = make_vector_env(env_id, num_envs)
    buffers = [{field: [] for field in _FIELDS} for _ in range(num_envs)]
    try:
        observations, _ = envs.reset(seed=seed)
        while True:
            actions = np.clip(np.asarray(policy(observations.astype(np.float32), rng), np.float32), low, high)
            next_observations, rewards, terminated, truncated, infos = envs.step(actions)
            done = terminated | truncated
            finished = []
            for i in range(num_envs):
                buffer = buffers[i]
                buffer["observations"].append(observations[i])
                buffer["actions"].append(actions[i])
                buffer["rewards"].append(rewards[i])
                buffer["next_observations"].append(infos["final_obs"][i] if done[i] else next_observations[i])
                buffer["terminals"].append(bool(terminated[i]))
                buffer["timeouts"].append(bool(truncated[i] and not terminated[i]))
                if done[i]:
                    finished.append({field: np.asarray(values) for field, values in buffer.items()})
                    buffers[i] = {field: [] for field in _FIELDS}
            observations = next_observations
            yield from finished
    finally:
        envs.close()


def episodes_to_dataset(episodes: list[dict[str, np.ndarray]], metadata: DatasetMetadata) -> Dataset:
    lengths = np.array([len(episode["rewards"]) for episode in episodes])
    flat = {field: np.concatenate([episode[field] for episode in episodes]) for field in _FIELDS}
    return Dataset(**flat, episode_starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]), metadata=metadata)


def collect_episodes(
    env_id: str,
    policy: Callable[[np.ndarray, np.random.Generator], np.ndarray],
    num_episodes: int,
    seed: int = 0,
    num_envs: int = 8,
    name: str | None = None,
) -> Dataset:
    """Run `policy(observations, rng) -> actions` until `num_episodes` episodes are complete."""
    rng = np.random.default_rng(seed)
    low, high = action_bounds(env_id)
    stream = finished_episodes(env_id, policy, rng, seed, min(num_envs, num_episodes))
    episodes = [episode for episode, _ in zip(stream, range(num_episodes))]
    stream.close()
    return episodes_to_dataset(episodes, DatasetMetadata(
        name=name, env_id=env_id, action_low=low, action_high=high,
        provenance={"collected_by": "offrl.data.collect.collect_episodes", "seed": seed}))
