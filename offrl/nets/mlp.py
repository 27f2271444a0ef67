from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def default_init(scale: float = jnp.sqrt(2.0)) -> Callable:
    return nn.initializers.orthogonal(scale)


class MLP(nn.Module):
    """Hidden layers of `hidden_dims` with `activation`, then an optional linear output layer.

    `layer_norm` puts LayerNorm after each hidden Dense (ReBRAC / RLPD critics); `dropout_rate`
    needs a 'dropout' rng when `training` is True.
    """

    hidden_dims: Sequence[int]
    output_dim: int | None = None
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    layer_norm: bool = False
    dropout_rate: float | None = None
    output_init_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        for width in self.hidden_dims:
            x = nn.Dense(width, kernel_init=default_init())(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = self.activation(x)
            if self.dropout_rate:
                x = nn.Dropout(self.dropout_rate)(x, deterministic=not training)
        if self.output_dim is not None:
            x = nn.Dense(self.output_dim, kernel_init=default_init(self.output_init_scale))(x)
        return x
