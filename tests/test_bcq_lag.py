"""BCQ-Lag (offrl/algos/safe/bcq_lag.py): the PID Lagrange multiplier, the cost critic's target,
the per-step cost limit, the perturbation bound, and learning on the safe-and-unsafe torque-cost
data (tests/safe_learning_data.py)."""

from __future__ import annotations

import dataclasses
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos.safe import bcq_lag
from offrl.errors import ConfigError
from offrl.train.initial_state import init_state
from offrl.train.offline import prepare
from offrl.types import Batch, Spec
from dataset_helpers import make_random_dataset, random_batch

CONFIG = bcq_lag.Config(hidden_dims=(32, 32), vae_hidden_dims=(32, 32), batch_size=64, num_target_samples=4)


def test_pid_multiplier_rises_while_the_cost_q_is_above_the_limit_and_falls_to_zero_below():
    """OSRL's LagrangianPIDController: I = relu(I + e), lambda = relu(KP relu(e) + KI I + KD relu(e - e_prev))."""
    gains = (0.1, 0.003, 0.001)
    step = jax.jit(lambda e, i, p: bcq_lag.pid_multiplier(e, i, p, gains))
    multiplier, integral = step(1.0, 0.0, 0.0)
    assert float(multiplier) == pytest.approx(0.1 + 0.003 + 0.001) and float(integral) == 1.0
    history, previous = [], 0.0
    for error in [2.0] * 20 + [-2.0] * 30:  # I reaches 41, then falls by 2 a step
        multiplier, integral = step(error, integral, previous)
        history.append(float(multiplier))
        previous = error
        assert float(integral) >= 0.0 and float(multiplier) >= 0.0
    above, below = np.array(history[:20]), np.array(history[20:])
    assert np.all(np.diff(above[1:]) > 0)  # the integral keeps pushing lambda up while Q_c > limit
    assert np.all(np.diff(below) <= 0) and below[0] < above[-1] and np.all(below[-8:] == 0.0)  # down to 0 and held there
    assert float(step(-5.0, 0.0, 0.0)[0]) == 0.0


def test_cost_q_limit_is_the_discounted_value_of_an_even_share_of_the_budget():
    config = bcq_lag.Config(target_cost=5.0, max_episode_steps=200, discount=0.99)
    per_step = 5.0 / 200
    assert bcq_lag.cost_q_limit(config) == pytest.approx(sum(per_step * 0.99**t for t in range(200)))
    assert bcq_lag.cost_q_limit(bcq_lag.Config(target_cost=5.0, max_episode_steps=200, discount=1.0)) == pytest.approx(5.0)


def _shift_cost_output(state, offset):
    """The cost networks' output biases (the ensemble's rows after the 2 num_q reward networks)
    moved by `offset`: every Q_c about `offset`."""
    cost_rows = jnp.arange(2 * (CONFIG.num_q + CONFIG.num_qc))[:, None] >= 2 * CONFIG.num_q

    def shift(path, leaf):
        names = [getattr(entry, "key", None) for entry in path]
        return leaf + offset * cost_rows if names[-2:] == ["Dense_2", "bias"] else leaf

    return state.replace(critic=state.critic.replace(params=jax.tree_util.tree_map_with_path(shift, state.critic.params)))


def _with_costs(batch, costs, dones):
    return Batch(observations=batch.observations, actions=batch.actions, rewards=batch.rewards,
                 next_observations=batch.next_observations, dones=dones, costs=costs)


@pytest.fixture(scope="module")
def compiled():
    state = init_state(bcq_lag, jax.random.PRNGKey(0), Spec(4, 2), CONFIG)
    return state, jax.jit(lambda s, b: bcq_lag.update(s, b, CONFIG))


def test_the_update_raises_lambda_when_the_cost_critic_is_above_its_limit(compiled):
    state, update = compiled
    batch = random_batch()
    batch = _with_costs(batch, jnp.zeros(64), batch.dones)
    limit = bcq_lag.cost_q_limit(CONFIG)
    new_state, metrics = update(_shift_cost_output(state, 10.0 + limit), batch)
    assert float(metrics["multiplier"]) > 0.5 and float(new_state.multiplier) == float(metrics["multiplier"])
    assert float(metrics["cost_penalty"]) > 0.0 and float(new_state.error_integral) > 5.0
    new_state, metrics = update(_shift_cost_output(state, -10.0), batch)
    assert float(metrics["multiplier"]) == 0.0 and float(metrics["cost_penalty"]) == 0.0
    assert float(new_state.error_integral) == 0.0


def test_with_initial_multiplier_states_the_pid_reads_the_cost_q_of_the_first_states(compiled):
    """multiplier_states="initial": the error is mean(initial_state_weights * Q_c) - limit, so a batch
    without first rows holds lambda at 0 however high Q_c is (OSRL's batch mean raises it: the test
    above), and weights 1/p on first rows raise it."""
    state, _ = compiled
    config = dataclasses.replace(CONFIG, multiplier_states="initial")
    update = jax.jit(lambda s, b: bcq_lag.update(s, b, config))
    batch = random_batch()
    batch = _with_costs(batch, jnp.zeros(64), batch.dones)
    limit = bcq_lag.cost_q_limit(config)
    high = _shift_cost_output(state, 10.0 + limit)
    _, metrics = update(high, batch.replace(initial_state_weights=jnp.zeros(64)))
    assert float(metrics["multiplier"]) == 0.0
    _, metrics = update(high, batch.replace(initial_state_weights=jnp.zeros(64).at[:8].set(8.0)))  # p = 8 / 64
    assert float(metrics["multiplier"]) > 0.5
    with pytest.raises(ConfigError, match="--multiplier-states is 'first'"):
        bcq_lag.check_config(dataclasses.replace(CONFIG, multiplier_states="first"))


def test_the_cost_critic_regresses_on_costs_without_bootstrap_after_a_terminal(compiled):
    """With every transition terminal the cost target is the cost itself (the loss computable from the
    state); moving s' changes nothing then, and changes the loss after a timeout (dones 0)."""
    state, update = compiled
    batch = random_batch()
    costs = jnp.asarray(np.random.default_rng(4).uniform(0, 1, 64), jnp.float32)
    terminal = _with_costs(batch, costs, jnp.ones(64))
    _, metrics = update(state, terminal)
    q = state.critic.apply_fn(state.critic.params, batch.observations, batch.actions)[2 * CONFIG.num_q:]
    assert float(metrics["cost_critic_loss"]) == pytest.approx(float(((q - costs) ** 2).mean(axis=1).sum()), rel=1e-5)
    assert float(metrics["cost_critic_loss"]) != pytest.approx(float(((q - batch.rewards) ** 2).mean(axis=1).sum()), rel=1e-2)
    moved = terminal.replace(next_observations=terminal.next_observations + 3.0)
    assert float(update(state, moved)[1]["cost_critic_loss"]) == float(metrics["cost_critic_loss"])
    timeout = _with_costs(batch, costs, jnp.zeros(64))
    before = float(update(state, timeout)[1]["cost_critic_loss"])
    after = float(update(state, timeout.replace(next_observations=timeout.next_observations + 3.0))[1]["cost_critic_loss"])
    assert abs(before - after) > 1e-3 * (1.0 + before)


def test_actions_stay_within_phi_of_a_behaviour_sample(compiled):
    state, _ = compiled
    observations = jnp.asarray(np.random.default_rng(0).normal(size=(256, 4)), jnp.float32)
    key = jax.random.PRNGKey(5)
    actions = bcq_lag.act(state, observations, key)
    samples = bcq_lag.behaviour_samples(state, state.vae.params, observations, key)
    assert float(jnp.abs(actions - samples).max()) <= CONFIG.phi + 1e-6
    assert float(jnp.abs(actions - samples).max()) > 0.1 * CONFIG.phi  # the actor does perturb


def test_data_without_costs_is_refused():
    dataset = make_random_dataset([6, 5])
    with pytest.raises(ConfigError, match="has no per-step costs"):
        prepare(bcq_lag, CONFIG, dataset, None)
    with pytest.raises(ConfigError, match="--pid-gains"):
        bcq_lag.check_config(bcq_lag.Config(pid_gains=(0.1, 0.0)))


def test_online_rows_carry_the_envs_cost_or_are_refused():
    """Fine-tuning rows take the cost `step_envs` recorded from info["cost"]; without one, a clear refusal."""
    from offrl.train.extra_fields import online_row_values

    rows = {"actions": np.zeros((3, 1), np.float32), "rewards": np.zeros(3), "costs": np.array([0.0, 1.0, 0.0])}
    np.testing.assert_array_equal(online_row_values("costs", rows), [0.0, 1.0, 0.0])
    del rows["costs"]
    with pytest.raises(ConfigError, match="reports no per-step cost"):
        online_row_values("costs", rows)


def test_only_the_first_state_multiplier_binds_bcq_lag_to_offline_uniform_rows():
    """OSRL's default (the PID on the batch mean) needs no initial-state weights, so it may be
    fine-tuned and sampled with weights; `multiplier_states="initial"` may not."""
    from offrl.train.extra_fields import check_online_fields, declared_fields

    default, initial = bcq_lag.Config(), bcq_lag.Config(multiplier_states="initial")
    assert declared_fields(bcq_lag, default) == ("costs",)
    assert declared_fields(bcq_lag, initial) == ("costs", "initial_state_weights")
    check_online_fields(bcq_lag, default)
    with pytest.raises(ConfigError, match="initial_state_weights, defined for a fixed dataset only"):
        check_online_fields(bcq_lag, initial)
