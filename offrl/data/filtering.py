"""Episode-level filters of a dataset (e.g. for %BC)."""

from __future__ import annotations

import numpy as np

from offrl.data.dataset import Dataset
from offrl.errors import ConfigError


def episode_scores(dataset: Dataset, discount: float = 1.0) -> np.ndarray:
    """Each episode's return from its first step, sum_t discount^t r_t (discount 1: the plain return)."""
    if discount == 1.0:
        return dataset.episode_returns()
    steps = np.arange(dataset.num_transitions) - np.repeat(dataset.episode_starts, dataset.episode_ends - dataset.episode_starts)
    return np.add.reduceat(dataset.rewards.astype(np.float64) * discount ** steps, dataset.episode_starts)


def filter_top_episodes(dataset: Dataset, fraction: float, discount: float = 1.0) -> Dataset:
    """The episodes with the highest returns, max(1, floor(fraction * episodes)) of them.

    Episodes are ranked by `episode_scores(dataset, discount)`: undiscounted by default (the
    Decision Transformer paper's %BC), or discounted from each episode's start (CORL's
    any_percent_bc.py ranks with discount 0.99).

    Episodes keep their order in the dataset and their end flags; metadata is copied with the
    filter recorded in its provenance. Ties at the cut keep the earlier episode (stable sort).
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"--top-fraction is {fraction}; expected a value in (0, 1].")
    if not 0.0 < discount <= 1.0:
        raise ConfigError(f"--ranking-discount is {discount}; expected a value in (0, 1].")
    returns = episode_scores(dataset, discount)
    keep_count = max(1, int(fraction * len(returns)))
    kept = np.sort(np.argsort(-returns, kind="stable")[:keep_count])
    starts, ends = dataset.episode_starts[kept], dataset.episode_ends[kept]
    rows = np.concatenate([np.arange(start, end) for start, end in zip(starts, ends)])
    lengths = ends - starts
    metadata = type(dataset.metadata)(**{**vars(dataset.metadata)})
    metadata.provenance = {
        **dataset.metadata.provenance,
        "filter": {"top_fraction": fraction, "ranking_discount": discount, "episodes_kept": int(keep_count), "episodes_total": int(len(returns))},
    }
    return Dataset(
        observations=dataset.observations[rows],
        actions=dataset.actions[rows],
        rewards=dataset.rewards[rows],
        next_observations=dataset.next_observations[rows],
        terminals=dataset.terminals[rows],
        timeouts=dataset.timeouts[rows],
        episode_starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
        metadata=metadata,
        costs=None if dataset.costs is None else dataset.costs[rows],
    )
