"""Cal-QL: Monte-Carlo returns-to-go in the data layer, the calibrated penalty, and the engine
providing `mc_returns` for offline rows and for online rows once their episode ends."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos import calql, cql
from offrl.data.collect import collect_episodes
from offrl.data.returns import returns_to_go
from offrl.data.transforms import Normalizer
from offrl.errors import DatasetError
from offrl.train.extra_fields import offline_extra_arrays
from offrl.train.finetune import FinetuneConfig, train_with_prior_data
from offrl.types import Batch, Spec
from offrl.train.initial_state import init_state

from dataset_helpers import make_random_dataset
from scripted import uniform_random


def brute_force_returns(rewards, starts, terminals, discount, tails=None):
    ends = list(starts[1:]) + [len(rewards)]
    out = np.zeros(len(rewards))
    for e, (start, end) in enumerate(zip(starts, ends)):
        for t in range(start, end):
            out[t] = sum(discount ** (k - t) * rewards[k] for k in range(t, end))
            if tails is not None and not terminals[end - 1]:
                out[t] += discount ** (end - t) * tails[e]
    return out


def test_returns_to_go_sum_each_episode_and_stop_at_its_end():
    # Episodes end in a terminal, a timeout, a terminal and a trailing cut (no flag).
    dataset = make_random_dataset([5, 7, 1, 4], ends=["terminal", "timeout", "terminal", "none"], seed=3)
    for discount in (0.0, 0.9, 1.0):
        expected = brute_force_returns(dataset.rewards, dataset.episode_starts, dataset.terminals, discount)
        np.testing.assert_allclose(
            returns_to_go(dataset.rewards, dataset.episode_starts, dataset.terminals, discount), expected, rtol=1e-5, atol=1e-5)
    tails = np.array([100.0, -50.0, 7.0, 3.0])  # only the timeout and the trailing episode bootstrap
    expected = brute_force_returns(dataset.rewards, dataset.episode_starts, dataset.terminals, 0.9, tails)
    got = returns_to_go(dataset.rewards, dataset.episode_starts, dataset.terminals, 0.9, tail_values=tails)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert got[4] == pytest.approx(dataset.rewards[4])  # a terminal's last step: its reward only


def test_returns_to_go_refuses_bad_input():
    with pytest.raises(DatasetError, match="terminals"):
        returns_to_go(np.ones(3), np.array([0]), np.zeros(2, bool), 0.9)
    with pytest.raises(DatasetError, match="episode_starts"):
        returns_to_go(np.ones(3), np.array([1]), np.zeros(3, bool), 0.9)
    with pytest.raises(DatasetError, match="tail_values"):
        returns_to_go(np.ones(3), np.array([0]), np.zeros(3, bool), 0.9, tail_values=np.ones(2))


def test_offline_mc_returns_use_the_trained_reward_scale_and_discount():
    dataset = make_random_dataset([6, 4], ends=["timeout", "terminal"], seed=1)
    normalizer = Normalizer(np.zeros(3, np.float32), np.ones(3, np.float32), -np.ones(2, np.float32),
                            np.ones(2, np.float32), reward_scale=3.0)
    arrays = offline_extra_arrays(calql, calql.Config(discount=0.8), dataset, normalizer)
    expected = brute_force_returns(3.0 * dataset.rewards, dataset.episode_starts, dataset.terminals, 0.8)
    np.testing.assert_allclose(arrays["mc_returns"], expected, rtol=1e-5, atol=1e-5)
    assert offline_extra_arrays(cql, cql.Config(), dataset, normalizer) == {}  # CQL declares no extra field


def _batch(mc_returns=None, n=32, seed=0):
    rng = np.random.default_rng(seed)
    return Batch(
        observations=jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
        actions=jnp.asarray(rng.uniform(-0.9, 0.9, size=(n, 2)), jnp.float32),
        rewards=jnp.asarray(rng.normal(size=n), jnp.float32),
        next_observations=jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
        dones=jnp.zeros(n, jnp.float32),
        mc_returns=None if mc_returns is None else jnp.full(n, mc_returns, jnp.float32),
    )


def test_calibration_bounds_policy_q_values_from_below():
    q = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 4)), jnp.float32)
    bounds = jnp.asarray([-10.0, 0.0, 0.5, 10.0])
    calibrated = calql.calibrate(q, bounds)
    assert np.all(np.asarray(calibrated) >= np.asarray(bounds)[None, None, :])
    np.testing.assert_array_equal(np.asarray(calibrated[..., 0]), np.asarray(q[..., 0]))  # far below: untouched
    assert np.all(np.asarray(calibrated[..., 3]) == 10.0)


def test_penalty_policy_terms_never_go_below_the_mc_return():
    """With a bound far above every Q, the logsumexp of the penalty sits at least at the bound
    (minus the policy samples' log-density), while CQL's does not; without bounds Cal-QL is CQL."""
    config = calql.Config(hidden_dims=(8,), num_sampled_actions=3)
    state = init_state(calql, jax.random.PRNGKey(0), Spec(3, 2), config)
    update = jax.jit(calql.update, static_argnums=2)
    _, bounded = update(state, _batch(mc_returns=1_000.0), config)
    _, unbounded = update(state, _batch(mc_returns=-np.inf), config)
    _, plain = jax.jit(cql.update, static_argnums=2)(state, _batch(), config)
    assert float(bounded["bound_rate"]) == 1.0 and float(unbounded["bound_rate"]) == 0.0
    # gap = temp * logsumexp(...) - Q(data) >= 1000 - max log pi - max Q(data); Q is near 0 at init.
    assert float(bounded["cql_gap"]) > 900.0
    assert abs(float(unbounded["cql_gap"])) < 50.0
    for name in ("cql_gap", "critic_loss", "actor_loss", "q_data_mean"):
        assert float(unbounded[name]) == pytest.approx(float(plain[name]), rel=1e-5, abs=1e-5), name


def test_engine_fills_mc_returns_offline_and_when_an_online_episode_ends(tmp_path):
    dataset = collect_episodes("Pendulum-v1", uniform_random, num_episodes=3, seed=0, name="pendulum-random")
    config = calql.Config(hidden_dims=(8,), batch_size=16, num_sampled_actions=2, discount=0.9)
    result = train_with_prior_data(calql, config, dataset, FinetuneConfig(online_steps=250, warmup_steps=250, eval_every=0,
                                                                          eval_episodes=1), tmp_path / "run", progress=False)
    expected_offline = returns_to_go(dataset.rewards, dataset.episode_starts, dataset.terminals, 0.9)
    np.testing.assert_allclose(np.asarray(result.offline_data["mc_returns"]), expected_offline, rtol=1e-6)
    mc = result.buffer["mc_returns"]
    first_episode = returns_to_go(result.buffer["rewards"][:200], np.array([0]), np.zeros(200, bool), 0.9)
    np.testing.assert_allclose(mc[:200], first_episode, rtol=1e-5)  # the episode ended by timeout at row 199
    assert np.all(np.isneginf(mc[200:]))  # the running episode has no return yet: no bound
    assert json.loads((tmp_path / "run/summary.json").read_text())["status"] == "finished"
