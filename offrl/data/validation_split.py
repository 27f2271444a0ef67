"""Held-out validation episodes: a split by whole episodes, reproducible from a recorded seed.

NeoRL (Qin et al. 2022, Section 5) asks that offline policy selection use validation data the
policy never trained on, split by trajectory; a split by transition would leak each episode's
neighbours into training. `split_episodes` draws `round(fraction * episodes)` episodes (at least
one) with NumPy's generator seeded by `seed`, so the same fraction and seed always give the same
split of the same dataset.
"""

from __future__ import annotations

import numpy as np

from offrl.data.dataset import Dataset
from offrl.errors import ConfigError


def validation_episodes(dataset: Dataset, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the episodes held out for validation (empty when `fraction` is 0)."""
    if not (0.0 <= fraction < 1.0):
        raise ConfigError(f"--validation-fraction is {fraction}; expected a number in [0, 1).")
    if fraction == 0.0:
        return np.zeros(0, np.int64)
    count = max(1, int(round(fraction * dataset.num_episodes)))
    if count >= dataset.num_episodes:
        raise ConfigError(
            f"--validation-fraction {fraction} holds out {count} of the {dataset.num_episodes} episodes of "
            f"{dataset.where}, leaving none to train on; expected a smaller fraction or more episodes."
        )
    return np.sort(np.random.default_rng(seed).choice(dataset.num_episodes, size=count, replace=False)).astype(np.int64)


def select_episodes(dataset: Dataset, episodes: np.ndarray) -> Dataset:
    """A new dataset of the given episodes, in their order; metadata is kept (provenance notes the subset)."""
    episodes = np.asarray(episodes, np.int64)
    starts, ends = dataset.episode_starts[episodes], dataset.episode_ends[episodes]
    rows = np.concatenate([np.arange(start, end) for start, end in zip(starts, ends)])
    lengths = ends - starts
    new_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return Dataset(
        observations=dataset.observations[rows], actions=dataset.actions[rows], rewards=dataset.rewards[rows],
        next_observations=dataset.next_observations[rows], terminals=dataset.terminals[rows],
        timeouts=dataset.timeouts[rows], episode_starts=new_starts, metadata=dataset.metadata,
        costs=None if dataset.costs is None else dataset.costs[rows],
    )


def split_episodes(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    """(training part, validation part or None) of `dataset`, split by whole episodes."""
    held_out = validation_episodes(dataset, fraction, seed)
    if len(held_out) == 0:
        return dataset, None
    kept = np.setdiff1d(np.arange(dataset.num_episodes), held_out)
    return select_episodes(dataset, kept), select_episodes(dataset, held_out)
