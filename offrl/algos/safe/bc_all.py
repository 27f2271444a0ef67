"""BC-All: behavioural cloning on every episode, costly or not (OSRL's `bc_mode="all"`).

The baseline of safe offline RL (Liu et al. 2023, "Datasets and Benchmarks for Offline Safe
Reinforcement Learning"): it imitates the mixture of safe and unsafe behaviour in the data, so it
keeps the constraint only as far as the data does. Defaults are OSRL's
`examples/configs/bc_configs.py` (BCTrainConfig): a deterministic 256x256 ReLU actor trained by
mean-squared error with Adam 1e-3 on batches of 512 raw (unnormalised) observations.

`target_cost` is not used in training; it is the cost threshold κ the run is scored at (DSRL's
normalised cost, offrl/evaluate/safe_scores.py), as OSRL's BC config carries `cost_limit` in
every mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.nets import DeterministicPolicy
from offrl.types import Batch, Spec

NAME = "bc_all"
DESCRIPTION = "BC-All: behavioural cloning of every episode, safe or not (the safe offline RL baseline)."
PAPER = "Liu et al. 2023, Datasets and Benchmarks for Offline Safe Reinforcement Learning (OSRL's BC, bc_mode=all)"


@dataclass(frozen=True)
class Config:
    learning_rate: float = 1e-3  # OSRL examples/configs/bc_configs.py actor_lr
    hidden_dims: tuple[int, ...] = (256, 256)  # OSRL bc_configs.py a_hidden_sizes
    batch_size: int = 512  # OSRL bc_configs.py
    target_cost: float = 10.0  # cost threshold per episode κ (OSRL bc_configs.py cost_limit); evaluation only
    normalize_observations: bool = False  # OSRL's BC trains on raw observations
    normalize_rewards: bool = False


@struct.dataclass
class State:
    actor: TrainState
    rng: jax.Array


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    actor_key, rng = jax.random.split(key)
    actor = DeterministicPolicy(spec.action_dim, config.hidden_dims)
    params = actor.init(actor_key, jnp.zeros((1, spec.observation_dim)))
    return State(actor=TrainState.create(apply_fn=actor.apply, params=params, tx=optax.adam(config.learning_rate)), rng=rng)


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    def loss_fn(params):
        return jnp.mean((state.actor.apply_fn(params, batch.observations) - batch.actions) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.actor.params)
    return state.replace(actor=state.actor.apply_gradients(grads=grads)), {"actor_loss": loss}


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return state.actor.apply_fn(state.actor.params, observations)
