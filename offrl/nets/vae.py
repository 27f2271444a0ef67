"""Conditional VAE of a behaviour policy p(a | s) (BCQ / SPOT).

The encoder maps (s, a) to a diagonal Gaussian over a latent z; the decoder maps (s, z) back to
an action in [-1, 1]. The negative ELBO, reconstruction error + beta * KL(q(z|s,a) || N(0, I)),
is both the training loss and SPOT's density estimate: -log p(a|s) <= -ELBO.
Layer sizes and clipping follow SPOT's reference code (thuml/SPOT): two hidden layers of 750,
encoder log-std clipped to [-4, 15].
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from offrl.nets.mlp import MLP


def kl_to_standard_normal(mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """KL(N(mean, exp(log_std)^2) || N(0, I)) averaged over the latent dimensions (SPOT's and OSRL's
    VAE losses average it so)."""
    return -0.5 * (1.0 + 2.0 * log_std - mean**2 - jnp.exp(2.0 * log_std)).mean(axis=-1)


class ConditionalVAE(nn.Module):
    action_dim: int
    latent_dim: int
    hidden_dims: Sequence[int] = (750, 750)
    log_std_min: float = -4.0
    log_std_max: float = 15.0

    def setup(self) -> None:
        self.encoder = MLP(self.hidden_dims)
        self.latent_mean = nn.Dense(self.latent_dim)
        self.latent_log_std = nn.Dense(self.latent_dim)
        self.decoder = MLP(self.hidden_dims, self.action_dim)

    def encode(self, observations: jax.Array, actions: jax.Array) -> tuple[jax.Array, jax.Array]:
        features = self.encoder(jnp.concatenate([observations, actions], axis=-1))
        log_std = jnp.clip(self.latent_log_std(features), self.log_std_min, self.log_std_max)
        return self.latent_mean(features), log_std

    def decode(self, observations: jax.Array, latents: jax.Array) -> jax.Array:
        return jnp.tanh(self.decoder(jnp.concatenate([observations, latents], axis=-1)))

    def __call__(self, observations: jax.Array, actions: jax.Array, key: jax.Array) -> jax.Array:
        """Per-sample reconstruction of `actions` (used by `init`)."""
        mean, log_std = self.encode(observations, actions)
        return self.decode(observations, mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape))

    def negative_elbo(
        self, observations: jax.Array, actions: jax.Array, key: jax.Array, beta: float, num_samples: int = 1
    ) -> jax.Array:
        """Per-sample -ELBO: mean squared reconstruction error (over `num_samples` latents and action
        dimensions) + beta * KL, the KL averaged over latent dimensions as in SPOT's code. Shape (batch,)."""
        mean, log_std = self.encode(observations, actions)
        noise = jax.random.normal(key, (num_samples, *mean.shape))
        latents = mean + jnp.exp(log_std) * noise  # (num_samples, batch, latent)
        tiled_observations = jnp.broadcast_to(observations, (num_samples, *observations.shape))
        reconstruction = self.decode(tiled_observations, latents)
        reconstruction_error = ((reconstruction - actions) ** 2).mean(axis=(0, 2))
        return reconstruction_error + beta * kl_to_standard_normal(mean, log_std)

    def posterior_kl(self, observations: jax.Array, actions: jax.Array) -> jax.Array:
        """Per-sample KL of the encoder's posterior q(z|s,a) from the prior: large for (s, a) unlike
        the training data (CPQ's out-of-distribution test, OSRL cpq.py). Shape (batch,)."""
        return kl_to_standard_normal(*self.encode(observations, actions))
