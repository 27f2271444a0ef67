from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from offrl.nets.mlp import MLP


class _QNetwork(nn.Module):
    hidden_dims: Sequence[int]
    layer_norm: bool = False
    layer_norm_position: str = "pre_activation"  # see MLP
    initialization: str = "orthogonal"  # see MLP
    output_init_scale: float = 1.0

    @nn.compact
    def __call__(self, observations: jax.Array, actions: jax.Array) -> jax.Array:
        inputs = jnp.concatenate([observations, actions], axis=-1)
        return MLP(
            self.hidden_dims, 1, layer_norm=self.layer_norm, layer_norm_position=self.layer_norm_position,
            initialization=self.initialization, output_init_scale=self.output_init_scale,
        )(inputs).squeeze(-1)

    @classmethod
    def member_of(cls, ensemble: "CriticEnsemble") -> "_QNetwork":
        """One member of `ensemble`, built with its settings."""
        return cls(ensemble.hidden_dims, ensemble.layer_norm, ensemble.layer_norm_position, ensemble.initialization,
                   ensemble.output_init_scale)


class CriticEnsemble(nn.Module):
    """`num_critics` independent Q-networks as one vmapped module: output (num_critics, batch)."""

    hidden_dims: Sequence[int] = (256, 256)
    num_critics: int = 2
    layer_norm: bool = False
    layer_norm_position: str = "pre_activation"  # see MLP
    initialization: str = "orthogonal"  # see MLP
    output_init_scale: float = 1.0

    @nn.compact
    def __call__(self, observations: jax.Array, actions: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            _QNetwork,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_critics,
        )
        return ensemble(self.hidden_dims, self.layer_norm, self.layer_norm_position, self.initialization,
                        self.output_init_scale)(observations, actions)


class ValueNetwork(nn.Module):
    hidden_dims: Sequence[int] = (256, 256)
    layer_norm: bool = False

    @nn.compact
    def __call__(self, observations: jax.Array) -> jax.Array:
        return MLP(self.hidden_dims, 1, layer_norm=self.layer_norm)(observations).squeeze(-1)
