"""Episode-level filters of a dataset (e.g. for %BC)."""

from __future__ import annotations

import numpy as np

from offrl.data.dataset import Dataset
from offrl.errors import ConfigError


def filter_top_episodes(dataset: Dataset, fraction: float) -> Dataset:
    """The episodes with the highest undiscounted returns, max(1, floor(fraction * episodes)) of them.

    Episodes keep their order in the dataset and their end flags; metadata is copied with the
    filter recorded in its provenance. Ties at the cut keep the earlier episode (stable sort).
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"--top-fraction is {fraction}; expected a value in (0, 1].")
    returns = dataset.episode_returns()
    keep_count = max(1, int(fraction * len(returns)))
    kept = np.sort(np.argsort(-returns, kind="stable")[:keep_count])
    starts, ends = dataset.episode_starts[kept], dataset.episode_ends[kept]
    rows = np.concatenate([np.arange(start, end) for start, end in zip(starts, ends)])
    lengths = ends - starts
    metadata = type(dataset.metadata)(**{**vars(dataset.metadata)})
    metadata.provenance = {
        **dataset.metadata.provenance,
        "filter": {"top_fraction": fraction, "episodes_kept": int(keep_count), "episodes_total": int(len(returns))},
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
    )
