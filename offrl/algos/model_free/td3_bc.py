"""TD3+BC (Fujimoto & Gu, 2021, "A Minimalist Approach to Offline Reinforcement Learning").

TD3 with a behaviour-cloning term in the actor loss, weighted so the Q term has scale alpha:
    actor_loss = -lambda * Q(s, pi(s)).mean() + (pi(s) - a)^2,  lambda = alpha / mean|Q(s, pi(s))|
Defaults are the paper's D4RL gym settings (Table 4 / reference code sfujim/TD3_BC).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.nets import CriticEnsemble, DeterministicPolicy
from offrl.types import Batch, Spec

NAME = "td3bc"
DESCRIPTION = "TD3 with a normalised behaviour-cloning term in the actor loss."
PAPER = "Fujimoto & Gu 2021, A Minimalist Approach to Offline Reinforcement Learning"


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 3e-4
    critic_learning_rate: float = 3e-4
    hidden_dims: tuple[int, ...] = (256, 256)
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 0.005  # target network Polyak rate
    policy_noise: float = 0.2  # target policy smoothing noise (TD3)
    noise_clip: float = 0.5
    policy_freq: int = 2  # actor and targets update every 2 critic updates (TD3)
    alpha: float = 2.5  # paper's alpha for the Q term's normalised scale
    normalize_observations: bool = True  # the paper normalises states by dataset mean/std
    normalize_rewards: bool = False


@struct.dataclass
class State:
    actor: TrainState
    actor_target: dict
    critic: TrainState
    critic_target: dict
    rng: jax.Array
    step: jax.Array


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    actor_key, critic_key, rng = jax.random.split(key, 3)
    observation = jnp.zeros((1, spec.observation_dim))
    action = jnp.zeros((1, spec.action_dim))
    actor = DeterministicPolicy(spec.action_dim, config.hidden_dims)
    critic = CriticEnsemble(config.hidden_dims, num_critics=2)
    actor_params = actor.init(actor_key, observation)
    critic_params = critic.init(critic_key, observation, action)
    return State(
        actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=optax.adam(config.actor_learning_rate)),
        actor_target=actor_params,
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(config.critic_learning_rate)),
        critic_target=critic_params,
        rng=rng,
        step=jnp.zeros((), jnp.int32),
    )


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, noise_key = jax.random.split(state.rng)

    noise = jnp.clip(
        jax.random.normal(noise_key, batch.actions.shape) * config.policy_noise, -config.noise_clip, config.noise_clip
    )
    next_actions = jnp.clip(state.actor.apply_fn(state.actor_target, batch.next_observations) + noise, -1.0, 1.0)
    next_q = state.critic.apply_fn(state.critic_target, batch.next_observations, next_actions).min(axis=0)
    target_q = batch.rewards + config.discount * (1.0 - batch.dones) * next_q

    def critic_loss_fn(params):
        q = state.critic.apply_fn(params, batch.observations, batch.actions)
        return ((q - target_q) ** 2).mean(axis=1).sum(), q

    (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)

    def actor_step(_):
        def actor_loss_fn(params):
            actions = state.actor.apply_fn(params, batch.observations)
            q_pi = critic.apply_fn(critic.params, batch.observations, actions)[0]
            lmbda = jax.lax.stop_gradient(config.alpha / jnp.abs(q_pi).mean())
            bc_loss = ((actions - batch.actions) ** 2).mean()
            return -lmbda * q_pi.mean() + bc_loss, bc_loss

        (actor_loss, bc_loss), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor.params)
        actor = state.actor.apply_gradients(grads=actor_grads)
        actor_target = optax.incremental_update(actor.params, state.actor_target, config.tau)
        critic_target = optax.incremental_update(critic.params, state.critic_target, config.tau)
        return actor, actor_target, critic_target, actor_loss, bc_loss

    def skip(_):
        # NaN marks "no actor update this step"; the engine averages metrics with nanmean.
        nan = jnp.full((), jnp.nan)
        return state.actor, state.actor_target, state.critic_target, nan, nan

    actor, actor_target, critic_target, actor_loss, bc_loss = jax.lax.cond(
        state.step % config.policy_freq == 0, actor_step, skip, None
    )
    new_state = State(
        actor=actor, actor_target=actor_target, critic=critic, critic_target=critic_target,
        rng=rng, step=state.step + 1,
    )
    return new_state, {"critic_loss": critic_loss, "actor_loss": actor_loss, "bc_loss": bc_loss, "q_mean": q.mean()}


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return state.actor.apply_fn(state.actor.params, observations)
