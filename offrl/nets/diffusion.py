"""Denoising diffusion (DDPM, Ho et al. 2020) over a state-conditioned sample, with two samplers.

A variance schedule beta_1..beta_T; the network eps(s, x_t, t) predicts the noise in
x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps and trains on ||eps - eps_hat||^2.
Samplers, both pure and jit-able (one fori_loop inside the caller's compiled program):
- K = T: ancestral DDPM, each step the posterior mean from the clipped x_0 estimate plus
  posterior noise (Diffusion-QL's p_sample with clip_denoised, Wang et al. 2023);
- K < T: the deterministic first-order DPM-Solver (identical to DDIM with eta 0, Lu et al. 2022,
  Song et al. 2021) on K of the T steps, EDP's fast sampler family (sail-sg/edp).
`clean_estimate` is EDP's action approximation: x_0 from one noisy sample and one network call.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from offrl.errors import ConfigError

NoiseFn = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]  # (params, condition, x_t, t in [0,1)) -> eps
SCHEDULES = ("vp", "linear", "cosine")
LINEAR_MIN_STEPS = 20  # the scaled linear schedule's last beta, 20 / T, must stay below 1


@struct.dataclass
class Schedule:
    betas: jax.Array  # (T,)
    alpha_bars: jax.Array  # cumulative products of 1 - beta

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0]


def make_schedule(kind: str, num_steps: int) -> Schedule:
    """The betas of one of three named schedules, each the formula of the code cited:
    - 'vp': the variance-preserving SDE discretised, alpha_t = exp(-b_min / T - (b_max - b_min)
      (2t - 1) / (2 T^2)) with b_min 0.1, b_max 10 (Diffusion-QL agents/helpers.py
      vp_beta_schedule; IDQL jaxrl5/networks/diffusion.py vp_beta_schedule): abar_T = exp(-5.05)
      whatever T, the choice for few steps;
    - 'linear': Ho et al.'s 1e-4..2e-2 scaled to T steps, betas linspace(0.1 / T, 20 / T, T)
      (sail-sg/edp diffusion/diffusion.py get_named_beta_schedule 'linear', from
      improved-diffusion). Its last beta is 20 / T, so T must exceed 20; the reference allows no
      fewer steps either (T < 20 gives betas above 1, which its GaussianDiffusion asserts against;
      T = 20 gives abar_T = 0, no x_0 estimate there). Refused below, not clipped: clipping the end
      to 0.999 made a different schedule, not the reference's;
    - 'cosine': abar(t) = cos^2(((t / T + s) / (1 + s)) pi / 2), s = 0.008, betas clipped to 0.999
      (Nichol & Dhariwal 2021; Diffusion-QL agents/helpers.py cosine_beta_schedule)."""
    if num_steps <= 0:
        raise ConfigError(f"--diffusion-steps is {num_steps}; expected a positive number of steps.")
    t = np.arange(1, num_steps + 1, dtype=np.float64)
    if kind == "vp":
        b_min, b_max = 0.1, 10.0
        alphas = np.exp(-b_min / num_steps - 0.5 * (b_max - b_min) * (2 * t - 1) / num_steps**2)
        betas = 1.0 - alphas
    elif kind == "linear":
        if num_steps <= LINEAR_MIN_STEPS:
            raise ConfigError(f"--diffusion-steps is {num_steps} with --beta-schedule linear, whose last beta is 20 / T; "
                              f"expected more than {LINEAR_MIN_STEPS} steps (use --beta-schedule vp for fewer).")
        scale = 1000.0 / num_steps
        betas = np.linspace(scale * 1e-4, scale * 2e-2, num_steps)
    elif kind == "cosine":
        s = 0.008
        f = np.cos((np.arange(num_steps + 1) / num_steps + s) / (1 + s) * np.pi / 2) ** 2
        betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    else:
        raise ConfigError(f"--beta-schedule is {kind!r}; expected one of {', '.join(SCHEDULES)}.")
    return Schedule(betas=jnp.asarray(betas, jnp.float32), alpha_bars=jnp.asarray(np.cumprod(1.0 - betas), jnp.float32))


def check_steps(steps: int, schedule_steps: int, flag: str = "--sampling-steps") -> None:
    if not isinstance(steps, int) or steps <= 0:
        raise ConfigError(f"{flag} is {steps}; expected a positive number of sampling steps.")
    if steps > schedule_steps:
        raise ConfigError(f"{flag} is {steps}; expected at most the {schedule_steps} diffusion steps.")


def network_time(index: jax.Array, schedule: Schedule) -> jax.Array:
    """What the network sees of step index t in 0..T-1: t / T in [0, 1)."""
    return index.astype(jnp.float32) / schedule.num_steps


def noised(schedule: Schedule, data: jax.Array, index: jax.Array, noise: jax.Array) -> jax.Array:
    abar = schedule.alpha_bars[index][..., None]
    return jnp.sqrt(abar) * data + jnp.sqrt(1.0 - abar) * noise


def clean_estimate(schedule: Schedule, samples: jax.Array, index: jax.Array, predicted_noise: jax.Array) -> jax.Array:
    """x_0 = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)."""
    abar = schedule.alpha_bars[index][..., None]
    return (samples - jnp.sqrt(1.0 - abar) * predicted_noise) / jnp.sqrt(abar)


def denoising_terms(noise_fn: NoiseFn, params: Any, schedule: Schedule, condition: jax.Array, data: jax.Array,
                    key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(loss, noisy samples, clean estimate) at uniformly drawn steps: the DDPM loss, and what EDP
    needs for its approximate action."""
    index_key, noise_key = jax.random.split(key)
    index = jax.random.randint(index_key, data.shape[:-1], 0, schedule.num_steps)
    noise = jax.random.normal(noise_key, data.shape)
    samples = noised(schedule, data, index, noise)
    predicted = noise_fn(params, condition, samples, network_time(index, schedule))
    loss = jnp.mean((predicted - noise) ** 2)
    return loss, samples, clean_estimate(schedule, samples, index, predicted)


def denoising_loss(noise_fn: NoiseFn, params: Any, schedule: Schedule, condition: jax.Array, data: jax.Array,
                   key: jax.Array) -> jax.Array:
    return denoising_terms(noise_fn, params, schedule, condition, data, key)[0]


def sample(noise_fn: NoiseFn, params: Any, schedule: Schedule, condition: jax.Array, key: jax.Array,
           shape: tuple[int, ...], steps: int, clip: float | None = 1.0) -> jax.Array:
    """Draw samples of `shape` (batch..., dim) in `steps` network calls: ancestral DDPM when
    steps = T, first-order DPM-Solver (DDIM) on an evenly strided subset of steps otherwise.
    `clip` bounds the x_0 estimate at every step (actions live in [-1, 1]); None leaves it."""
    check_steps(steps, schedule.num_steps)
    start_key, noise_key = jax.random.split(key)
    x = jax.random.normal(start_key, shape)
    bound = (lambda v: v) if clip is None else (lambda v: jnp.clip(v, -clip, clip))
    total = schedule.num_steps

    def estimate(x, index):
        index = jnp.full(shape[:-1], index, jnp.int32)
        predicted = noise_fn(params, condition, x, network_time(index, schedule))
        return bound(clean_estimate(schedule, x, index, predicted))

    if steps == total:
        betas, abars = schedule.betas, schedule.alpha_bars
        abars_prev = jnp.concatenate([jnp.ones(1), abars[:-1]])
        posterior_variance = betas * (1.0 - abars_prev) / (1.0 - abars)

        def ancestral(i, x):
            t = total - 1 - i
            x0 = estimate(x, t)
            mean = (jnp.sqrt(abars_prev[t]) * betas[t] * x0 + jnp.sqrt(1.0 - betas[t]) * (1.0 - abars_prev[t]) * x) / (1.0 - abars[t])
            z = jax.random.normal(jax.random.fold_in(noise_key, i), shape)
            return mean + jnp.where(t > 0, jnp.sqrt(posterior_variance[t]), 0.0) * z

        return bound(jax.lax.fori_loop(0, total, ancestral, x))

    indices = jnp.asarray(np.linspace(0, total - 1, steps).round().astype(np.int32))

    def solver_step(i, x):
        position = steps - 1 - i
        t = indices[position]
        abar = schedule.alpha_bars[t]
        abar_prev = jnp.where(position > 0, schedule.alpha_bars[indices[jnp.maximum(position - 1, 0)]], 1.0)
        x0 = estimate(x, t)
        eps = (x - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)
        return jnp.sqrt(abar_prev) * x0 + jnp.sqrt(1.0 - abar_prev) * eps

    return bound(jax.lax.fori_loop(0, steps, solver_step, x))
