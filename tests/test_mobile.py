"""MOBILE (offrl/algos/model_based/mobile.py): the Bellman-inconsistency penalty against a hand
computation, dataset rows never penalised, the penalty larger off the data, the engine's hook
(offrl/train/model_rollouts.py) with the penalty switched off, the reference's update mechanics,
presets and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos import mobile, sac
from offrl.cli import main
from offrl.data.collect import collect_episodes
from offrl.data.d4rl_io import write_npz
from offrl.data.transforms import fit_normalizer
from offrl.errors import ConfigError
from offrl.models.ensemble import DynamicsEnsemble, DynamicsModel, sample_elite_next_observations
from offrl.models.training import DynamicsConfig, train_dynamics
from offrl.train.fused import sample_batch
from offrl.train.initial_state import init_state
from offrl.train.model_rollouts import model_based_update, next_observation_sampler, penalise_model_rows
from offrl.train.presets import load_presets
from offrl.types import Batch, Spec
from reliability_helpers import pendulum_shaped_dataset
from scripted import mixed_quality


def tiny_model() -> DynamicsModel:
    """Three members of one hidden layer of 8 at a fixed initialisation; elites 2 and 0."""
    network = DynamicsEnsemble(observation_dim=3, hidden_dims=(8,), num_models=3)
    params = network.init(jax.random.PRNGKey(7), jnp.zeros((1, 4)))
    return DynamicsModel(params=params, input_mean=jnp.array([0.1, -0.2, 0.3, 0.0]), input_std=jnp.array([1.0, 2.0, 0.5, 1.0]),
                         elites=jnp.array([2, 0]), observation_dim=3, hidden_dims=(8,), num_models=3)


def mobile_state(config, seed=0):
    """A MOBILE state whose target critics differ from the online ones, so a target visibly uses them."""
    state = init_state(mobile, jax.random.PRNGKey(seed), Spec(3, 1), config)
    return state.replace(critic_target=jax.jit(lambda tree: jax.tree.map(lambda x: 1.5 * x + 0.1, tree))(state.critic_target))


def test_penalty_is_beta_times_the_spread_over_elites_of_the_sampled_next_state_target_value():
    """Hand computation of mobile.py's compute_lcb on a tiny fixed model, through the engine's hook
    with an observation normaliser: next states s'_{n,e} ~ N(mu_e, sigma_e) for each elite e
    (raw units, then normalised), a' ~ pi(.|s'), Q' = min_j Q'_j(s', a') with the target critics,
    penalty = beta * std_e(mean_n Q') (torch's unbiased std), subtracted from the model rows'
    rewards only. Not the std over all N x E samples (the paper's wording), which differs."""
    config = mobile.Config(hidden_dims=(16, 16), penalty_coef=2.0, num_samples=6)
    state, model = mobile_state(config), tiny_model()
    obs_mean, obs_std = jnp.array([0.5, -1.0, 2.0]), jnp.array([2.0, 0.5, 1.0])
    data = {"model_rollouts": {"dynamics": model, "observation_mean": obs_mean, "observation_std": obs_std}}
    rng = np.random.default_rng(0)
    real_size, n = 3, 8
    batch = Batch(jnp.asarray(rng.normal(size=(n, 3)), jnp.float32), jnp.asarray(rng.uniform(-1, 1, (n, 1)), jnp.float32),
                  jnp.asarray(rng.normal(size=n), jnp.float32), jnp.asarray(rng.normal(size=(n, 3)), jnp.float32), jnp.zeros(n))
    key = jax.random.PRNGKey(3)

    @jax.jit  # one compiled program: the engine's hook and the hand computation's target values
    def hook_and_by_hand(state, batch):
        sample_key, action_key = jax.random.split(key)
        raw = batch.observations[real_size:] * obs_std + obs_mean
        mean, std = model.predict(raw, batch.actions[real_size:])
        mean, std = mean[model.elites, :, :-1], std[model.elites, :, :-1]
        noise = jax.random.normal(sample_key, (config.num_samples, *mean.shape))
        next_observations = ((mean + std * noise) - obs_mean) / obs_std  # (N, E, rows, 3)
        flat = next_observations.reshape(-1, 3)
        next_actions, _ = sac.sample_actions(state.actor, state.actor.params, flat, action_key)
        target_values = state.critic.apply_fn(state.critic_target, flat, next_actions).min(axis=0).reshape(config.num_samples, 2, -1)
        return penalise_model_rows(mobile.model_reward_penalty, state, batch, real_size, data, key, config), target_values

    (penalised, penalty), target_values = hook_and_by_hand(state, batch)
    target_values = np.asarray(target_values, np.float64)
    expected = 2.0 * target_values.mean(axis=0).std(axis=0, ddof=1)
    assert expected.min() > 1e-3  # the elites disagree: the check means something
    np.testing.assert_allclose(np.asarray(penalty), expected, rtol=1e-4)
    np.testing.assert_array_equal(np.asarray(penalised.rewards[:real_size]), np.asarray(batch.rewards[:real_size]))
    np.testing.assert_allclose(np.asarray(penalised.rewards[real_size:]), np.asarray(batch.rewards[real_size:]) - expected, rtol=1e-5)
    all_samples = 2.0 * target_values.reshape(-1, n - real_size).std(axis=0, ddof=1)
    assert not np.allclose(all_samples, expected, rtol=0.05)


def test_next_states_are_drawn_from_every_elites_gaussian():
    model = tiny_model()
    observations, actions = jnp.ones((2, 3)), jnp.full((2, 1), 0.5)
    samples = np.asarray(jax.jit(lambda k: sample_elite_next_observations(model, observations, actions, k, 20_000))(jax.random.PRNGKey(0)))
    mean, std = (np.asarray(x)[np.array([2, 0]), :, :-1] for x in model.predict(observations, actions))
    assert samples.shape == (20_000, 2, 2, 3)  # (samples, elites in their order, rows, observation)
    np.testing.assert_allclose(samples.mean(axis=0), mean, atol=4 * std.max() / np.sqrt(20_000))
    np.testing.assert_allclose(samples.std(axis=0), std, rtol=0.03)


@pytest.fixture(scope="module")
def pendulum_model():
    """A 5-member ensemble (3 elites) trained on 12 Pendulum-v1 episodes with 80% random actions
    (tests/test_model_based.py's data and sizes, 30 epochs), and the data's scaled actions."""
    data = collect_episodes("Pendulum-v1", mixed_quality(0.8), num_episodes=12, seed=3, name="pendulum-model-v0")
    actions = fit_normalizer(data, False, False).scale_actions(data.actions).astype(np.float32)
    config = DynamicsConfig(num_models=5, num_elites=3, hidden_dims=(64, 64), weight_decay=(2.5e-5, 5e-5, 1e-4),
                            max_epochs=30, batch_size=64)
    model = train_dynamics(data.observations, actions, data.rewards, data.next_observations, config).model
    return data, actions, model


def model_data(model):
    return {"dynamics": model, "observation_mean": jnp.zeros(3, jnp.float32), "observation_std": jnp.ones(3, jnp.float32),
            "termination_low": jnp.full(3, -jnp.inf), "termination_high": jnp.full(3, jnp.inf), "reward_scale": jnp.float32(1.0),
            "reward_bias": jnp.float32(0.0)}


def test_penalty_is_larger_for_out_of_distribution_actions(pendulum_model):
    """At the data's own (state, action) pairs the elites agree, so next states and their target
    values do too; at actions far outside the data (+-4 in the scaled [-1, 1] units) they do not.
    The agent is untrained (32 x 32): any fixed critic turns the elites' disagreement about s' into
    a spread of target values. Measured (the fixture's model, 300 rows): mean penalty 0.023 at the
    data's actions, 0.037 at +-2, 0.158 at +-4."""
    data, actions, model = pendulum_model
    config = mobile.Config(hidden_dims=(32, 32))
    state = init_state(mobile, jax.random.PRNGKey(0), Spec(3, 1), config)
    observations = jnp.asarray(data.observations[:300])
    penalty = jax.jit(lambda a: mobile.model_reward_penalty(state, observations, a, next_observation_sampler(model_data(model)),
                                                            jax.random.PRNGKey(1), config))
    in_data = float(penalty(jnp.asarray(actions[:300])).mean())
    outside = float(penalty(jnp.where(jnp.asarray(actions[:300]) >= 0, 4.0, -4.0)).mean())
    assert outside > 3 * in_data > 0, (in_data, outside)


def test_the_engine_penalises_model_rows_and_beta_zero_gives_different_targets():
    """One engine update (a rollout of the tiny model, a mixed batch, the hook, MOBILE's update)
    from the same state and key: with beta = 0 the model rows keep their rewards, so the critic's
    targets are higher by the penalty's share (beta = 1: mean penalty over the model rows times
    their share of the batch)."""
    rng = np.random.default_rng(1)
    arrays = {"observations": jnp.asarray(rng.normal(size=(200, 3)), jnp.float32),
              "actions": jnp.asarray(rng.uniform(-1, 1, (200, 1)), jnp.float32), "rewards": jnp.asarray(rng.normal(size=200), jnp.float32),
              "next_observations": jnp.asarray(rng.normal(size=(200, 3)), jnp.float32), "dones": jnp.zeros(200, jnp.float32),
              "model_rollouts": model_data(tiny_model())}
    configs = {beta: mobile.Config(hidden_dims=(16, 16), batch_size=64, real_ratio=0.25, horizon=2, rollout_batch=64,
                                   model_buffer_capacity=256, q_target_floor=None, penalty_coef=beta) for beta in (1.0, 0.0)}
    state = mobile_state(configs[1.0])  # the same initial state for both

    @jax.jit  # both updates in one compiled program
    def one_update_each(state, key):
        return {beta: model_based_update(mobile, config, sample_batch)(state, key, arrays, None)[1] for beta, config in configs.items()}

    results = one_update_each(state, jax.random.PRNGKey(5))
    penalty = float(results[1.0]["model_reward_penalty"])
    assert penalty > 0 and float(results[0.0]["model_reward_penalty"]) == 0.0
    gap = float(results[0.0]["target_q_mean"] - results[1.0]["target_q_mean"])
    assert gap == pytest.approx(penalty * 48 / 64, rel=1e-3)


def test_update_follows_the_reference_order_floor_and_temperature_clamp():
    """mobile.py learn: the actor steps against the critic after this update's critic step (its
    result depends on the critic's rate); the target is floored at 0 (rewards in [-1, -0.5] on
    terminal rows, whose unfloored target is the reward, give targets of exactly 0); the
    temperature used is min(exp(log alpha), 1)."""
    n = 32
    rng = np.random.default_rng(0)
    batch = Batch(jnp.asarray(rng.normal(size=(n, 3)), jnp.float32), jnp.asarray(rng.uniform(-1, 1, (n, 1)), jnp.float32),
                  -jnp.asarray(rng.uniform(0.5, 1.0, n), jnp.float32), jnp.asarray(rng.normal(size=(n, 3)), jnp.float32), jnp.ones(n))
    configs = {rate: mobile.Config(hidden_dims=(16, 16), init_temperature=5.0, critic_learning_rate=rate) for rate in (1e-6, 1.0)}
    states = {rate: mobile_state(config) for rate, config in configs.items()}  # same arrays, each with its optimiser
    results = jax.jit(lambda states: {rate: mobile.update(states[rate], batch, config) for rate, config in configs.items()})(states)
    (slow, slow_metrics), (fast, _) = results[1e-6], results[1.0]
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(slow.actor.params), jax.tree.leaves(fast.actor.params)))
    assert float(slow_metrics["target_q_mean"]) == 0.0
    assert float(slow_metrics["alpha"]) == 1.0  # log alpha = log 5, clamped


def test_presets_hold_the_authors_per_dataset_configs():
    """yihaosun1124/mobile configs/gym/*.py at 4882dce878f0792a337c0a95c27f4abf7e926101."""
    presets = load_presets("mobile")
    assert len(presets) == 12  # random, medium, medium-replay, medium-expert for three envs
    hopper = presets["hopper-medium-v2"].config
    assert (hopper["horizon"], hopper["penalty_coef"], hopper["auto_temperature"], hopper["init_temperature"]) == (5, 1.5, False, 0.2)
    walker = presets["walker2d-medium-replay-v2"].config
    assert (walker["horizon"], walker["penalty_coef"], walker["model_buffer_capacity"]) == (1, 0.5, 250_000)
    cheetah = presets["halfcheetah-medium-expert-v2"].config
    assert (cheetah["penalty_coef"], cheetah["real_ratio"], cheetah["model_buffer_capacity"]) == (1.0, 0.5, 1_250_000)
    assert presets["walker2d-medium-v2"].config["dynamics_max_epochs"] == 30
    assert all(preset.train["steps"] == 3_000_000 for preset in presets.values())


@pytest.mark.parametrize("flag, value, needle", [("--penalty-coef", "-0.5", "--penalty-coef is -0.5"),
                                                 ("--num-samples", "0", "--num-samples is 0")])
def test_bad_mobile_settings_are_one_sentence_and_write_nothing(tmp_path, capsys, flag, value, needle):
    with pytest.raises(ConfigError):
        mobile.Config(**{flag[2:].replace("-", "_"): float(value) if "." in value else int(value)})
    dataset = write_npz(pendulum_shaped_dataset(episodes=2), tmp_path / "data.npz")
    code = main(["train", "mobile", "--dataset", str(dataset), "--run-dir", str(tmp_path / "run"), "--steps", "10", flag, value])
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("offrl: error:") and needle in lines[0], lines
    assert not (tmp_path / "run").exists()
