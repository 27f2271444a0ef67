"""Robust IQL (Yang et al. 2023, "Towards Robust Offline Reinforcement Learning under Diverse
Data Corruption"; reference code YangRui2015/RIQL, RIQL.py).

IQL made robust to corrupted data by three changes: observations standardised, the Q target
fitted with a Huber loss (a corrupted reward or next state pulls with a bounded gradient), and
the value's target taken as a low quantile over an ensemble of Q-functions instead of the
minimum of two (a corrupted action's Q spreads the ensemble; the quantile discounts it). The
policy is IQL's advantage-weighted regression with a deterministic actor, as in RIQL.py.

Per-dataset settings (RIQL_config.py: sigma, quantile and ensemble size per corruption type) are
the paper's tuning; the defaults here are RIQL.py's TrainConfig.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.algos.model_free.iql import expectile_loss
from offrl.nets import CriticEnsemble, DeterministicPolicy, ValueNetwork
from offrl.types import Batch, Spec

NAME = "riql"
DESCRIPTION = "Robust IQL: Huber Q loss, quantile over a Q-ensemble, standardised states (corrupted data)."
PAPER = "Yang et al. 2023, Towards Robust Offline Reinforcement Learning under Diverse Data Corruption"


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 3e-4  # RIQL.py: Adam lr 3e-4 for actor, Q and V
    critic_learning_rate: float = 3e-4
    value_learning_rate: float = 3e-4
    hidden_dims: tuple[int, ...] = (256, 256)
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 0.005
    expectile: float = 0.7  # RIQL.py TrainConfig.iql_tau
    temperature: float = 3.0  # RIQL.py TrainConfig.beta
    max_advantage_weight: float = 100.0  # RIQL.py EXP_ADV_MAX
    actor_decay_steps: int = 3_000_000  # RIQL.py: CosineAnnealingLR over max_timesteps = 3e6
    num_critics: int = 5  # RIQL.py TrainConfig.num_critics (RIQL_config.py: 3 for some datasets)
    quantile: float = 0.25  # RIQL.py TrainConfig.quantile: the V target is this quantile over the ensemble
    huber: bool = True  # RIQL.py _update_q: huber_loss(target - q); off = IQL's squared loss
    huber_sigma: float = 1.0  # RIQL.py TrainConfig.sigma: quadratic below 1 / sigma^2, linear above
    target_min: float = -100.0  # RIQL.py _update_q: targets clamped to [-100, 1000]
    target_max: float = 1000.0
    normalize_observations: bool = True  # RIQL.py TrainConfig.normalize = True
    normalize_rewards: bool = False  # YangRui2015/RIQL@cc07d81 RIQL.py rescales no rewards (modify_reward, off by default, was removed in cdb587f)


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    critic_target: dict
    value: TrainState
    rng: jax.Array


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    actor_key, critic_key, value_key, rng = jax.random.split(key, 4)
    observation = jnp.zeros((1, spec.observation_dim))
    action = jnp.zeros((1, spec.action_dim))
    actor = DeterministicPolicy(spec.action_dim, config.hidden_dims)
    critic = CriticEnsemble(config.hidden_dims, num_critics=config.num_critics)
    value = ValueNetwork(config.hidden_dims)
    critic_params = critic.init(critic_key, observation, action)
    actor_schedule = optax.cosine_decay_schedule(config.actor_learning_rate, config.actor_decay_steps)
    return State(
        actor=TrainState.create(apply_fn=actor.apply, params=actor.init(actor_key, observation), tx=optax.adam(actor_schedule)),
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(config.critic_learning_rate)),
        critic_target=critic_params,
        value=TrainState.create(apply_fn=value.apply, params=value.init(value_key, observation), tx=optax.adam(config.value_learning_rate)),
        rng=rng,
    )


def huber_loss(diff: jax.Array, sigma: float) -> jax.Array:
    """RIQL.py huber_loss: 0.5 d^2 / b below b = 1 / sigma^2, |d| - 0.5 b above."""
    threshold = 1.0 / sigma**2
    size = jnp.abs(diff)
    return jnp.where(size < threshold, 0.5 * diff**2 / threshold, size - 0.5 * threshold)


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    # RIQL.py train(): next V before any update; the V target a quantile over the target ensemble.
    next_v = state.value.apply_fn(state.value.params, batch.next_observations)
    target_all = state.critic.apply_fn(state.critic_target, batch.observations, batch.actions)
    target_q = jnp.quantile(target_all, config.quantile, axis=0)

    def value_loss_fn(params):
        v = state.value.apply_fn(params, batch.observations)
        return expectile_loss(target_q - v, config.expectile).mean(), v

    (value_loss, v), grads = jax.value_and_grad(value_loss_fn, has_aux=True)(state.value.params)
    value = state.value.apply_gradients(grads=grads)
    advantage = target_q - v  # RIQL.py _update_v returns the advantage under the V before its step

    td_target = batch.rewards + config.discount * (1.0 - batch.dones) * next_v
    td_target = jnp.clip(td_target, config.target_min, config.target_max)

    def critic_loss_fn(params):
        q = state.critic.apply_fn(params, batch.observations, batch.actions)
        diff = td_target - q
        loss = huber_loss(diff, config.huber_sigma) if config.huber else diff**2
        return loss.mean(), q

    (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)
    critic_target = optax.incremental_update(critic.params, state.critic_target, config.tau)

    weights = jnp.minimum(jnp.exp(config.temperature * advantage), config.max_advantage_weight)

    def actor_loss_fn(params):
        actions = state.actor.apply_fn(params, batch.observations)
        return (weights * jnp.sum((actions - batch.actions) ** 2, axis=-1)).mean()

    actor_loss, grads = jax.value_and_grad(actor_loss_fn)(state.actor.params)
    actor = state.actor.apply_gradients(grads=grads)

    new_state = State(actor=actor, critic=critic, critic_target=critic_target, value=value, rng=state.rng)
    metrics = {
        "value_loss": value_loss,
        "actor_loss": actor_loss,
        "critic_loss": critic_loss,
        "q_mean": q.mean(),
        "v_mean": v.mean(),
        "target_q_std": target_all.std(axis=0).mean(),
        "advantage_weight_mean": weights.mean(),
    }
    return new_state, metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    del key, deterministic  # a deterministic actor (RIQL.py DeterministicPolicy)
    return state.actor.apply_fn(state.actor.params, observations)
