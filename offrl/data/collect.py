"""Record a policy's interaction with a Gymnasium env as a `Dataset` (vectorised), and the helpers
dataset suites are assembled from: a fixed number of transitions, a replay buffer cut into
episodes, two datasets end to end, and the generated levels' names. None of them needs an agent:
training the behaviour agent is `offrl.suites`' job."""

from __future__ import annotations

import re
from typing import Callable, Iterator

import numpy as np

from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.envs.factory import action_bounds, make_vector_env, split_env_id
from offrl.errors import ConfigError

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
    An env that reports a step cost in `info["cost"]` (offrl/envs/velocity_cost.py) also gets
    per-step `costs`.
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
                if "cost" in infos:  # a constrained task; a finished sub-env's step info is its final_info
                    step_info = infos["final_info"] if done[i] and "final_info" in infos else infos
                    buffer.setdefault("costs", []).append(float(step_info["cost"][i]))
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
    if all("costs" in episode for episode in episodes):
        flat["costs"] = np.concatenate([episode["costs"] for episode in episodes])
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


# ------------------------------------------------------------------------------- naming
def env_short_name(env_id: str) -> str:
    """'HalfCheetah-v5' -> 'halfcheetah' (namespace and version dropped, lower case)."""
    base = split_env_id(env_id)[0].split("/")[-1]
    base = re.sub(r"-v\d+$", "", base)
    return re.sub(r"[^a-z0-9]+", "", base.lower()) or "env"


def dataset_name(env_id: str, level: str, version: int = 0) -> str:
    """The registry name (a Minari id) of a generated level: 'halfcheetah-medium-replay-v0'."""
    return f"{env_short_name(env_id)}-{level}-v{version}"


# --------------------------------------------------------------------------- collection
def collect_transitions(
    env_id: str,
    policy: Callable[[np.ndarray, np.random.Generator], np.ndarray],
    num_transitions: int,
    seed: int = 0,
    num_envs: int = 10,
    name: str | None = None,
    on_step: Callable[[int, float | None], None] | None = None,
) -> Dataset:
    """Run `policy(observations, rng) -> env actions` until `num_transitions` are recorded.

    Finished episodes are stored in the order they finish. Collection stops as soon as they hold
    `num_transitions`; the last one is cut there and its last transition flagged as a timeout
    (as D4RL's own collection cut the final episode). Episodes still running are discarded.
    `on_step(transitions, mean_return_of_recent_episodes)` reports progress.
    """
    if num_transitions <= 0:
        raise ConfigError(f"--size is {num_transitions}; expected a positive number of transitions.")
    rng = np.random.default_rng(seed)
    low, high = action_bounds(env_id)
    episodes: list[dict[str, np.ndarray]] = []
    stored = 0
    returns: list[float] = []
    stream = finished_episodes(env_id, policy, rng, seed, num_envs)
    for episode in stream:
        episodes.append(episode)
        stored += len(episode["rewards"])
        returns.append(float(episode["rewards"].sum()))
        if on_step is not None:
            on_step(min(stored, num_transitions), float(np.mean(returns[-10:])))
        if stored >= num_transitions:
            break
    stream.close()
    excess = stored - num_transitions
    if excess > 0:
        last = episodes[-1]
        keep = len(last["rewards"]) - excess
        last = {field: values[:keep].copy() for field, values in last.items()}
        if not last["terminals"][-1]:
            last["timeouts"][-1] = True
        episodes[-1] = last
    return episodes_to_dataset(episodes, DatasetMetadata(
        name=name, env_id=env_id, action_low=low, action_high=high,
    ))


def concatenate(first: Dataset, second: Dataset, metadata: DatasetMetadata) -> Dataset:
    """`first`'s episodes followed by `second`'s, unchanged (with their costs when both have them)."""
    return concatenate_all([first, second], metadata)


def concatenate_all(datasets: list[Dataset], metadata: DatasetMetadata) -> Dataset:
    """The datasets' episodes end to end, unchanged; `costs` are kept when every one has them."""
    offsets = np.cumsum([0] + [dataset.num_transitions for dataset in datasets[:-1]])
    costs = None
    if all(dataset.costs is not None for dataset in datasets):
        costs = np.concatenate([dataset.costs for dataset in datasets])
    return Dataset(
        **{field: np.concatenate([getattr(dataset, field) for dataset in datasets]) for field in _FIELDS},
        episode_starts=np.concatenate([dataset.episode_starts + offset for dataset, offset in zip(datasets, offsets)]),
        metadata=metadata,
        costs=costs,
    )


def replay_dataset(replay: dict[str, np.ndarray], cut: int, size: int, metadata: DatasetMetadata) -> Dataset:
    """Rows [max(0, cut - size), cut) of a replay buffer, regrouped into intact episodes.

    Rows of one sub-env are contiguous in time; episodes end at a done or timeout flag. Episodes
    are ordered by their first row (collection order). The episode still running at the cut ends
    with a timeout flag; an episode cut at the start of the window simply starts mid-way.
    """
    start = max(0, cut - size)
    rows = {name: values[start:cut] for name, values in replay.items()}
    env_index = rows["env_index"]
    terminals = rows["dones"] > 0.5
    timeouts = (rows["timeouts"] > 0.5) & ~terminals
    episodes: list[tuple[int, np.ndarray]] = []
    for env in np.unique(env_index):
        index = np.flatnonzero(env_index == env)
        ends = np.flatnonzero(terminals[index] | timeouts[index])
        bounds = np.concatenate([[0], ends + 1])
        if bounds[-1] < len(index):
            bounds = np.append(bounds, len(index))
        for begin, end in zip(bounds[:-1], bounds[1:]):
            episodes.append((int(index[begin]), index[begin:end]))
    episodes.sort(key=lambda item: item[0])
    order = np.concatenate([index for _, index in episodes])
    lengths = np.array([len(index) for _, index in episodes])
    terminals, timeouts = terminals[order], timeouts[order]
    last = np.cumsum(lengths) - 1
    timeouts[last] |= ~terminals[last]  # the partial episode at the cut: truncated, bootstraps
    return Dataset(
        observations=rows["observations"][order],
        actions=rows["actions"][order],
        rewards=rows["rewards"][order],
        next_observations=rows["next_observations"][order],
        terminals=terminals,
        timeouts=timeouts,
        episode_starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]),
        metadata=metadata,
    )


def complete_episodes(dataset: Dataset) -> np.ndarray:
    """Which episodes ended by termination or by the env's own time limit (a boolean per episode).

    Episodes cut by collection budgets are flagged as timeouts too; they are excluded by length
    when shorter than the longest episode that timed out.
    """
    last = dataset.episode_ends - 1
    lengths = dataset.episode_lengths
    timed_out = dataset.timeouts[last]
    full_length = lengths[timed_out].max() if timed_out.any() else 0
    return dataset.terminals[last] | (timed_out & (lengths == full_length))


def complete_episode_returns(dataset: Dataset) -> np.ndarray:
    """Returns of the complete episodes (`complete_episodes`); all of them if none is complete."""
    returns = dataset.episode_returns()
    complete = complete_episodes(dataset)
    return returns[complete] if complete.any() else returns
