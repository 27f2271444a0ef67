"""What BCQ-Lag and CPQ (OSRL's BCQL and CPQ) share: a behaviour VAE fitted to the data's (s, a),
reward and cost critics held as one vmapped ensemble, and the per-step cost-Q limit.

The two critics are one ensemble (reward networks first, then cost networks) with one Adam over it:
Adam is per parameter and each critic's loss reaches only its own networks, so this is OSRL's two
critic optimisers at one learning rate, as both OSRL configs have it (critic_lr). Two ensembles
initialised side by side also deadlocked jaxlib 0.10's batched QR (the orthogonal initialiser) on
a 2-core machine at width >= 48.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from offrl.nets import ConditionalVAE, CriticEnsemble
from offrl.types import Spec


def cost_q_limit(config: Any) -> float:
    """The per-step Q_c limit of a budget kappa = `config.target_cost` per episode of
    T = `config.max_episode_steps` steps: the discounted cost of paying kappa / T on every step,
    kappa (1 - gamma^T) / (1 - gamma) / T (OSRL bcql.py qc_thres, cpq.py q_thres)."""
    gamma, steps = config.discount, config.max_episode_steps
    horizon = float(steps) if gamma == 1.0 else (1.0 - gamma**steps) / (1.0 - gamma)
    return config.target_cost * horizon / steps


def vae_latent_dim(spec: Spec, config: Any) -> int:
    """`config.vae_latent_dim`, or 2 * action_dim when None (OSRL bcql.py / cpq.py latent_dim)."""
    return config.vae_latent_dim or 2 * spec.action_dim


def behaviour_vae(key: jax.Array, spec: Spec, config: Any) -> TrainState:
    """The conditional VAE of `config.vae_hidden_dims` and its Adam at `config.vae_learning_rate`."""
    vae = ConditionalVAE(spec.action_dim, vae_latent_dim(spec, config), config.vae_hidden_dims)
    observation, action = jnp.zeros((1, spec.observation_dim)), jnp.zeros((1, spec.action_dim))
    params = vae.init(key, observation, action, key)
    return TrainState.create(apply_fn=vae.apply, params=params, tx=optax.adam(config.vae_learning_rate))


def vae_step(vae: TrainState, observations: jax.Array, actions: jax.Array, key: jax.Array, beta: float):
    """One Adam step on the mean negative ELBO (reconstruction MSE + beta KL, OSRL's vae loss):
    (new VAE, loss)."""

    def loss_fn(params):
        return vae.apply_fn(params, observations, actions, key, beta, method=ConditionalVAE.negative_elbo).mean()

    loss, grads = jax.value_and_grad(loss_fn)(vae.params)
    return vae.apply_gradients(grads=grads), loss


def reward_and_cost_critics(key: jax.Array, spec: Spec, hidden_dims, num_reward: int, num_cost: int,
                            learning_rate: float) -> tuple[TrainState, dict]:
    """`num_reward` reward networks then `num_cost` cost networks as one ensemble with one Adam:
    (train state, target parameters equal to it)."""
    critic = CriticEnsemble(hidden_dims, num_reward + num_cost)
    params = critic.init(key, jnp.zeros((1, spec.observation_dim)), jnp.zeros((1, spec.action_dim)))
    return TrainState.create(apply_fn=critic.apply, params=params, tx=optax.adam(learning_rate)), params


def bellman_errors(values: jax.Array, reward_target: jax.Array, cost_target: jax.Array, num_reward: int):
    """Each network's mean squared error to its critic's target, summed over the networks of each
    critic (OSRL EnsembleQCritic.loss): (reward loss, cost loss). `values`: (networks, batch)."""
    reward_loss = ((values[:num_reward] - reward_target) ** 2).mean(axis=1).sum()
    cost_loss = ((values[num_reward:] - cost_target) ** 2).mean(axis=1).sum()
    return reward_loss, cost_loss
