"""COptiDICE (offrl/algos/safe/coptidice.py): the multiplier and the ratios w on a one-state
problem where the constraint binds or not, the engine's initial-state weights, and data without
costs refused. Its learning test is in tests/test_safe.py."""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos.safe import coptidice
from offrl.cli import main
from offrl.data.d4rl_io import write_npz
from offrl.data.transforms import fit_normalizer
from offrl.errors import ConfigError
from offrl.train.extra_fields import offline_extra_arrays, online_row_values
from offrl.train.finetune import FinetuneConfig, train_with_prior_data
from offrl.train.offline import TrainConfig, train_offline
from offrl.types import Batch, Spec
from dataset_helpers import make_random_dataset
from small_configs import small_config

# One state that loops onto itself (never done) and starts every episode; two kinds of rows:
# even rows r = 0, c = 0 (cheap), odd rows r = 1, c = 1 (rewarding but costly). T = 1 and
# target cost 10 make the limit on the per-step cost estimate 10 (1 - 0.99) = 0.1, which binds:
# the data's own cost per step is 0.5. Unscaled rewards; λ's and ν's steps enlarged so that 300
# updates show the trend (the references' 1e-4 would take thousands).
N, UPDATES = 64, 300
BINDING = dataclasses.replace(small_config(coptidice), reward_scale=1.0, target_cost=10.0, max_episode_steps=1,
                              critic_learning_rate=1e-3, scalar_learning_rate=1e-2)
COSTLY = (jnp.arange(N) % 2).astype(jnp.float32)


def one_state_batch(costs):
    observations = jnp.zeros((N, 3))
    return Batch(observations=observations, actions=jnp.zeros((N, 1)), rewards=COSTLY, next_observations=observations,
                 dones=jnp.zeros(N), costs=costs, initial_state_weights=jnp.ones(N))


@partial(jax.jit, static_argnums=0)
def trained(config, costs):
    """(final multiplier, last cost estimate, share of w on the cheap rows) after UPDATES updates
    (one compile per config)."""
    batch = one_state_batch(costs)
    state, metrics = jax.lax.scan(lambda s, _: coptidice.update(s, batch, config),
                                  coptidice.init(jax.random.PRNGKey(0), Spec(3, 1), config), None, length=UPDATES)
    weights = coptidice.ratios(state, state.critics.params, batch, coptidice.multiplier(state, config), config)[1]
    return metrics["multiplier"][-1], metrics["cost_estimate"][-1], jnp.sum(weights * (1.0 - COSTLY)) / weights.sum()


def test_the_multiplier_rises_while_the_cost_is_above_the_limit_and_moves_w_to_the_cheap_rows():
    """λ starts at softplus(1) = 1.31. Binding (costs as above): λ 1.87 after 300 updates, the
    cost estimate at the limit (0.1001), 85% of w on the cheap rows. No costs in the data: λ falls
    to 0.25 and w follows the reward (25% on the cheap rows). Broken, λ frozen at 0
    (constrained=False, not run here: one more compile): 25% on the cheap rows with the costs and
    a cost estimate of 2.1, failing the binding case's assertions."""
    assert coptidice.cost_limit(BINDING) == pytest.approx(0.1)
    multiplier, cost_estimate, cheap_share = map(float, trained(BINDING, COSTLY))
    assert multiplier > 1.6 and cheap_share > 0.7, (multiplier, cheap_share)
    assert cost_estimate < 0.11, cost_estimate
    multiplier, _, free_share = map(float, trained(BINDING, jnp.zeros(N)))
    assert multiplier < 0.6 and free_share < 0.4, (multiplier, free_share)


def test_initial_state_weights_mark_each_episodes_first_row_by_one_over_its_share():
    dataset = make_random_dataset([6, 5, 9], obs_dim=3, action_dim=1).replace(costs=np.zeros(20, np.float32))
    arrays = offline_extra_arrays(coptidice, coptidice.Config(), dataset, fit_normalizer(dataset, False, False))
    expected = np.zeros(20, np.float32)
    expected[[0, 6, 11]] = 20 / 3  # the mean over rows of weight * f(s) is the mean of f over the 3 first states
    np.testing.assert_allclose(arrays["initial_state_weights"], expected, rtol=1e-6)
    np.testing.assert_array_equal(arrays["costs"], dataset.costs)
    with pytest.raises(ConfigError, match="fixed dataset only"):
        online_row_values("initial_state_weights", {"rewards": np.zeros(2)})


def test_online_fine_tuning_is_refused_before_its_run_directory_exists(tmp_path):
    dataset = make_random_dataset([6, 5], obs_dim=3, action_dim=1).replace(costs=np.zeros(11, np.float32))
    with pytest.raises(ConfigError, match="'coptidice' trains on initial_state_weights, defined for a fixed dataset only"):
        train_with_prior_data(coptidice, small_config(coptidice), dataset, FinetuneConfig(online_steps=10, env_id="Pendulum-v1"),
                              tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_bad_settings_and_data_without_costs_are_refused_in_one_sentence(tmp_path, capsys):
    for changes, flag in (({"f_divergence": "tv"}, "--f-divergence"), ({"cost_limit_units": "episodes"}, "--cost-limit-units"),
                          ({"discount": 1.0}, "--discount"), ({"alpha": 0.0}, "--alpha")):
        with pytest.raises(ConfigError, match=flag):
            coptidice.Config(**changes)
    data = str(write_npz(make_random_dataset([6, 5]), tmp_path / "plain.npz"))
    code = main(["train", "coptidice", "--dataset", data, "--run-dir", str(tmp_path / "run"), "--target-cost", "5",
                 "--steps", "10", "--no-progress"])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "has no per-step costs" in lines[0] and "coptidice" in lines[0], err
    assert not (tmp_path / "run").exists()


def test_a_weighted_sampler_is_refused_before_its_run_directory_exists(tmp_path):
    """The 1/p initial-state weights average nu(s0) only when rows are drawn uniformly."""
    dataset = make_random_dataset([6, 5], obs_dim=3, action_dim=1).replace(costs=np.zeros(11, np.float32))
    train = TrainConfig(steps=10, eval_every=0, sampler="return-weighted")
    with pytest.raises(ConfigError, match=r"^--sampler return-weighted reweights the rows that coptidice's initial-state terms"):
        train_offline(coptidice, small_config(coptidice), dataset, train, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
