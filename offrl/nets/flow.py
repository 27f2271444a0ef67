"""Conditional flow matching on the linear (rectified) path, with an Euler sampler.

x_0 ~ N(0, I), x_1 = data, x_t = (1 - t) x_0 + t x_1; the network regresses the path's velocity
x_1 - x_0 (Lipman et al. 2023; Liu et al. 2023). Sampling integrates dx/dt = v(s, x, t) from
t = 0 to 1 in K Euler steps of size 1/K, exactly as FQL's compute_flow_actions does
(seohongpark/fql agents/fql.py). Everything is pure and jit-able: the K steps are a fori_loop
inside whichever compiled program calls it.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from offrl.errors import ConfigError

VelocityFn = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]  # (params, condition, x_t, t) -> v


def check_steps(steps: int, flag: str = "--flow-steps") -> None:
    if not isinstance(steps, int) or steps <= 0:
        raise ConfigError(f"{flag} is {steps}; expected a positive number of sampling steps.")


def flow_matching_loss(velocity: VelocityFn, params: Any, condition: jax.Array, data: jax.Array, key: jax.Array) -> jax.Array:
    """Mean squared error between v(s, x_t, t) and x_1 - x_0, t ~ U[0, 1)."""
    noise_key, time_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, data.shape)
    times = jax.random.uniform(time_key, data.shape[:-1])
    path = (1.0 - times[..., None]) * noise + times[..., None] * data
    predicted = velocity(params, condition, path, times)
    return jnp.mean((predicted - (data - noise)) ** 2)


def euler_sample(velocity: VelocityFn, params: Any, condition: jax.Array, noise: jax.Array, steps: int,
                 clip: float | None = 1.0) -> jax.Array:
    """Integrate from `noise` (t = 0) to t = 1 in `steps` Euler steps; clip the result to
    [-clip, clip] (actions) or leave it (clip None)."""
    check_steps(steps)

    def step(i, x):
        times = jnp.full(x.shape[:-1], i / steps, x.dtype)
        return x + velocity(params, condition, x, times) / steps

    samples = jax.lax.fori_loop(0, steps, step, noise)
    return samples if clip is None else jnp.clip(samples, -clip, clip)
