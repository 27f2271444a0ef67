"""The device buffer that model rollouts fill, and the settings that size it.

An algorithm that trains on model rollouts keeps a `ModelBuffer` in its state (field
`model_buffer`), so checkpoints, resume and the seed axis carry it like any other state; the
engine (offrl/train/model_rollouts.py) writes rollouts into it and draws the model part of each
batch from it. Rows are stored as the algorithm sees them (normalised observations, actions in
[-1, 1], scaled and penalised rewards). It is a ring: the newest rows replace the oldest.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from offrl.errors import ConfigError

ROLLOUT_STATISTICS = ("rollout_penalty", "rollout_uncertainty", "rollout_model_reward", "rollout_terminal_fraction",
                      "rollout_length", "model_buffer_size")

# MOPO's two penalties (tianheyu927/mopo mopo/models/fake_env.py): penalty_learned_var=True, the
# largest norm of a member's predicted std (its D4RL configs, base_mopo.py), and False, the largest
# distance of a member's predicted next-state mean from the members' average (the code's default).
UNCERTAINTIES = ("aleatoric", "disagreement")


@dataclass(frozen=True)
class RolloutSettings:
    horizon: int  # steps per rollout (MOPO's h)
    rollout_batch: int  # rollouts started from dataset states each time
    rollout_every: int  # updates between rollouts
    real_ratio: float  # share of each batch drawn from the dataset, the rest from the model buffer
    capacity: int  # model-buffer rows
    penalty_coef: float  # reward - penalty_coef * uncertainty (MOPO); 0: no dynamics penalty (RAVL)
    uncertainty: str = "aleatoric"  # UNCERTAINTIES: "aleatoric" max_i ||std_i||, "disagreement" max_i ||mu_i - mean_j mu_j||

    def validate(self, batch_size: int) -> None:
        for name in ("horizon", "rollout_batch", "rollout_every", "capacity"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} is {getattr(self, name)}; expected a positive integer.")
        if not 0.0 <= self.real_ratio <= 1.0:
            raise ConfigError(f"--real-ratio is {self.real_ratio}; expected a number in [0, 1].")
        if self.rollout_batch * self.horizon > self.capacity:
            raise ConfigError(
                f"--rollout-batch {self.rollout_batch} x --horizon {self.horizon} = {self.rollout_batch * self.horizon} rows "
                f"overflow the model buffer of --model-buffer-capacity {self.capacity}; expected at most {self.capacity} rows per rollout."
            )
        if self.uncertainty not in UNCERTAINTIES:
            raise ConfigError(f"--uncertainty is {self.uncertainty!r}; expected one of {', '.join(UNCERTAINTIES)}.")
        if self.penalty_coef < 0 or self.penalty_coef != self.penalty_coef:
            raise ConfigError(f"--penalty-coef is {self.penalty_coef}; expected a number >= 0.")
        del batch_size


@struct.dataclass
class ModelBuffer:
    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    next_observations: jax.Array
    dones: jax.Array
    pointer: jax.Array  # next row to write
    size: jax.Array  # rows holding data
    updates: jax.Array  # updates since training began (rollouts every `rollout_every`)
    statistics: jax.Array  # the latest rollout's ROLLOUT_STATISTICS, logged every update


def empty_model_buffer(observation_dim: int, action_dim: int, capacity: int) -> ModelBuffer:
    zeros = lambda *shape: jnp.zeros(shape, jnp.float32)  # noqa: E731
    return ModelBuffer(
        observations=zeros(capacity, observation_dim), actions=zeros(capacity, action_dim), rewards=zeros(capacity),
        next_observations=zeros(capacity, observation_dim), dones=zeros(capacity),
        pointer=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32), updates=jnp.zeros((), jnp.int32),
        statistics=jnp.full((len(ROLLOUT_STATISTICS),), jnp.nan, jnp.float32),
    )
