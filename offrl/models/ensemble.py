"""A probabilistic dynamics ensemble: each member maps (observation, action) to a diagonal
Gaussian over (next-observation delta, reward), and optionally a terminal logit (the learned
terminal head, for envs without a hand-written termination function); members are vmapped as
one network.

Follows MBPO/MOPO as OfflineRL-Kit implements it (offlinerlkit/modules/dynamics_module.py):
swish hidden layers, inputs standardised by the training data's mean/std, and log-variances
softly bounded by learned `max_logvar`/`min_logvar` (init 0.5 and -10, as in Unifloral
algorithms/dynamics.py and OfflineRL-Kit), which the loss keeps close with a small penalty.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct


class _Member(nn.Module):
    hidden_dims: Sequence[int]
    output_dim: int
    extra_outputs: int = 0  # 1: the terminal logit, after the Gaussian's mean and logvar

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        x = inputs
        for index, width in enumerate(self.hidden_dims):
            x = nn.swish(nn.Dense(width, name=f"layer_{index}")(x))  # swish: MBPO / OfflineRL-Kit
        return nn.Dense(2 * self.output_dim + self.extra_outputs, name=f"layer_{len(self.hidden_dims)}")(x)


class DynamicsEnsemble(nn.Module):
    """`num_models` members; output (mean, logvar, terminal_logit): mean and logvar each
    (num_models, batch, observation_dim + 1), the first observation_dim entries the
    next-observation delta, the last the reward; terminal_logit (num_models, batch) with
    `terminal_head`, else None. The head is one more output of each member's last layer."""

    observation_dim: int
    hidden_dims: Sequence[int] = (200, 200, 200, 200)
    num_models: int = 7
    terminal_head: bool = False

    @nn.compact
    def __call__(self, inputs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        output_dim = self.observation_dim + 1
        head = int(self.terminal_head)
        members = nn.vmap(
            _Member, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=0, out_axes=0,
            axis_size=self.num_models,
        )(self.hidden_dims, output_dim, head, name="members")
        if inputs.ndim == 2:  # one batch for every member
            inputs = jnp.broadcast_to(inputs, (self.num_models, *inputs.shape))
        outputs = members(inputs)
        mean, logvar = jnp.split(outputs[..., : 2 * output_dim], 2, axis=-1)
        terminal_logit = outputs[..., -1] if self.terminal_head else None
        max_logvar = self.param("max_logvar", lambda key: jnp.full((output_dim,), 0.5, jnp.float32))
        min_logvar = self.param("min_logvar", lambda key: jnp.full((output_dim,), -10.0, jnp.float32))
        logvar = max_logvar - nn.softplus(max_logvar - logvar)
        logvar = min_logvar + nn.softplus(logvar - min_logvar)
        return mean, logvar, terminal_logit


@struct.dataclass
class DynamicsModel:
    """A trained ensemble as the device sees it: parameters, input standardisation, elites."""

    params: dict
    input_mean: jax.Array
    input_std: jax.Array
    elites: jax.Array  # indices of the best members on held-out data, best first
    observation_dim: int = struct.field(pytree_node=False)
    hidden_dims: tuple[int, ...] = struct.field(pytree_node=False)
    num_models: int = struct.field(pytree_node=False)
    terminal_head: bool = struct.field(pytree_node=False, default=False)

    @property
    def network(self) -> DynamicsEnsemble:
        return DynamicsEnsemble(self.observation_dim, self.hidden_dims, self.num_models, self.terminal_head)

    def predict_with_terminal(self, observations: jax.Array, actions: jax.Array):
        """`predict`'s mean and std, and every member's terminal logit (num_models, batch), None
        without a terminal head."""
        inputs = (jnp.concatenate([observations, actions], -1) - self.input_mean) / self.input_std
        mean, logvar, terminal_logit = self.network.apply(self.params, inputs)
        mean = mean.at[..., :-1].add(observations)
        return mean, jnp.exp(0.5 * logvar), terminal_logit

    def predict(self, observations: jax.Array, actions: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Every member's Gaussian over (next observation, reward), in raw units: mean and std,
        each (num_models, batch, observation_dim + 1); the delta is already added back."""
        mean, std, _ = self.predict_with_terminal(observations, actions)
        return mean, std

    def elite_terminal_probability(self, terminal_logit: jax.Array) -> jax.Array:
        """P(terminal) per row: the elites' mean predicted probability, what learned termination
        thresholds at 0.5 (offrl/train/model_rollouts.py says why the mean and not one member)."""
        return jax.nn.sigmoid(terminal_logit[self.elites]).mean(axis=0)


def sample_elite(model: DynamicsModel, observations: jax.Array, actions: jax.Array, key: jax.Array):
    """One next observation and reward per row from a uniformly drawn elite (MOPO/MBPO sampling),
    with the ensemble's mean and std for uncertainty penalties, and the elites' mean terminal
    probability per row (None without a terminal head)."""
    mean, std, terminal_logit = model.predict_with_terminal(observations, actions)
    terminal_probability = None if terminal_logit is None else model.elite_terminal_probability(terminal_logit)
    member_key, noise_key = jax.random.split(key)
    batch = observations.shape[0]
    members = model.elites[jax.random.randint(member_key, (batch,), 0, model.elites.shape[0])]
    rows = jnp.arange(batch)
    sample = mean[members, rows] + std[members, rows] * jax.random.normal(noise_key, mean.shape[1:])
    return sample[:, :-1], sample[:, -1], mean, std, terminal_probability


def sample_elite_next_observations(model: DynamicsModel, observations: jax.Array, actions: jax.Array, key: jax.Array,
                                   num_samples: int) -> jax.Array:
    """`num_samples` next observations from every elite's Gaussian, (num_samples, num_elites,
    batch, observation_dim), raw units: MOBILE's samples (OfflineRL-Kit EnsembleDynamics.sample_next_obss)."""
    mean, std = model.predict(observations, actions)
    mean, std = mean[model.elites, :, :-1], std[model.elites, :, :-1]
    return mean + std * jax.random.normal(key, (num_samples, *mean.shape))
