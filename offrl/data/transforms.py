"""Transforms between a dataset's raw values and what algorithms train on.

Algorithms see observations standardised (when their Config asks), actions scaled to [-1, 1]
and rewards optionally rescaled and shifted (r * reward_scale + reward_bias: the algorithm's
return-range scaling times the run's `--reward-multiplier`, plus `--reward-offset`, e.g. CORL's AntMaze
r - 1). The same `Normalizer` is saved with a run, so a loaded policy
applies exactly the transform it was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset
from offrl.errors import DatasetError


@dataclass(frozen=True)
class Normalizer:
    observation_mean: np.ndarray
    observation_std: np.ndarray
    action_low: np.ndarray
    action_high: np.ndarray
    reward_scale: float = 1.0
    reward_bias: float = 0.0

    def transform_rewards(self, rewards):
        """Env rewards -> the rewards the algorithm trains on (and DT-style policies act on)."""
        return rewards * self.reward_scale + self.reward_bias

    def normalize_observations(self, observations):
        return (observations - self.observation_mean) / self.observation_std

    def scale_actions(self, actions):
        """Environment bounds -> [-1, 1]."""
        return 2.0 * (actions - self.action_low) / (self.action_high - self.action_low) - 1.0

    def unscale_actions(self, actions):
        """[-1, 1] -> environment bounds."""
        return self.action_low + (actions + 1.0) * 0.5 * (self.action_high - self.action_low)

    def to_json(self) -> dict[str, Any]:
        return {
            "observation_mean": self.observation_mean.tolist(),
            "observation_std": self.observation_std.tolist(),
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
            "reward_scale": self.reward_scale,
            "reward_bias": self.reward_bias,
        }

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> "Normalizer":
        return cls(
            observation_mean=np.asarray(values["observation_mean"], np.float32),
            observation_std=np.asarray(values["observation_std"], np.float32),
            action_low=np.asarray(values["action_low"], np.float32),
            action_high=np.asarray(values["action_high"], np.float32),
            reward_scale=float(values["reward_scale"]),
            reward_bias=float(values.get("reward_bias", 0.0)),  # runs saved before the bias existed had none
        )


def returns_range_reward_scale(dataset: Dataset) -> float:
    """IQL's locomotion reward scale: 1000 / (max episode return - min episode return).

    Only complete episodes count (those ending in a terminal or timeout), as in the reference code.
    """
    returns = dataset.episode_returns()
    ends = dataset.episode_ends - 1
    complete = dataset.terminals[ends] | dataset.timeouts[ends]
    if complete.sum() >= 2:
        returns = returns[complete]
    spread = float(returns.max() - returns.min()) if len(returns) > 1 else 0.0
    return 1000.0 / spread if spread > 1e-6 else 1.0


def fit_normalizer(
    dataset: Dataset,
    normalize_observations: bool,
    normalize_rewards: bool,
    action_low: np.ndarray | None = None,
    action_high: np.ndarray | None = None,
    reward_scale: float = 1.0,
    reward_bias: float = 0.0,
) -> Normalizer:
    """`reward_scale` multiplies the return-range scale of `normalize_rewards` (or 1); `reward_bias` is added after."""
    obs_dim, action_dim = dataset.spec.observation_dim, dataset.spec.action_dim
    if normalize_observations:
        mean = dataset.observations.mean(axis=0)
        std = dataset.observations.std(axis=0) + 1e-3  # TD3+BC's epsilon
    else:
        mean, std = np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32)
    low = dataset.metadata.action_low if action_low is None else action_low
    high = dataset.metadata.action_high if action_high is None else action_high
    if low is None or high is None:
        low, high = -np.ones(action_dim, np.float32), np.ones(action_dim, np.float32)
        if np.abs(dataset.actions).max() > 1.0 + 1e-5:
            raise DatasetError(
                f"{dataset.where}: actions exceed [-1, 1] and the dataset records no action bounds; "
                "expected an env id (--env) whose action space gives the bounds."
            )
    low = np.broadcast_to(np.asarray(low, np.float32), (action_dim,)).copy()
    high = np.broadcast_to(np.asarray(high, np.float32), (action_dim,)).copy()
    scale = (returns_range_reward_scale(dataset) if normalize_rewards else 1.0) * float(reward_scale)
    return Normalizer(mean.astype(np.float32), std.astype(np.float32), low, high, scale, float(reward_bias))


def training_arrays(dataset: Dataset, normalizer: Normalizer) -> dict[str, np.ndarray]:
    """The arrays the engine puts on the device, already transformed."""
    return {
        "observations": normalizer.normalize_observations(dataset.observations).astype(np.float32),
        "actions": np.clip(normalizer.scale_actions(dataset.actions), -1.0, 1.0).astype(np.float32),
        "rewards": normalizer.transform_rewards(dataset.rewards).astype(np.float32),
        "next_observations": normalizer.normalize_observations(dataset.next_observations).astype(np.float32),
        "dones": dataset.terminals.astype(np.float32),
    }
