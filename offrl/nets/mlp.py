from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

LAYER_NORM_POSITIONS = ("pre_activation", "post_activation")
INITIALIZATIONS = ("orthogonal", "edac")


def orthonormal_columns(matrix: jax.Array) -> jax.Array:
    """Q of the QR decomposition of a tall `matrix` with R's diagonal positive, by Gram-Schmidt
    (each column orthogonalised twice against the ones before it: "twice is enough").

    No LAPACK call: jaxlib 0.10's CPU runtime deadlocked here when several batched QR custom calls
    ran concurrently (the orthogonal init of a vmapped ensemble of 8 or more 256-wide critics, SAC-N's
    and EDAC's defaults; also every algorithm's init vmapped over seeds). Matmuls batch safely."""
    rows, columns = matrix.shape

    def add_column(j, q):
        v = matrix[:, j]
        v = v - q @ (q.T @ v)  # columns >= j of q are still zero
        v = v - q @ (q.T @ v)
        return q.at[:, j].set(v / jnp.linalg.norm(v))

    return jax.lax.fori_loop(0, columns, add_column, jnp.zeros((rows, columns), matrix.dtype))


def orthogonal_init(scale: float = 1.0) -> Callable:
    """Flax's / JAX's orthogonal initialiser (same normal draw, same Q up to float rounding), computed
    without LAPACK (`orthonormal_columns`)."""
    def init(key, shape, dtype=jnp.float32):
        rows, columns = int(np.prod(shape[:-1])), shape[-1]
        tall = jax.random.normal(key, (max(rows, columns), min(rows, columns)), dtype)
        q = orthonormal_columns(tall)
        q = q.T if rows < columns else q
        return scale * q.reshape(shape)

    return init


def default_init(scale: float = jnp.sqrt(2.0)) -> Callable:
    return orthogonal_init(scale)


def uniform_init(bound: float) -> Callable:
    """U(-bound, bound), for kernels and biases alike."""
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)): variance 1/(3 fan_in).
torch_linear_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class MLP(nn.Module):
    """Hidden layers of `hidden_dims` with `activation`, then an optional linear output layer.

    `layer_norm` adds a LayerNorm to each hidden layer, at `layer_norm_position`:
    "pre_activation" is Dense -> LayerNorm -> activation (RLPD's critics), "post_activation" is
    Dense -> activation -> LayerNorm (ReBRAC's networks, tinkoff-ai/ReBRAC src/networks.py).
    `initialization` "orthogonal": orthogonal kernels (gain sqrt 2; `output_init_scale` for the
    output layer), zero biases. "edac": the EDAC authors' scheme that ReBRAC and CORL's SAC-N copy:
    PyTorch's default U(+-1/sqrt(fan_in)) kernels, biases 0.1, and an output layer whose kernel
    and bias are U(+-output_init_scale). `dropout_rate` needs a 'dropout' rng when `training`.
    """

    hidden_dims: Sequence[int]
    output_dim: int | None = None
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    layer_norm: bool = False
    layer_norm_position: str = "pre_activation"
    dropout_rate: float | None = None
    output_init_scale: float = 1.0
    initialization: str = "orthogonal"

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        if self.layer_norm_position not in LAYER_NORM_POSITIONS:
            raise ValueError(f"layer_norm_position is {self.layer_norm_position!r}; expected one of {LAYER_NORM_POSITIONS}.")
        if self.initialization not in INITIALIZATIONS:
            raise ValueError(f"initialization is {self.initialization!r}; expected one of {INITIALIZATIONS}.")
        if self.initialization == "edac":
            hidden = {"kernel_init": torch_linear_init, "bias_init": nn.initializers.constant(0.1)}
            output = {"kernel_init": uniform_init(self.output_init_scale), "bias_init": uniform_init(self.output_init_scale)}
        else:
            hidden = {"kernel_init": default_init()}
            output = {"kernel_init": default_init(self.output_init_scale)}
        post = self.layer_norm_position == "post_activation"
        for width in self.hidden_dims:
            x = nn.Dense(width, **hidden)(x)
            if self.layer_norm and not post:
                x = nn.LayerNorm()(x)
            x = self.activation(x)
            if self.layer_norm and post:
                x = nn.LayerNorm()(x)
            if self.dropout_rate:
                x = nn.Dropout(self.dropout_rate)(x, deterministic=not training)
        if self.output_dim is not None:
            x = nn.Dense(self.output_dim, **output)(x)
        return x
