"""Behavioural cloning: regress the dataset's actions with a deterministic policy.

Defaults follow CORL's `any_percent_bc.py` (256x256 ReLU MLP, Adam 3e-4, batch 256,
normalised observations), the BC baseline used in the TD3+BC and IQL papers' D4RL tables.
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

NAME = "bc"
DESCRIPTION = "Behavioural cloning: mean-squared-error regression of dataset actions."
PAPER = "Pomerleau 1991; D4RL baseline settings from CORL (Tarasov et al. 2022)"


@dataclass(frozen=True)
class Config:
    learning_rate: float = 3e-4  # CORL any_percent_bc
    hidden_dims: tuple[int, ...] = (256, 256)
    batch_size: int = 256
    normalize_observations: bool = True  # CORL normalises states for BC
    normalize_rewards: bool = False


@struct.dataclass
class State:
    actor: TrainState
    rng: jax.Array


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    actor_key, rng = jax.random.split(key)
    actor = DeterministicPolicy(spec.action_dim, config.hidden_dims)
    params = actor.init(actor_key, jnp.zeros((1, spec.observation_dim)))
    return State(
        actor=TrainState.create(apply_fn=actor.apply, params=params, tx=optax.adam(config.learning_rate)),
        rng=rng,
    )


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    def loss_fn(params):
        predicted = state.actor.apply_fn(params, batch.observations)
        return jnp.mean((predicted - batch.actions) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.actor.params)
    return state.replace(actor=state.actor.apply_gradients(grads=grads)), {"actor_loss": loss}


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return state.actor.apply_fn(state.actor.params, observations)
