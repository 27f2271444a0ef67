"""Policies over actions scaled to [-1, 1]."""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from offrl.nets.mlp import MLP


class DeterministicPolicy(nn.Module):
    """tanh(MLP(s)); the MLP options are MLP's. With `dropout_rate`, `training=True` needs a 'dropout' rng."""

    action_dim: int
    hidden_dims: Sequence[int] = (256, 256)
    layer_norm: bool = False
    layer_norm_position: str = "pre_activation"
    initialization: str = "orthogonal"
    output_init_scale: float = 1.0
    dropout_rate: float | None = None

    @nn.compact
    def __call__(self, observations: jax.Array, training: bool = False) -> jax.Array:
        mlp = MLP(
            self.hidden_dims, self.action_dim, layer_norm=self.layer_norm, layer_norm_position=self.layer_norm_position,
            initialization=self.initialization, output_init_scale=self.output_init_scale, dropout_rate=self.dropout_rate,
        )
        return jnp.tanh(mlp(observations, training))


class PerturbationActor(nn.Module):
    """BCQ's perturbation model: a + max_perturbation * tanh(MLP(s, a)), clipped to [-1, 1].

    It nudges a candidate action `a` (a behaviour-model sample) by at most `max_perturbation`
    per dimension, so the policy stays near the data's actions (Fujimoto et al. 2019, sfujim/BCQ)."""

    action_dim: int
    hidden_dims: Sequence[int] = (256, 256)
    max_perturbation: float = 0.05
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, observations: jax.Array, actions: jax.Array) -> jax.Array:
        inputs = jnp.concatenate([observations, actions], axis=-1)
        perturbation = jnp.tanh(MLP(self.hidden_dims, self.action_dim, activation=self.activation)(inputs))
        return jnp.clip(actions + self.max_perturbation * perturbation, -1.0, 1.0)


class GaussianPolicy(nn.Module):
    """Gaussian with tanh-bounded mean and a state-independent log-std (IQL's policy).

    Returns (mean, log_std); `gaussian_log_prob` scores actions under it.
    """

    action_dim: int
    hidden_dims: Sequence[int] = (256, 256)
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    dropout_rate: float | None = None

    @nn.compact
    def __call__(self, observations: jax.Array, training: bool = False) -> tuple[jax.Array, jax.Array]:
        features = MLP(self.hidden_dims, dropout_rate=self.dropout_rate)(observations, training)
        mean = jnp.tanh(nn.Dense(self.action_dim)(features))
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        return mean, jnp.broadcast_to(log_std, mean.shape)


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, actions: jax.Array) -> jax.Array:
    """Log density of diagonal Gaussian, summed over the action dimension."""
    z = (actions - mean) / jnp.exp(log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


class TanhGaussianPolicy(nn.Module):
    """SAC's policy: state-dependent Gaussian squashed by tanh.

    Call `sample(observations, key)` for (action, log_prob) with the tanh change of variables,
    or `__call__` for the deterministic action tanh(mean).
    """

    action_dim: int
    hidden_dims: Sequence[int] = (256, 256)
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    def setup(self) -> None:
        self.trunk = MLP(self.hidden_dims)
        self.mean_head = nn.Dense(self.action_dim)
        self.log_std_head = nn.Dense(self.action_dim)

    def distribution_params(self, observations: jax.Array) -> tuple[jax.Array, jax.Array]:
        features = self.trunk(observations)
        log_std = jnp.clip(self.log_std_head(features), self.log_std_min, self.log_std_max)
        return self.mean_head(features), log_std

    def __call__(self, observations: jax.Array) -> jax.Array:
        mean, _ = self.distribution_params(observations)
        return jnp.tanh(mean)

    def sample(self, observations: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, log_std = self.distribution_params(observations)
        pre_tanh = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        action = jnp.tanh(pre_tanh)
        # log|d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), numerically stable.
        log_det = jnp.sum(2.0 * (jnp.log(2.0) - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh)), axis=-1)
        return action, gaussian_log_prob(mean, log_std, pre_tanh) - log_det
