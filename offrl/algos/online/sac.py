"""Soft Actor-Critic (Haarnoja et al., 2018, "Soft Actor-Critic Algorithms and Applications").

Maximum-entropy off-policy actor-critic with a tanh-squashed Gaussian policy, twin Q-networks
(one vmapped ensemble, the minimum is the target) and an automatically tuned temperature:
    critic:      Q(s, a) -> r + gamma * (1 - done) * (min_i Q'_i(s', a') - alpha * log pi(a'|s'))
    actor:       E[alpha * log pi(a|s) - min_i Q_i(s, a)],  a ~ pi(.|s) (reparameterised)
    temperature: E[-log_alpha * (log pi(a|s) + target_entropy)]
Used online: it is the behaviour agent offrl trains to make D4RL-style datasets.
Defaults are the paper's Table 1 (the "applications" paper, arXiv:1812.05905).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.nets import CriticEnsemble, TanhGaussianPolicy
from offrl.types import Batch, Spec

NAME = "sac"
DESCRIPTION = "Soft Actor-Critic: maximum-entropy actor-critic with automatic temperature tuning."
PAPER = "Haarnoja et al. 2018, Soft Actor-Critic Algorithms and Applications"


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 3e-4  # Table 1: Adam, lr 3e-4 for every network
    critic_learning_rate: float = 3e-4
    temperature_learning_rate: float = 3e-4
    hidden_dims: tuple[int, ...] = (256, 256)  # Table 1: 2 hidden layers of 256 units
    num_critics: int = 2  # clipped double-Q (min over two critics)
    batch_size: int = 256  # Table 1
    discount: float = 0.99  # Table 1
    tau: float = 0.005  # Table 1: target smoothing coefficient
    init_temperature: float = 1.0  # alpha at start (the authors' softlearning code: log_alpha = 0)
    target_entropy: float | None = None  # None: -action_dim (Table 1 heuristic)
    # Read by the engines. Online there is no dataset to fit statistics on, so both stay off.
    normalize_observations: bool = False
    normalize_rewards: bool = False


class Temperature(nn.Module):
    """log(alpha) as a single learnable scalar; alpha = exp(log_alpha) stays positive."""

    init_temperature: float = 1.0

    @nn.compact
    def __call__(self) -> jax.Array:
        # Strongly typed float32: a weak-typed scalar in the optimiser state made the scanned
        # update about 8x slower on CPU (measured here).
        return self.param("log_alpha", lambda _: jnp.full((), jnp.log(self.init_temperature), dtype=jnp.float32))


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    critic_target: dict
    temperature: TrainState
    rng: jax.Array
    step: jax.Array


def target_entropy(spec_or_dim: Spec | int, config: Config) -> float:
    action_dim = spec_or_dim if isinstance(spec_or_dim, int) else spec_or_dim.action_dim
    return -float(action_dim) if config.target_entropy is None else float(config.target_entropy)


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    actor_key, critic_key, temperature_key, rng = jax.random.split(key, 4)
    observation = jnp.zeros((1, spec.observation_dim))
    action = jnp.zeros((1, spec.action_dim))
    actor = TanhGaussianPolicy(spec.action_dim, config.hidden_dims)
    critic = CriticEnsemble(config.hidden_dims, num_critics=config.num_critics)
    temperature = Temperature(config.init_temperature)
    actor_params = actor.init(actor_key, observation)
    critic_params = critic.init(critic_key, observation, action)
    return State(
        actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=optax.adam(config.actor_learning_rate)),
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(config.critic_learning_rate)),
        critic_target=critic_params,
        temperature=TrainState.create(
            apply_fn=temperature.apply,
            params=temperature.init(temperature_key),
            tx=optax.adam(config.temperature_learning_rate),
        ),
        rng=rng,
        step=jnp.zeros((), jnp.int32),
    )


def sample_actions(actor: TrainState, params: dict, observations: jax.Array, key: jax.Array):
    """(actions in [-1, 1], their log-probabilities) from the squashed Gaussian with `params`."""
    return actor.apply_fn(params, observations, key, method=TanhGaussianPolicy.sample)


def temperature_value(state: State) -> jax.Array:
    return jnp.exp(state.temperature.apply_fn(state.temperature.params))


# The three SAC steps, shared with SAC-Lag (offrl/algos/online/sac_lag.py), which adds a cost critic
# and a penalty on the actor.
def critic_step(state: State, batch: Batch, config: Config, alpha: jax.Array, next_actions: jax.Array,
                next_log_probs: jax.Array) -> tuple[TrainState, dict, jax.Array, jax.Array]:
    """One step of the twin soft Q regression; returns (critic, critic_target, loss, q)."""
    next_q = state.critic.apply_fn(state.critic_target, batch.next_observations, next_actions).min(axis=0)
    soft_next_q = next_q - alpha * next_log_probs
    target_q = batch.rewards + config.discount * (1.0 - batch.dones) * soft_next_q

    def critic_loss_fn(params):
        q = state.critic.apply_fn(params, batch.observations, batch.actions)
        return 0.5 * ((q - target_q) ** 2).mean(axis=1).sum(), q

    (critic_loss, q), critic_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=critic_grads)
    critic_target = optax.incremental_update(critic.params, state.critic_target, config.tau)
    return critic, critic_target, critic_loss, q


def actor_step(actor: TrainState, critic: TrainState, observations: jax.Array, alpha: jax.Array, key: jax.Array,
               penalty: Callable[[jax.Array], jax.Array] | None = None):
    """One step on E[alpha log pi(a|s) - min_i Q_i(s, a) + penalty(a)]; returns (actor, loss, log_probs, actions).

    `penalty(actions)` is a per-sample term added to the loss (SAC-Lag's lambda * Q_c(s, a)).
    """

    def actor_loss_fn(params):
        actions, log_probs = sample_actions(actor, params, observations, key)
        q_pi = critic.apply_fn(critic.params, observations, actions).min(axis=0)
        loss = alpha * log_probs - q_pi
        if penalty is not None:
            loss = loss + penalty(actions)
        return loss.mean(), (log_probs, actions)

    (actor_loss, (log_probs, actions)), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(actor.params)
    return actor.apply_gradients(grads=actor_grads), actor_loss, log_probs, actions


def temperature_step(temperature: TrainState, log_probs: jax.Array, goal: float):
    """One step of E[-log_alpha * (log pi + target_entropy)]; returns (temperature, loss, entropy)."""
    entropy = -jax.lax.stop_gradient(log_probs).mean()

    def temperature_loss_fn(params):
        log_alpha = temperature.apply_fn(params)
        return log_alpha * (entropy - goal)

    temperature_loss, temperature_grads = jax.value_and_grad(temperature_loss_fn)(temperature.params)
    return temperature.apply_gradients(grads=temperature_grads), temperature_loss, entropy


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, next_key, actor_key = jax.random.split(state.rng, 3)
    alpha = temperature_value(state)
    next_actions, next_log_probs = sample_actions(state.actor, state.actor.params, batch.next_observations, next_key)
    critic, critic_target, critic_loss, q = critic_step(state, batch, config, alpha, next_actions, next_log_probs)
    actor, actor_loss, log_probs, _ = actor_step(state.actor, critic, batch.observations, alpha, actor_key)
    temperature, temperature_loss, entropy = temperature_step(
        state.temperature, log_probs, target_entropy(batch.actions.shape[-1], config))
    new_state = State(
        actor=actor, critic=critic, critic_target=critic_target, temperature=temperature,
        rng=rng, step=state.step + 1,
    )
    metrics = {
        "critic_loss": critic_loss,
        "actor_loss": actor_loss,
        "temperature_loss": temperature_loss,
        "alpha": alpha,
        "entropy": entropy,
        "q_mean": q.mean(),
    }
    return new_state, metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """tanh(mean) when `deterministic`, else a sample of the squashed Gaussian; in [-1, 1]."""
    if deterministic:
        return state.actor.apply_fn(state.actor.params, observations)
    actions, _ = sample_actions(state.actor, state.actor.params, observations, key)
    return actions
