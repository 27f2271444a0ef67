"""SPOT (Wu, Wu, Liu, Huang & Long, 2022, "Supported Policy Optimization for Offline Reinforcement
Learning").

TD3 whose actor is kept inside the support of the behaviour policy by a density penalty: a
conditional VAE of the behaviour policy is fitted first, then frozen, and its negative ELBO
(an upper bound on -log beta(a|s)) scores the policy's actions:
    actor: -Q_1(s, pi(s)) / mean|Q_1| + lambda * (-ELBO(s, pi(s)))
Defaults are CORL's `spot.py` for D4RL gym (reference code thuml/SPOT): VAE 750x750, latent
2 * action_dim, beta 0.5, lr 1e-3, 100k VAE updates; TD3 with actor lr 1e-4, critic lr 3e-4,
lambda 1.0; rewards scaled by 1000 / return range; states not normalised.

The contract has one `update`, so pretraining is a phase of it: a step counter in the state
selects, with `lax.cond`, a VAE-only update for the first `vae_steps` calls and the TD3 update
(VAE frozen) after. Train for vae_steps + the TD3 budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.nets import ConditionalVAE, CriticEnsemble, DeterministicPolicy
from offrl.types import Batch, Spec

NAME = "spot"
DESCRIPTION = "SPOT: TD3 with a VAE-density support constraint on the policy (VAE pretrained in-state)."
PAPER = "Wu, Wu, Liu, Huang & Long 2022, Supported Policy Optimization for Offline Reinforcement Learning"


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 1e-4  # CORL spot
    critic_learning_rate: float = 3e-4  # CORL spot
    vae_learning_rate: float = 1e-3  # CORL spot
    hidden_dims: tuple[int, ...] = (256, 256)  # TD3 networks
    vae_hidden_dims: tuple[int, ...] = (750, 750)  # CORL spot: vae_hidden_dim 750
    vae_latent_dim: int | None = None  # None: 2 * action_dim (CORL spot)
    vae_steps: int = 100_000  # CORL spot: vae_iterations
    beta: float = 0.5  # KL weight of the ELBO (CORL spot)
    num_elbo_samples: int = 1  # latent samples per density estimate (CORL spot: num_samples)
    support_weight: float = 1.0  # lambda (CORL spot: lambd)
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 0.005
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_freq: int = 2
    normalize_observations: bool = False  # CORL spot: normalize False
    normalize_rewards: bool = True  # CORL spot: normalize_reward True (1000 / return range)


@struct.dataclass
class State:
    vae: TrainState
    actor: TrainState
    actor_target: dict
    critic: TrainState
    critic_target: dict
    rng: jax.Array
    step: jax.Array  # counts every update, VAE phase included


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    vae_key, actor_key, critic_key, rng = jax.random.split(key, 4)
    observation = jnp.zeros((1, spec.observation_dim))
    action = jnp.zeros((1, spec.action_dim))
    vae = ConditionalVAE(spec.action_dim, config.vae_latent_dim or 2 * spec.action_dim, config.vae_hidden_dims)
    actor = DeterministicPolicy(spec.action_dim, config.hidden_dims)
    critic = CriticEnsemble(config.hidden_dims, num_critics=2)
    actor_params = actor.init(actor_key, observation)
    critic_params = critic.init(critic_key, observation, action)
    return State(
        vae=TrainState.create(apply_fn=vae.apply, params=vae.init(vae_key, observation, action, vae_key), tx=optax.adam(config.vae_learning_rate)),
        actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=optax.adam(config.actor_learning_rate)),
        actor_target=actor_params,
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(config.critic_learning_rate)),
        critic_target=critic_params,
        rng=rng,
        step=jnp.zeros((), jnp.int32),
    )


def negative_elbo(vae: TrainState, params: dict, observations, actions, key, config: Config) -> jax.Array:
    return vae.apply_fn(
        params, observations, actions, key, config.beta, config.num_elbo_samples, method=ConditionalVAE.negative_elbo
    )


def _vae_phase(state: State, batch: Batch, key: jax.Array, config: Config):
    def loss_fn(params):
        return negative_elbo(state.vae, params, batch.observations, batch.actions, key, config).mean()

    vae_loss, grads = jax.value_and_grad(loss_fn)(state.vae.params)
    nan = jnp.full((), jnp.nan)
    metrics = {"vae_loss": vae_loss, "critic_loss": nan, "actor_loss": nan, "support_penalty": nan, "q_mean": nan}
    return state.replace(vae=state.vae.apply_gradients(grads=grads)), metrics


def _td3_phase(state: State, batch: Batch, key: jax.Array, config: Config):
    noise_key, elbo_key = jax.random.split(key)
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
            support_penalty = negative_elbo(state.vae, state.vae.params, batch.observations, actions, elbo_key, config)
            q_term = -q_pi.mean() / jax.lax.stop_gradient(jnp.abs(q_pi).mean())
            return q_term + config.support_weight * support_penalty.mean(), support_penalty.mean()

        (actor_loss, support_penalty), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor.params)
        actor = state.actor.apply_gradients(grads=actor_grads)
        actor_target = optax.incremental_update(actor.params, state.actor_target, config.tau)
        critic_target = optax.incremental_update(critic.params, state.critic_target, config.tau)
        return actor, actor_target, critic_target, actor_loss, support_penalty

    def skip(_):
        nan = jnp.full((), jnp.nan)
        return state.actor, state.actor_target, state.critic_target, nan, nan

    td3_step = state.step - config.vae_steps
    actor, actor_target, critic_target, actor_loss, support_penalty = jax.lax.cond(
        td3_step % config.policy_freq == 0, actor_step, skip, None
    )
    new_state = state.replace(actor=actor, actor_target=actor_target, critic=critic, critic_target=critic_target)
    metrics = {
        "vae_loss": jnp.full((), jnp.nan),
        "critic_loss": critic_loss,
        "actor_loss": actor_loss,
        "support_penalty": support_penalty,
        "q_mean": q.mean(),
    }
    return new_state, metrics


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, key = jax.random.split(state.rng)
    # Pretraining phase chosen by the step counter (see the module docstring).
    new_state, metrics = jax.lax.cond(
        state.step < config.vae_steps,
        lambda s: _vae_phase(s, batch, key, config),
        lambda s: _td3_phase(s, batch, key, config),
        state,
    )
    return new_state.replace(rng=rng, step=state.step + 1), metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return state.actor.apply_fn(state.actor.params, observations)


# Online fine-tuning settings (offrl.train.finetune), from CORL's algorithms/finetune/spot.py and
# its configs/finetune/spot/*.yaml: lambda cools linearly to 0.2 of its value (lambd_cool true,
# lambd_end 0.2: lambda * max(0.2, 1 - t / T)), collection adds N(0, 0.1) noise (expl_noise), and
# the optimisers restart at the online phase ("Resetting optimizers"). Its online_discount 0.995
# is an AntMaze setting (0.99 in the Adroit configs) and is not applied.
FINETUNE = {
    "decay": {"support_weight": 0.2},
    "exploration_noise": 0.1,
    "reset_optimizers": True,
}
