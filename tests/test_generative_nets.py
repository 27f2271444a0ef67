"""The shared generative layer (offrl/nets/flow.py, diffusion.py, denoiser.py): samplers checked
against fields whose answer is known in closed form, losses against their definitions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.errors import ConfigError
from offrl.nets import diffusion
from offrl.nets.denoiser import ConditionalDenoiser
from offrl.nets.flow import euler_sample, flow_matching_loss

TARGET = jnp.array([[0.3, -0.7], [0.9, 0.1], [-0.5, 0.5]])  # one point per condition (row)


def point_velocity(params, condition, x, t):
    """The exact linear-path velocity towards a point c = condition: (c - x) / (1 - t)."""
    return (condition - x) / (1.0 - t)[..., None]


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_euler_sampler_reaches_the_point_a_point_field_leads_to(steps):
    """With the exact field for a point mass, each Euler step of size 1/K covers the right share
    of the remaining way, so any K lands on the point; a wrong time grid (t = (i+1)/K, or steps
    of another size) would not (at K = 1 it would divide by zero)."""
    noise = jax.random.normal(jax.random.PRNGKey(0), TARGET.shape) * 3
    samples = euler_sample(point_velocity, None, TARGET, noise, steps, clip=None)
    np.testing.assert_allclose(samples, TARGET, atol=1e-5)


def test_euler_sampler_clips_to_the_action_box():
    far = jnp.full((2, 2), 5.0)
    samples = euler_sample(point_velocity, None, far, jnp.zeros((2, 2)), 4)
    np.testing.assert_allclose(samples, jnp.ones((2, 2)))


def test_flow_matching_loss_is_zero_for_the_exact_field_and_positive_otherwise():
    key = jax.random.PRNGKey(1)
    data = jnp.tile(TARGET, (50, 1))
    # One compiled call per field: eagerly every op compiles on its own.
    loss = lambda field: jax.jit(lambda key: flow_matching_loss(field, None, data, data, key))(key)  # noqa: E731
    assert float(loss(point_velocity)) < 1e-8
    zero_field = lambda params, c, x, t: jnp.zeros_like(x)  # noqa: E731
    # E||x1 - x0||^2 per dimension = x1^2 + 1.
    expected = float(jnp.mean(data**2) + 1.0)
    assert float(loss(zero_field)) == pytest.approx(expected, rel=0.15)


def test_vp_schedule_ends_where_the_continuous_sde_does_for_any_number_of_steps():
    """abar_T = exp(-beta_min - (beta_max - beta_min) / 2) whatever T (the discretised VP SDE)."""
    for steps in (5, 20, 100):
        schedule = diffusion.make_schedule("vp", steps)
        assert float(schedule.alpha_bars[-1]) == pytest.approx(np.exp(-0.1 - 4.95), rel=1e-4)
        assert bool(jnp.all(jnp.diff(schedule.alpha_bars) < 0))
    for kind in ("linear", "cosine"):
        bars = diffusion.make_schedule(kind, 100).alpha_bars
        assert bool(jnp.all(jnp.diff(bars) < 0)) and float(bars[-1]) < 0.05


def reference_betas(kind: str, steps: int) -> np.ndarray:
    """The references' formulas, written out again in float64: vp and cosine from Diffusion-QL
    agents/helpers.py (vp_beta_schedule, cosine_beta_schedule; IDQL's jaxrl5 ones are the same),
    linear from sail-sg/edp diffusion/diffusion.py get_named_beta_schedule."""
    if kind == "vp":
        t = np.arange(1, steps + 1)
        return 1 - np.exp(-0.1 / steps - 0.5 * (10.0 - 0.1) * (2 * t - 1) / steps**2)
    if kind == "linear":
        scale = 1000 / steps
        return np.linspace(scale * 0.0001, scale * 0.02, steps, dtype=np.float64)
    x = np.linspace(0, steps + 1, steps + 1)
    bars = np.cos(((x / (steps + 1)) + 0.008) / 1.008 * np.pi * 0.5) ** 2
    return np.clip(1 - bars[1:] / bars[:-1], 0, 0.999)


@pytest.mark.parametrize("kind, steps", [(kind, steps) for kind in ("vp", "cosine") for steps in (5, 20, 100)]
                         + [("linear", 21), ("linear", 100), ("linear", 1000)])
def test_schedules_are_the_reference_formulas(kind, steps):
    """betas and abar_t = prod(1 - beta) as the reference code computes them, at few and many steps."""
    schedule = diffusion.make_schedule(kind, steps)
    betas = reference_betas(kind, steps)
    np.testing.assert_allclose(schedule.betas, betas, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(schedule.alpha_bars, np.cumprod(1 - betas), rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("steps", [5, 10, 20])
def test_linear_schedule_refuses_the_steps_where_its_betas_reach_one(steps):
    """The scaled linear schedule's last beta is 20 / T: at T = 20 it is 1 (abar_T = 0) and below
    that the reference's betas exceed 1. offrl used to clip the end to 0.999, a different schedule
    (T = 10: betas 0.01..0.999, abar_T 8.7e-7) that no reference defines."""
    with pytest.raises(ConfigError, match="expected more than 20 steps"):
        diffusion.make_schedule("linear", steps)


def gaussian_noise_fn(mean, std, schedule):
    """The exact noise predictor for data ~ N(mean, std^2): eps = sqrt(1-abar)(x - sqrt(abar) m) / (abar s^2 + 1 - abar)."""

    def noise_fn(params, condition, x, times):
        index = jnp.round(times * schedule.num_steps).astype(jnp.int32)
        abar = schedule.alpha_bars[index][..., None]
        return jnp.sqrt(1.0 - abar) * (x - jnp.sqrt(abar) * mean) / (abar * std**2 + 1.0 - abar)

    return noise_fn


@pytest.mark.parametrize("steps", [1000, 500])
def test_diffusion_samplers_draw_the_distribution_of_the_exact_noise_predictor(steps):
    """Ancestral DDPM (K = T) and the first-order solver (K < T) fed the exact score of
    N(0.4, 0.2^2) reproduce its mean and std; a sign or coefficient slip in either update shifts them.
    (Both are discretisations: at T = 100 ancestral sampling gives std 0.176, the solver with K = 50
    of 1000 steps 0.175, K = 200 0.193.)"""
    schedule = diffusion.make_schedule("linear", 1000)
    noise_fn = gaussian_noise_fn(0.4, 0.2, schedule)
    samples = diffusion.sample(noise_fn, None, schedule, jnp.zeros((20_000, 0)), jax.random.PRNGKey(2), (20_000, 1), steps, clip=None)
    assert float(samples.mean()) == pytest.approx(0.4, abs=0.01)
    assert float(samples.std()) == pytest.approx(0.2, abs=0.01)


def test_diffusion_point_mass_is_recovered_exactly_by_the_solver():
    schedule = diffusion.make_schedule("vp", 5)
    noise_fn = gaussian_noise_fn(TARGET, 0.0, schedule)
    samples = diffusion.sample(noise_fn, None, schedule, TARGET, jax.random.PRNGKey(3), TARGET.shape, 3)
    np.testing.assert_allclose(samples, TARGET, atol=1e-4)


def test_clean_estimate_inverts_the_forward_noising():
    schedule = diffusion.make_schedule("vp", 5)
    index = jnp.array([0, 2, 4])
    noise = jax.random.normal(jax.random.PRNGKey(4), TARGET.shape)
    noisy = diffusion.noised(schedule, TARGET, index, noise)
    np.testing.assert_allclose(diffusion.clean_estimate(schedule, noisy, index, noise), TARGET, atol=1e-5)


def test_denoising_loss_is_zero_for_the_exact_predictor_of_a_point_mass():
    schedule = diffusion.make_schedule("vp", 10)
    data = jnp.tile(TARGET, (2000, 1))
    exact = gaussian_noise_fn(data, 0.0, schedule)
    # One compiled call per predictor: eagerly every op compiles on its own.
    loss = lambda predictor: jax.jit(lambda key: diffusion.denoising_loss(predictor, None, schedule, data, data, key))(jax.random.PRNGKey(5))  # noqa: E731
    assert float(loss(exact)) < 1e-8
    wrong = lambda params, c, x, t: jnp.zeros_like(x)  # noqa: E731
    assert float(loss(wrong)) == pytest.approx(1.0, rel=0.05)


def test_sampling_runs_inside_one_compiled_program_with_a_network():
    """Batched, state-conditioned sampling from a real denoiser compiles once and is a pure function of its key."""
    net = ConditionalDenoiser(2, (16, 16), time_features=8)
    observations = jnp.ones((7, 3))
    params = jax.jit(net.init)(jax.random.PRNGKey(0), observations, jnp.zeros((7, 2)), jnp.zeros((7,)))
    schedule = diffusion.make_schedule("vp", 5)
    draw = jax.jit(lambda key: diffusion.sample(net.apply, params, schedule, observations, key, (7, 2), 5))
    first, again = draw(jax.random.PRNGKey(1)), draw(jax.random.PRNGKey(1))
    assert first.shape == (7, 2) and float(jnp.abs(first).max()) <= 1.0
    np.testing.assert_array_equal(first, again)
    flow = jax.jit(lambda noise: euler_sample(net.apply, params, observations, noise, 4))(jnp.zeros((7, 2)))
    assert flow.shape == (7, 2)


MIXTURE = (jnp.array([0.3, 0.7]), jnp.array([-0.5, 0.4]), jnp.array([0.1, 0.2]))  # weights, means, stds


def mixture_noise_fn(schedule):
    """The exact noise predictor for data from the 1-D Gaussian mixture MIXTURE, at any fractional
    step (abar read in continuous time, as the third-order solver reads the schedule):
    eps = (x - sqrt(abar) E[x_0 | x]) / sqrt(1 - abar), E[x_0 | x] mixing the components' posterior means."""
    weights, means, stds = MIXTURE

    def noise_fn(params, condition, x, times):
        abar = jnp.exp(2.0 * diffusion.log_alpha_at(schedule, times * schedule.num_steps))[..., None]
        variance = abar * stds**2 + 1.0 - abar
        responsibility = jax.nn.softmax(jnp.log(weights) - 0.5 * jnp.log(variance) - (x - jnp.sqrt(abar) * means) ** 2 / (2 * variance), axis=-1)
        clean = (responsibility * (means + jnp.sqrt(abar) * stds**2 * (x - jnp.sqrt(abar) * means) / variance)).sum(-1, keepdims=True)
        return (x - jnp.sqrt(abar) * clean) / jnp.sqrt(1.0 - abar)

    return noise_fn


def test_third_order_solver_lands_nearer_the_exact_ode_solution_than_the_first_order_one():
    """EDP's reference sampler (DPM-Solver-3, `solver="dpm3"`) and the first-order solver (DDIM), both
    deterministic, from the same 4,096 starting noises on EDP's T = 1000 linear schedule with the exact
    noise of a two-component mixture, against DDIM with K = 999 (the ODE solution within 0.004).
    Measured, mean |x_K - x_999| (no clipping): K = 10: dpm3 0.072, first-order 0.107; K = 15: dpm3
    0.034, first-order 0.059; K = 50: 0.025 / 0.017. Not asserted: at K = 20 (orders 3 x 6 + 2, the last
    step second-order across the steep last two intervals of the time-uniform grid) dpm3 is worse, 0.166
    vs 0.043, and likewise at K = 5 (3 + 2): 0.539 vs 0.239. Broken solvers: the sign of the
    third-order step's final correction (D2) flipped, K = 10 / 15: 0.211 / 0.054; of the second-order
    step's, 0.072 / 0.149; this test fails on both. A flipped D1 (it only moves the intermediate
    point u2, a higher-order effect) gives 0.045 / 0.032 and is not caught here."""
    schedule = diffusion.make_schedule("linear", 1000)
    noise_fn = mixture_noise_fn(schedule)
    draw = jax.jit(lambda steps, solver: diffusion.sample(noise_fn, None, schedule, jnp.zeros((4096, 0)), jax.random.PRNGKey(0),
                                                          (4096, 1), steps, clip=None, solver=solver), static_argnums=(0, 1))
    reference = draw(999, "first_order")
    errors = {(steps, solver): float(jnp.abs(draw(steps, solver) - reference).mean()) for steps in (10, 15) for solver in ("dpm3", "first_order")}
    for steps in (10, 15):
        assert errors[steps, "dpm3"] < 0.8 * errors[steps, "first_order"], errors
    assert errors[15, "dpm3"] < 0.045, errors


def test_third_order_solver_is_exact_for_a_point_mass_and_clips_to_the_box():
    """For a point mass c every order's correction vanishes (eps is constant along the ODE), so the
    solver lands on alpha_end c + sigma_end z, z the standardised start, at t_end = 1 / T (EDP's
    dpm_t_end: no final denoising step; measured within 1.2e-4); clipped, inside the box."""
    schedule = diffusion.make_schedule("linear", 100)

    def point_noise(params, point, x, times):  # the point is the condition; fractional steps too: eps = (x - alpha c) / sigma
        alpha = jnp.exp(diffusion.log_alpha_at(schedule, times * schedule.num_steps))[..., None]
        return (x - alpha * point) / jnp.sqrt(1.0 - alpha**2)

    start = jax.random.normal(jax.random.PRNGKey(3), TARGET.shape)
    abar_first, abar_last = schedule.alpha_bars[-1], schedule.alpha_bars[0]
    expected = jnp.sqrt(abar_last) * TARGET + jnp.sqrt(1 - abar_last) * (start - jnp.sqrt(abar_first) * TARGET) / jnp.sqrt(1 - abar_first)
    solve = jax.jit(diffusion.dpm_solver3, static_argnums=(0, 5, 6))  # one program per K: eager ops dispatch slowly
    landed = solve(point_noise, None, schedule, TARGET, start, 15, None)  # orders 3, 3, 3, 3, 2, 1: every kind of step
    np.testing.assert_allclose(landed, expected, atol=1e-3)  # float32: the first steps scale x by up to ~100
    clipped = solve(point_noise, None, schedule, 3 * TARGET, start, 15, 1.0)
    assert float(jnp.abs(clipped).max()) <= 1.0 and float(jnp.abs(clipped).min()) > 0.0


@pytest.mark.parametrize("kind, steps, solver, message", [
    ("linear", 3, "dpm3", "at least 4"), ("vp", 2, "dpm3", "at least 4"),
    ("linear", 15, "dpm2", "expected one of first_order, dpm3"), ("cosine", 15, "dpm3", "linear or vp"),
])
def test_bad_solver_settings_are_refused(kind, steps, solver, message):
    schedule = diffusion.make_schedule(kind, 100 if kind != "vp" else 5)
    with pytest.raises(ConfigError, match=message):
        diffusion.sample(point_velocity, None, schedule, TARGET, jax.random.PRNGKey(0), TARGET.shape, steps, solver=solver)


@pytest.mark.parametrize("steps", [0, -3])
def test_non_positive_sampling_steps_are_refused(steps):
    schedule = diffusion.make_schedule("vp", 5)
    with pytest.raises(ConfigError, match="expected a positive number of sampling steps"):
        euler_sample(point_velocity, None, TARGET, TARGET, steps)
    with pytest.raises(ConfigError, match="expected a positive number of sampling steps"):
        diffusion.sample(point_velocity, None, schedule, TARGET, jax.random.PRNGKey(0), TARGET.shape, steps)
    with pytest.raises(ConfigError, match="at most the 5 diffusion steps"):
        diffusion.sample(point_velocity, None, schedule, TARGET, jax.random.PRNGKey(0), TARGET.shape, 6)
