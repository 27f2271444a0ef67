"""SAC-Lag: the per-step cost limit, the Lagrange multiplier's direction, the cost critic's target
at terminals, and the online engine handing each transition's cost to the learner."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training.train_state import TrainState

from offrl.algos.online import sac_lag
from offrl.envs.torque_cost import PENDULUM_TORQUE_COST_ID, TORQUE_LIMIT
from offrl.errors import ConfigError
from offrl.train.initial_state import init_state
from offrl.train.online import OnlineConfig, train_online
from offrl.types import Batch, Spec

SPEC = Spec(observation_dim=3, action_dim=1)
CONFIG = sac_lag.Config(hidden_dims=(16,), batch_size=32, cost_limit=2.0, max_episode_steps=200)


def _batch(dones: float, seed: int = 0, size: int = 32) -> Batch:
    rng = np.random.default_rng(seed)
    return Batch(
        observations=jnp.asarray(rng.normal(size=(size, 3)), jnp.float32),
        actions=jnp.asarray(rng.uniform(-1, 1, size=(size, 1)), jnp.float32),
        rewards=jnp.asarray(rng.normal(size=size), jnp.float32),
        next_observations=jnp.asarray(rng.normal(size=(size, 3)), jnp.float32),
        dones=jnp.full((size,), dones, jnp.float32),
        costs=jnp.asarray(rng.integers(0, 2, size=size), jnp.float32),
    )


def _shift_cost_output(params: dict, amount: float) -> dict:
    """The cost critic's (or its target's) output bias moved by `amount`: Q_c(s, a) + amount everywhere."""
    params = jax.tree.map(lambda x: x, params)
    dense = params["params"]["Vmap_QNetwork_0"]["MLP_0"]
    last = sorted(dense)[-1]
    dense[last] = {**dense[last], "bias": dense[last]["bias"] + amount}
    return params


@pytest.fixture(scope="module")
def compiled():
    """One initial state and one compiled update for the module (the config is static)."""
    return init_state(sac_lag, jax.random.PRNGKey(0), SPEC, CONFIG), jax.jit(sac_lag.update, static_argnums=2)


def test_cost_q_limit_is_the_discounted_share_of_the_episode_limit():
    """d = kappa (1 - gamma^L) / ((1 - gamma) L) (OSRL's qc_thres, WCSAC's cost_constraint); gamma = 1 gives kappa."""
    assert sac_lag.cost_q_limit(CONFIG) == pytest.approx(2.0 * (1 - 0.99**200) / (0.01 * 200))
    undiscounted = sac_lag.Config(cost_limit=2.0, max_episode_steps=200, discount=1.0)
    assert sac_lag.cost_q_limit(undiscounted) == pytest.approx(2.0)


def test_multiplier_rises_above_the_limit_and_decays_towards_zero_below():
    step = jax.jit(sac_lag.multiplier_step)
    start = TrainState.create(apply_fn=None, params={"nu": jnp.float32(0.0)}, tx=optax.adam(0.05))
    for cost_q, direction in ((3.0, +1), (0.0, -1)):  # limit 1: above, then below
        state, values = start, [float(sac_lag.multiplier_value(start))]
        for _ in range(200):
            state, _ = step(state, jnp.float32(cost_q), 1.0)
            values.append(float(sac_lag.multiplier_value(state)))
        steps = np.diff(values)
        assert np.all(np.sign(steps) == direction)
        assert min(values) > 0.0  # softplus keeps lambda >= 0
    assert values[-1] < 0.05  # below the limit lambda goes towards 0 (from 0.69), never below it


def test_full_update_moves_lambda_with_the_cost_critic(compiled):
    """In `update`, lambda rises when Q_c(s, pi(s)) is above the per-step limit and falls when it is below."""
    state, update = compiled
    batch = _batch(dones=0.0)
    for shift, direction in ((+20.0, +1), (-20.0, -1)):
        shifted = state.replace(cost_critic=state.cost_critic.replace(params=_shift_cost_output(state.cost_critic.params, shift)))
        new_state, metrics = update(shifted, batch, CONFIG)
        assert np.sign(float(metrics["policy_cost_q"]) - sac_lag.cost_q_limit(CONFIG)) == direction
        before = float(sac_lag.multiplier_value(state.multiplier))
        assert np.sign(float(sac_lag.multiplier_value(new_state.multiplier)) - before) == direction
        assert float(metrics["multiplier"]) == pytest.approx(before)  # the actor used lambda before its step
        assert all(np.isfinite(float(value)) for value in metrics.values())


def test_cost_critic_does_not_bootstrap_after_a_terminal(compiled):
    """Moving the cost target network changes nothing when every transition is terminal, and the
    cost critic's step when none is."""
    state, update = compiled
    moved = state.replace(cost_critic_target=_shift_cost_output(state.cost_critic_target, 50.0))
    terminal = _batch(dones=1.0)
    same = update(state, terminal, CONFIG)[0].cost_critic.params
    with_moved_target = update(moved, terminal, CONFIG)[0].cost_critic.params
    jax.tree.map(np.testing.assert_array_equal, same, with_moved_target)
    running = _batch(dones=0.0)
    differ = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                                          update(state, running, CONFIG)[0].cost_critic.params,
                                          update(moved, running, CONFIG)[0].cost_critic.params))
    assert any(differ)
    expected = np.array([1.0, 0.0]) + 0.99 * np.array([0.0, 1.0]) * 5.0
    np.testing.assert_allclose(sac_lag.cost_target(jnp.array([1.0, 0.0]), jnp.array([1.0, 0.0]), jnp.array([5.0, 5.0]), 0.99),
                               expected, rtol=1e-6)


def test_online_engine_records_each_transitions_cost():
    """Random acting only (no update compiled): the buffer's costs are the env's, row by row
    (|torque| > 1 on the torque-cost Pendulum), and episode costs are their sums."""
    online = OnlineConfig(total_steps=400, num_envs=2, start_steps=1_000, seed=3)
    result = train_online(sac_lag, CONFIG, PENDULUM_TORQUE_COST_ID, online)
    replay = result.replay()
    np.testing.assert_array_equal(replay["costs"], (np.abs(replay["actions"][:, 0]) > TORQUE_LIMIT).astype(np.float32))
    assert result.episode_costs is not None and len(result.episode_costs) == 2
    for env in range(2):
        assert result.episode_costs[env] == pytest.approx(replay["costs"][replay["env_index"] == env].sum())


def test_online_engine_refuses_an_env_without_costs():
    online = OnlineConfig(total_steps=4, start_steps=10, seed=0)
    with pytest.raises(ConfigError, match=r"reports no info\['cost'\]"):
        train_online(sac_lag, CONFIG, "Pendulum-v1", online)
