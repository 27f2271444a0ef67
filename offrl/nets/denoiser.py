"""The network that flow and diffusion models share: an MLP over (condition, noisy sample, time).

Flow matching reads it as a velocity field v(s, x_t, t), diffusion as a noise predictor
eps(s, x_t, t). The condition is the state (policies) or nothing (SynthER's unconditional
model of whole transitions: pass a zero-width condition).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from offrl.nets.mlp import MLP


def sinusoidal_time_features(times: jax.Array, dim: int) -> jax.Array:
    """[sin(w_k t), cos(w_k t)] at geometrically spaced frequencies, t in [0, 1] scaled by 1000
    (the transformer position embedding that Diffusion-QL's SinusoidalPosEmb uses for its steps)."""
    half = dim // 2
    frequencies = jnp.exp(-jnp.log(10_000.0) * jnp.arange(half) / max(half - 1, 1))
    angles = 1000.0 * times[..., None] * frequencies
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class ConditionalDenoiser(nn.Module):
    """out = MLP([condition, x, time features]) with `output_dim` = dim(x).

    `time_features` 0 feeds t itself (FQL's ActorVectorField concatenates the raw time); a
    positive even number feeds that many sinusoidal features (Diffusion-QL / IDQL embed the step).
    """

    output_dim: int
    hidden_dims: Sequence[int] = (256, 256, 256)
    time_features: int = 0
    layer_norm: bool = False
    activation: str = "gelu"  # FQL's and SynthER's MLPs use GELU; Diffusion-QL's Mish is close to it

    @nn.compact
    def __call__(self, condition: jax.Array, samples: jax.Array, times: jax.Array) -> jax.Array:
        times = jnp.broadcast_to(jnp.asarray(times, samples.dtype), samples.shape[:-1])
        if self.time_features:
            time_inputs = sinusoidal_time_features(times, self.time_features)
        else:
            time_inputs = times[..., None]
        inputs = jnp.concatenate([condition, samples, time_inputs], axis=-1)
        activation = {"gelu": nn.gelu, "relu": nn.relu, "mish": lambda x: x * jnp.tanh(nn.softplus(x))}[self.activation]
        return MLP(self.hidden_dims, self.output_dim, activation=activation, layer_norm=self.layer_norm)(inputs)
