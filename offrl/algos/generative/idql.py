"""Implicit Diffusion Q-Learning (Hansen-Estruch et al., 2023, "IDQL: Implicit Q-Learning as an
Actor-Critic Method with Diffusion Policies").

The critic is IQL's (expectile value, Q regressing r + gamma V(s')), trained without any actor.
The behaviour policy is a DDPM over actions conditioned on the state, trained by denoising alone.
Acting draws N actions from it and keeps the one the critic ranks highest (the reference's
eval_actions: argmax of the target critic over N = 64 samples). With N = 1 it is diffusion BC.
Defaults: philippe-eecs/IDQL jaxrl5/agents/ddpm_iql/ddpm_iql_learner.py (create) and its
locomotion launcher, except the denoiser (a plain MLP here; the reference uses 3 residual
LayerNorm blocks of width 256 with dropout 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.algos.model_free.iql import expectile_loss
from offrl.errors import ConfigError
from offrl.nets import CriticEnsemble, ValueNetwork
from offrl.nets import diffusion
from offrl.nets.denoiser import ConditionalDenoiser
from offrl.types import Batch, Spec

NAME = "idql"
DESCRIPTION = "IQL critic with a diffusion behaviour policy; acts by re-ranking N sampled actions by Q."
PAPER = "Hansen-Estruch et al. 2023, IDQL: Implicit Q-Learning as an Actor-Critic Method with Diffusion Policies"


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 3e-4
    critic_learning_rate: float = 3e-4
    value_learning_rate: float = 3e-4
    hidden_dims: tuple[int, ...] = (256, 256)  # critic_hidden_dims; the denoiser uses actor_hidden_dims
    actor_hidden_dims: tuple[int, ...] = (256, 256, 256)  # reference: 3 residual blocks of width 256
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 0.005
    actor_tau: float = 0.001  # the acting denoiser is an EMA of the trained one (ddpm_iql_learner actor_tau)
    expectile: float = 0.7  # critic_hyperparam for locomotion (0.9 AntMaze)
    diffusion_steps: int = 5  # T = 5 with the VP schedule (reference)
    beta_schedule: str = "vp"
    sampling_steps: int = 5  # ancestral DDPM over all T steps (reference ddpm_sampler)
    num_samples: int = 64  # N actions ranked by the critic (reference N = 64)
    time_features: int = 64  # reference time_dim = 64 (Fourier features; sinusoidal here)
    actor_decay_steps: int = 3_000_000  # cosine decay of the denoiser's rate (reference decay_steps 3e6)
    normalize_observations: bool = True  # as offrl's IQL (CORL iql.py)
    normalize_rewards: bool = True  # IQL's locomotion scaling, 1000 / (max return - min return)

    def __post_init__(self):
        diffusion.make_schedule(self.beta_schedule, self.diffusion_steps)  # refuses a bad schedule or T here
        diffusion.check_steps(self.sampling_steps, self.diffusion_steps)
        if self.num_samples <= 0:
            raise ConfigError(f"--num-samples is {self.num_samples}; expected a positive number of action samples.")


@struct.dataclass
class State:
    actor: TrainState  # the denoiser eps(s, a_t, t)
    actor_target: dict  # its EMA, which acts
    critic: TrainState
    critic_target: dict
    value: TrainState
    rng: jax.Array
    # Acting needs the sampler's settings; act(state, ...) has no config, so they ride along (static).
    action_dim: int = struct.field(pytree_node=False, default=1)
    sampler: tuple = struct.field(pytree_node=False, default=("vp", 5, 5, 64))  # schedule, T, K, N


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    actor_key, critic_key, value_key, rng = jax.random.split(key, 4)
    observation = jnp.zeros((1, spec.observation_dim))
    action = jnp.zeros((1, spec.action_dim))
    actor = ConditionalDenoiser(spec.action_dim, config.actor_hidden_dims, time_features=config.time_features,
                                layer_norm=True, activation="mish")
    critic = CriticEnsemble(config.hidden_dims, num_critics=2)
    value = ValueNetwork(config.hidden_dims)
    actor_params = actor.init(actor_key, observation, action, jnp.zeros((1,)))
    critic_params = critic.init(critic_key, observation, action)
    actor_schedule = optax.cosine_decay_schedule(config.actor_learning_rate, config.actor_decay_steps)
    return State(
        actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=optax.adam(actor_schedule)),
        actor_target=actor_params,
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(config.critic_learning_rate)),
        critic_target=critic_params,
        value=TrainState.create(apply_fn=value.apply, params=value.init(value_key, observation), tx=optax.adam(config.value_learning_rate)),
        rng=rng,
        action_dim=spec.action_dim,
        sampler=(config.beta_schedule, config.diffusion_steps, config.sampling_steps, config.num_samples),
    )


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, actor_key = jax.random.split(state.rng)
    schedule = diffusion.make_schedule(config.beta_schedule, config.diffusion_steps)

    actor_loss, grads = jax.value_and_grad(
        lambda params: diffusion.denoising_loss(state.actor.apply_fn, params, schedule, batch.observations, batch.actions, actor_key)
    )(state.actor.params)
    actor = state.actor.apply_gradients(grads=grads)
    actor_target = optax.incremental_update(actor.params, state.actor_target, config.actor_tau)

    # IQL's critic, exactly as offrl.algos.model_free.iql trains it.
    target_q = state.critic.apply_fn(state.critic_target, batch.observations, batch.actions).min(axis=0)

    def value_loss_fn(params):
        v = state.value.apply_fn(params, batch.observations)
        return expectile_loss(target_q - v, config.expectile).mean(), v

    (value_loss, v), grads = jax.value_and_grad(value_loss_fn, has_aux=True)(state.value.params)
    value = state.value.apply_gradients(grads=grads)
    td_target = batch.rewards + config.discount * (1.0 - batch.dones) * value.apply_fn(value.params, batch.next_observations)

    def critic_loss_fn(params):
        q = state.critic.apply_fn(params, batch.observations, batch.actions)
        return ((q - td_target) ** 2).mean(axis=1).sum(), q

    (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)
    critic_target = optax.incremental_update(critic.params, state.critic_target, config.tau)

    new_state = state.replace(actor=actor, actor_target=actor_target, critic=critic, critic_target=critic_target,
                              value=value, rng=rng)
    metrics = {"actor_loss": actor_loss, "value_loss": value_loss, "critic_loss": critic_loss, "q_mean": q.mean(), "v_mean": v.mean()}
    return new_state, metrics


def behaviour_samples(state: State, observations: jax.Array, key: jax.Array, num_samples: int) -> jax.Array:
    """(batch, N, action_dim) draws from the EMA denoiser."""
    kind, total, steps, _ = state.sampler
    repeated = jnp.repeat(observations[:, None, :], num_samples, axis=1)
    return diffusion.sample(state.actor.apply_fn, state.actor_target, diffusion.make_schedule(kind, total), repeated, key,
                            (*repeated.shape[:-1], state.action_dim), steps)


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """IDQL's rule: N behaviour samples, the one with the highest target-critic Q (min of two);
    the reference selects the same way in and out of evaluation."""
    num_samples = state.sampler[3]
    candidates = behaviour_samples(state, observations, key, num_samples)
    repeated = jnp.repeat(observations[:, None, :], num_samples, axis=1)
    q = state.critic.apply_fn(state.critic_target, repeated, candidates).min(axis=0)  # (batch, N)
    best = jnp.argmax(q, axis=-1)
    return jnp.take_along_axis(candidates, best[:, None, None], axis=1)[:, 0]
