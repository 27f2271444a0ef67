"""BC-Safe: behavioural cloning of the episodes whose cost stays within the target cost.

OSRL's `bc_mode="safe"` (osrl/common/dataset.py `process_bc_dataset`): an episode is kept when
its cost return (undiscounted: OSRL's BC config has gamma 1.0) is <= `cost_limit`, and BC is
trained on the kept episodes only. A strong baseline in DSRL's tables when the data holds enough
safe episodes, at the price of one policy per threshold. Network and optimiser are BC-All's
(offrl/algos/safe/bc_all.py, OSRL's bc_configs.py).

Engine hook: `training_data` selects the episodes (the normaliser is fitted on the whole dataset
before, as OSRL's state statistics are). A dataset without costs is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from offrl.algos.safe.bc_all import State, act, init, update  # noqa: F401 - BC-Safe is BC-All on safe episodes
from offrl.data.transforms import training_arrays
from offrl.errors import ConfigError

NAME = "bc_safe"
DESCRIPTION = "BC-Safe: behavioural cloning of the episodes whose cost return is within the target cost."
PAPER = "Liu et al. 2023, Datasets and Benchmarks for Offline Safe Reinforcement Learning (OSRL's BC, bc_mode=safe)"


@dataclass(frozen=True)
class Config:
    learning_rate: float = 1e-3  # OSRL examples/configs/bc_configs.py actor_lr
    hidden_dims: tuple[int, ...] = (256, 256)  # OSRL bc_configs.py a_hidden_sizes
    batch_size: int = 512  # OSRL bc_configs.py
    target_cost: float = 10.0  # κ: episodes with cost return <= κ are cloned (OSRL bc_configs.py cost_limit)
    normalize_observations: bool = False  # OSRL's BC trains on raw observations
    normalize_rewards: bool = False


def safe_episode_rows(dataset: Any, target_cost: float) -> np.ndarray:
    """Row indices of the episodes whose summed cost is <= `target_cost` (in dataset order)."""
    if dataset.costs is None:
        raise ConfigError(
            f"{dataset.where} has no per-step costs; expected a dataset with a 'costs' field (DSRL layout) "
            f"for {NAME}, which keeps the episodes within the target cost."
        )
    episode_costs = dataset.episode_costs()
    kept = np.flatnonzero(episode_costs <= target_cost)
    if len(kept) == 0:
        raise ConfigError(
            f"--target-cost is {target_cost:g} but the cheapest episode of {dataset.where} costs "
            f"{episode_costs.min():g}; expected a target cost that at least one episode meets."
        )
    starts, ends = dataset.episode_starts[kept], dataset.episode_ends[kept]
    return np.concatenate([np.arange(start, end) for start, end in zip(starts, ends)])


def training_data(dataset: Any, normalizer: Any, config: Config) -> dict[str, np.ndarray]:
    rows = safe_episode_rows(dataset, config.target_cost)
    return {name: values[rows] for name, values in training_arrays(dataset, normalizer).items()}
