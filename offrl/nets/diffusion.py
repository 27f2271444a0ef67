"""Denoising diffusion (DDPM, Ho et al. 2020) over a state-conditioned sample, with two solvers.

A variance schedule beta_1..beta_T; the network eps(s, x_t, t) predicts the noise in
x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps and trains on ||eps - eps_hat||^2.
Samplers, all pure and jit-able (fori_loops inside the caller's compiled program):
- solver "first_order", K = T: ancestral DDPM, each step the posterior mean from the clipped x_0
  estimate plus posterior noise (Diffusion-QL's p_sample with clip_denoised, Wang et al. 2023);
- solver "first_order", K < T: the deterministic first-order DPM-Solver (identical to DDIM with
  eta 0, Lu et al. 2022, Song et al. 2021) on K of the T steps;
- solver "dpm3": third-order singlestep DPM-Solver ("DPM-Solver-fast", Lu et al. 2022, Sec. 3.3 and
  Algorithms 1-2), EDP's reference sampler (sail-sg/edp diffusion/nets.py dpm_sample).
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
SOLVERS = ("first_order", "dpm3")
DPM3_MIN_STEPS = 4  # DPM-Solver-fast's order plan has a third-order step only from K = 4 (K = 3 is 2 + 1)
LINEAR_MIN_STEPS = 20  # the scaled linear schedule's last beta, 20 / T, must stay below 1


@struct.dataclass
class Schedule:
    betas: jax.Array  # (T,)
    alpha_bars: jax.Array  # cumulative products of 1 - beta
    kind: str = struct.field(pytree_node=False, default="")  # the name it was made from (SCHEDULES)

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
    return Schedule(betas=jnp.asarray(betas, jnp.float32), alpha_bars=jnp.asarray(np.cumprod(1.0 - betas), jnp.float32),
                    kind=kind)


def check_steps(steps: int, schedule_steps: int, flag: str = "--sampling-steps", solver: str = "first_order",
                schedule_kind: str = "") -> None:
    """Refuse, in one sentence, sampler settings the samplers below cannot honour."""
    if solver not in SOLVERS:
        raise ConfigError(f"--solver is {solver!r}; expected one of {', '.join(SOLVERS)}.")
    if solver == "dpm3" and schedule_kind == "cosine":
        # Its last beta, clipped to 0.999, puts a log-SNR jump of ~3.5 into the first step, which the
        # third-order update extrapolates wildly (measured: samples off by ~0.6 where first-order is 0.03).
        raise ConfigError("--solver is dpm3 with --beta-schedule cosine; expected the linear or vp schedule "
                          "(cosine's clipped last step breaks the third-order update).")
    if not isinstance(steps, int) or steps <= 0:
        raise ConfigError(f"{flag} is {steps}; expected a positive number of sampling steps.")
    if steps > schedule_steps:
        raise ConfigError(f"{flag} is {steps}; expected at most the {schedule_steps} diffusion steps.")
    if solver == "dpm3" and steps < DPM3_MIN_STEPS:
        raise ConfigError(f"{flag} is {steps} with --solver dpm3; expected at least {DPM3_MIN_STEPS} "
                          f"(fewer leave no third-order step: use --solver first_order).")


def network_time(index: jax.Array, schedule: Schedule) -> jax.Array:
    """What the network sees of step index t in 0..T-1: t / T in [0, 1)."""
    return index.astype(jnp.float32) / schedule.num_steps


def log_alpha_at(schedule: Schedule, index: jax.Array) -> jax.Array:
    """log sqrt(abar) at a fractional step index in [0, T - 1], linear between the steps: the
    discrete schedule read in continuous time t = (index + 1) / T, as DPM-Solver reads a
    discrete-time DPM (Lu et al. 2022, Appendix on discrete-time DPMs; NoiseScheduleVP 'discrete'
    in sail-sg/edp diffusion/dpm_solver.py). Equal to log sqrt(abar_index) at whole indices."""
    log_alphas = 0.5 * jnp.cumsum(jnp.log1p(-schedule.betas))
    return jnp.interp(index, jnp.arange(schedule.num_steps, dtype=jnp.float32), log_alphas)


def dpm_solver_orders(steps: int) -> list[int]:
    """The orders of DPM-Solver-fast's steps for K network calls (Lu et al. 2022, Sec. 3.3:
    third-order steps, closed by a second- and/or first-order one so that the calls add up to K)."""
    tail = {0: [2, 1], 1: [1], 2: [2]}[steps % 3]
    return [3] * ((steps - sum(tail)) // 3) + tail


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
           shape: tuple[int, ...], steps: int, clip: float | None = 1.0, solver: str = "first_order") -> jax.Array:
    """Draw samples of `shape` (batch..., dim) in `steps` network calls. Solver "first_order":
    ancestral DDPM when steps = T, first-order DPM-Solver (DDIM) on an evenly strided subset of
    steps otherwise; "dpm3": third-order DPM-Solver-fast (`dpm_solver3`).
    `clip` bounds the x_0 estimate at every step (actions live in [-1, 1]); None leaves it."""
    check_steps(steps, schedule.num_steps, solver=solver, schedule_kind=schedule.kind)
    start_key, noise_key = jax.random.split(key)
    x = jax.random.normal(start_key, shape)
    if solver == "dpm3":
        return dpm_solver3(noise_fn, params, schedule, condition, x, steps, clip)
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


def dpm_solver3(noise_fn: NoiseFn, params: Any, schedule: Schedule, condition: jax.Array, start: jax.Array,
                steps: int, clip: float | None = 1.0) -> jax.Array:
    """Solve the diffusion ODE from `start` (noise at t = 1) to t = 1 / T in `steps` network calls
    with singlestep DPM-Solver-fast of order 3 for a noise-predicting model (Lu et al. 2022,
    "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model Sampling in Around 10 Steps",
    Algorithm 1 (DPM-Solver-2), Algorithm 2 (DPM-Solver-3), Sec. 3.3 (the order plan)).

    The settings are EDP's (sail-sg/edp diffusion/nets.py dpm_sample, which calls
    DPM_Solver.sample with its defaults): order 3, method 'singlestep', skip_type 'time_uniform'
    (K + 1 times evenly spaced in t from 1 to t_end, each step's intermediate times on that grid),
    t_end = 1 / T (dql.py dpm_t_end = 0.001 with T = 1000, README), no final denoising step, the
    'dpm_solver' (not 'taylor') update. EDP's noise clipping keeps the x_0 each prediction implies in
    [-clip, clip]; it reads those bounds at the integer step below t, this at t itself.
    With lambda = log(alpha / sigma), h = lambda_t - lambda_s, h_i = lambda_{s_i} - lambda_s,
    r_i = h_i / h, phi(h) = e^h - 1 and D_i = eps(u_i, s_i) - eps(x, s):
      first order:  x_t = (alpha_t / alpha_s) x - sigma_t phi(h) eps(x, s)
      second order: u_1 = (alpha_s1 / alpha_s) x - sigma_s1 phi(h_1) eps(x, s);
                    x_t = first order - sigma_t phi(h) D_1 / (2 r_1)
      third order:  u_2 = (alpha_s2 / alpha_s) x - sigma_s2 phi(h_2) eps(x, s)
                          - (r_2 / r_1) sigma_s2 (phi(h_2) / h_2 - 1) D_1;
                    x_t = first order - (sigma_t / r_2) (phi(h) / h - 1) D_2
    Returns x at t = 1 / T, clipped like the first-order sampler's output."""
    total = schedule.num_steps
    orders = dpm_solver_orders(steps)
    # Grid in step indices: t = (index + 1) / T evenly spaced from 1 (index T - 1) to 1 / T (index 0).
    grid = jnp.asarray(np.linspace(total - 1, 0, steps + 1), jnp.float32)
    log_alpha = log_alpha_at(schedule, grid)
    sigma = jnp.sqrt(-jnp.expm1(2.0 * log_alpha))
    lam = log_alpha - jnp.log(sigma)
    batch = start.shape[:-1]

    def noise(x, j):
        predicted = noise_fn(params, condition, x, jnp.full(batch, grid[j] / total))
        if clip is None:
            return predicted
        alpha = jnp.exp(log_alpha[j])
        clean = jnp.clip((x - sigma[j] * predicted) / alpha, -clip, clip)
        return (x - alpha * clean) / sigma[j]

    def carried(x, s, t):  # (alpha_t / alpha_s) x
        return jnp.exp(log_alpha[t] - log_alpha[s]) * x

    def first_order(x, s):
        h = lam[s + 1] - lam[s]
        return carried(x, s, s + 1) - sigma[s + 1] * jnp.expm1(h) * noise(x, s)

    def second_order(x, s):
        t = s + 2
        h, h1 = lam[t] - lam[s], lam[s + 1] - lam[s]
        eps = noise(x, s)
        d1 = noise(carried(x, s, s + 1) - sigma[s + 1] * jnp.expm1(h1) * eps, s + 1) - eps
        return carried(x, s, t) - sigma[t] * jnp.expm1(h) * (eps + 0.5 * h / h1 * d1)

    def third_order(x, s):
        s1, s2, t = s + 1, s + 2, s + 3
        h, h1, h2 = lam[t] - lam[s], lam[s1] - lam[s], lam[s2] - lam[s]
        eps = noise(x, s)
        d1 = noise(carried(x, s, s1) - sigma[s1] * jnp.expm1(h1) * eps, s1) - eps
        u2 = carried(x, s, s2) - sigma[s2] * jnp.expm1(h2) * eps - (h2 / h1) * sigma[s2] * (jnp.expm1(h2) / h2 - 1.0) * d1
        d2 = noise(u2, s2) - eps
        return carried(x, s, t) - sigma[t] * jnp.expm1(h) * eps - (h / h2) * sigma[t] * (jnp.expm1(h) / h - 1.0) * d2

    third_steps = orders.count(3)
    x = jax.lax.fori_loop(0, third_steps, lambda i, x: third_order(x, 3 * i), start)
    position = 3 * third_steps
    for order in orders[third_steps:]:
        x = second_order(x, position) if order == 2 else first_order(x, position)
        position += order
    return x if clip is None else jnp.clip(x, -clip, clip)
