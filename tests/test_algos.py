"""The characteristic piece of each algorithm, checked against its formula."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos import bc, iql, td3_bc
from offrl.nets.policies import gaussian_log_prob
from offrl.types import Spec
from offrl.train.initial_state import init_state
from dataset_helpers import random_batch


def test_expectile_loss_weights_positive_errors_by_tau():
    diff = jnp.array([2.0, -2.0])
    loss = iql.expectile_loss(diff, 0.7)
    np.testing.assert_allclose(loss, [0.7 * 4.0, 0.3 * 4.0], rtol=1e-6)
    # tau = 0.5 is plain (halved) squared error: symmetric.
    np.testing.assert_allclose(iql.expectile_loss(diff, 0.5), [2.0, 2.0])


def test_expectile_loss_minimiser_is_the_upper_expectile():
    """IQL's V(s) is the tau-expectile of Q(s, a) over dataset actions: above the mean for tau > 0.5.
    For Q uniform on [-1, 1] and tau = 0.9 the expectile solves 0.9 (1 - v)^2 = 0.1 (1 + v)^2: v = 0.5."""
    q_values = jnp.linspace(-1, 1, 4001)
    candidates = jnp.linspace(-1, 1, 2001)
    @jax.jit  # one compiled call: eagerly every op compiles on its own
    def minimiser(candidates):
        losses = jax.vmap(lambda v: iql.expectile_loss(q_values - v, 0.9).mean())(candidates)
        return candidates[jnp.argmin(losses)]

    assert float(minimiser(candidates)) == pytest.approx(0.5, abs=0.01)


def test_gaussian_log_prob_matches_the_closed_form():
    mean = jnp.array([[0.1, -0.2]])
    log_std = jnp.log(jnp.array([[0.5, 2.0]]))
    action = jnp.array([[0.3, 0.4]])
    expected = sum(
        -0.5 * ((a - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
        for a, m, s in [(0.3, 0.1, 0.5), (0.4, -0.2, 2.0)]
    )
    np.testing.assert_allclose(gaussian_log_prob(mean, log_std, action), [expected], rtol=1e-5)


def test_td3_bc_actor_loss_scales_q_by_alpha_over_mean_abs_q():
    """At alpha = 0 the actor update is pure behaviour cloning: the policy approaches the data."""
    batch = random_batch()
    config = td3_bc.Config(hidden_dims=(32, 32), alpha=0.0, policy_freq=1, actor_learning_rate=3e-3)
    state = init_state(td3_bc, jax.random.PRNGKey(0), Spec(4, 2), config)
    update = jax.jit(lambda s: td3_bc.update(s, batch, config))
    first = None
    for _ in range(300):
        state, metrics = update(state)
        first = first if first is not None else float(metrics["bc_loss"])
    assert float(metrics["actor_loss"]) == pytest.approx(float(metrics["bc_loss"]), rel=1e-5)
    assert float(metrics["bc_loss"]) < 0.2 * first


def test_td3_bc_updates_the_actor_every_policy_freq_steps():
    batch = random_batch()
    config = td3_bc.Config(hidden_dims=(16,), policy_freq=2)
    state = init_state(td3_bc, jax.random.PRNGKey(0), Spec(4, 2), config)
    update = jax.jit(lambda s: td3_bc.update(s, batch, config))
    state, metrics_0 = update(state)   # step 0: actor updates
    actor_after_0 = state.actor.params
    state, metrics_1 = update(state)   # step 1: critic only
    assert np.isfinite(float(metrics_0["actor_loss"])) and np.isnan(float(metrics_1["actor_loss"]))
    jax.tree.map(np.testing.assert_array_equal, actor_after_0, state.actor.params)


def test_bc_loss_is_mean_squared_error_of_actions():
    batch = random_batch()
    config = bc.Config(hidden_dims=(16,))
    state = init_state(bc, jax.random.PRNGKey(0), Spec(4, 2), config)
    # Compiled calls: eagerly every op compiles on its own.
    predicted = jax.jit(bc.act, static_argnums=3)(state, batch.observations, jax.random.PRNGKey(0), True)
    _, metrics = jax.jit(bc.update, static_argnums=2)(state, batch, config)
    mse = jax.jit(lambda predicted: jnp.mean((predicted - batch.actions) ** 2))
    np.testing.assert_allclose(float(metrics["actor_loss"]), float(mse(predicted)), rtol=1e-5)


def test_contract(small_algorithm):
    """Config is frozen; update is pure (same inputs, same outputs, here through the engine's fused
    program); act is batched and in [-1, 1]."""
    setup = small_algorithm
    algo = setup.algo
    with pytest.raises(Exception):
        setup.config.batch_size = 1  # frozen dataclass
    state = setup.init()
    state_a, metrics_a = setup.fused(state, setup.data, setup.train_key)
    state_b, metrics_b = setup.fused(state, setup.data, setup.train_key)
    assert {k: float(v) for k, v in metrics_a.items() if np.isfinite(v)} == {k: float(v) for k, v in metrics_b.items() if np.isfinite(v)}
    jax.tree.map(np.testing.assert_array_equal, state_a, state_b)
    observations = random_batch(obs_dim=setup.dataset.spec.observation_dim).observations
    act = jax.jit(algo.act, static_argnums=3)  # one compiled call: eager acting compiles op by op
    for deterministic in (True, False):
        actions = act(state_a, observations * 100, jax.random.PRNGKey(1), deterministic)
        assert actions.shape == (64, setup.dataset.spec.action_dim) and float(jnp.abs(actions).max()) <= 1.0
    assert algo.NAME == setup.name and algo.DESCRIPTION and algo.PAPER
