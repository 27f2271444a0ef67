"""The offline engine: run directory, checkpoints, loaded policies, data transforms, failures."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl import load_policy
from offrl.algos import ALGORITHMS, get_algorithm
from offrl.data.transforms import fit_normalizer, training_arrays
from offrl.errors import ConfigError
from reliability_helpers import small_run_dataset
from small_configs import small_config
from offrl.train.fused import make_fused_update, sample_batch
from offrl.train.offline import TrainConfig, train_offline
from offrl.types import Spec
from offrl.train.initial_state import init_state

from dataset_helpers import make_random_dataset

SHORT = TrainConfig(steps=200, eval_every=100, log_every=25, checkpoint_every=100, eval_episodes=2, seed=3)


def small(algo_name):
    algo = get_algorithm(algo_name)
    return algo, small_config(algo)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_short_run_writes_a_complete_run_directory(name, tmp_path):
    """Every algorithm through the engine. The data, config and chunk are those of the
    reliability tests' `small_algorithm`, so the compiled programs come from the suite's cache."""
    algo, config = small(name)
    dataset = small_run_dataset()
    result = train_offline(algo, config, dataset, SHORT, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    saved = json.loads((run / "config.json").read_text())
    assert saved["algorithm"] == name
    assert saved["algorithm_config"]["hidden_dims"] == [32, 32]
    assert saved["train"]["steps"] == 200 and saved["env_id"] == "Pendulum-v1"
    assert saved["dataset_metadata"]["ref_min_score"] == dataset.metadata.ref_min_score

    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(25, 201, 25))
    # NaN marks a quantity an algorithm did not compute in a chunk (e.g. SPOT's actor during VAE
    # pretraining); infinities never appear, and every line has finite losses.
    assert not any(np.isinf(value) for m in metrics for value in m.values())
    assert all(any(np.isfinite(v) for k, v in m.items() if k.endswith("loss")) for m in metrics)
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [100, 200]
    assert all(len(e["returns"]) == 2 and "normalized_score" in e for e in evals)

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["final_step"] == 200
    assert summary["final_normalized_score"] == pytest.approx(evals[-1]["normalized_score"])
    assert summary["best_normalized_score"] == pytest.approx(max(e["normalized_score"] for e in evals))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000000100.msgpack", "step_000000200.msgpack"]
    assert result.summary == summary


def test_loaded_policy_matches_the_trained_one(pendulum_dataset, tmp_path):
    algo, config = small("td3bc")
    result = train_offline(algo, config, pendulum_dataset, SHORT, tmp_path / "run", progress=False)
    policy = load_policy(tmp_path / "run")
    observations = pendulum_dataset.observations[:17]
    np.testing.assert_allclose(policy(observations), result.policy(observations), rtol=1e-6, atol=1e-6)
    single = policy(observations[0])
    assert single.shape == (1,) and np.all(np.abs(single) <= 2.0)
    # Actions come back in the env's bounds [-2, 2], not the algorithm's [-1, 1].
    wide = policy(np.array([[1.0, 0.0, 8.0]] * 4, np.float32) * 50)
    assert np.all(np.abs(wide) <= 2.0 + 1e-6)


def test_same_seed_gives_identical_metrics(pendulum_dataset, tmp_path):
    algo, config = small("iql")
    short = TrainConfig(steps=100, eval_every=0, log_every=50, eval_episodes=1, seed=7)
    train_offline(algo, config, pendulum_dataset, short, tmp_path / "a", progress=False)
    train_offline(algo, config, pendulum_dataset, short, tmp_path / "b", progress=False)
    strip = lambda path: [{k: v for k, v in json.loads(line).items() if k != "updates_per_second"}
                          for line in path.read_text().splitlines()]
    assert strip(tmp_path / "a" / "metrics.jsonl") == strip(tmp_path / "b" / "metrics.jsonl")


def test_timeouts_bootstrap_and_terminals_do_not():
    dataset = make_random_dataset([5, 4, 6], ends=["terminal", "timeout", "terminal"])
    arrays = training_arrays(dataset, fit_normalizer(dataset, True, False))
    np.testing.assert_array_equal(arrays["dones"], dataset.terminals.astype(np.float32))
    assert arrays["dones"][4] == 1.0 and arrays["dones"][8] == 0.0 and dataset.timeouts[8]


def test_sampled_batches_keep_each_transition_together():
    n = 1000
    observations = np.arange(n, dtype=np.float32)[:, None]
    data = {
        "observations": jnp.asarray(observations),
        "actions": jnp.asarray(observations * 2),
        "rewards": jnp.asarray(observations[:, 0] * 3),
        "next_observations": jnp.asarray(observations + 0.5),
        "dones": jnp.asarray((np.arange(n) % 7 == 0).astype(np.float32)),
    }
    batch = sample_batch(data, jax.random.PRNGKey(0), 512, size=100)
    index = np.asarray(batch.observations[:, 0])
    assert index.max() < 100 and len(np.unique(index)) > 50
    np.testing.assert_array_equal(batch.actions[:, 0], index * 2)
    np.testing.assert_array_equal(batch.rewards, index * 3)
    np.testing.assert_array_equal(batch.next_observations[:, 0], index + 0.5)
    np.testing.assert_array_equal(batch.dones, (index % 7 == 0).astype(np.float32))


def test_normalizer_maps_env_bounds_to_unit_box_and_back(pendulum_dataset):
    normalizer = fit_normalizer(pendulum_dataset, True, True)
    scaled = normalizer.scale_actions(pendulum_dataset.actions)
    assert scaled.min() >= -1 - 1e-6 and scaled.max() <= 1 + 1e-6 and scaled.min() < -0.9
    np.testing.assert_allclose(normalizer.unscale_actions(scaled), pendulum_dataset.actions, atol=1e-5)
    normalized = normalizer.normalize_observations(pendulum_dataset.observations)
    np.testing.assert_allclose(normalized.mean(axis=0), 0.0, atol=1e-4)
    returns = pendulum_dataset.episode_returns()
    assert normalizer.reward_scale == pytest.approx(1000.0 / (returns.max() - returns.min()), rel=1e-5)


def test_reward_multiplier_and_offset_reach_every_reward_the_algorithm_sees(pendulum_dataset):
    """--reward-multiplier / --reward-offset (CORL's reward_scale / reward_bias; presets set AntMaze's
    r - 1): r * m * (IQL's return-range scale) + o in the training rows, in Cal-QL's Monte-Carlo
    returns, and saved with the normaliser (a run saved without the offset loads with 0)."""
    from offrl.data.transforms import Normalizer
    from offrl.train.offline import prepare

    iql = get_algorithm("iql")
    train = TrainConfig(reward_multiplier=2.0, reward_offset=-1.0)
    normalizer, data = prepare(iql, small_config(iql), pendulum_dataset, "Pendulum-v1", train)
    range_scale = fit_normalizer(pendulum_dataset, True, True).reward_scale
    assert normalizer.reward_scale == pytest.approx(2.0 * range_scale) and normalizer.reward_bias == -1.0
    np.testing.assert_allclose(np.asarray(data["rewards"]), pendulum_dataset.rewards * 2.0 * range_scale - 1.0, rtol=1e-5)
    calql = get_algorithm("calql")
    _, calql_data = prepare(calql, small_config(calql), pendulum_dataset, "Pendulum-v1", TrainConfig(reward_offset=-1.0))
    first = pendulum_dataset.episode_lengths[0]
    expected = sum(small_config(calql).discount ** t * (pendulum_dataset.rewards[t] - 1.0) for t in range(first))
    assert float(calql_data["mc_returns"][0]) == pytest.approx(expected, rel=1e-4)
    saved = normalizer.to_json()
    assert Normalizer.from_json(saved).reward_bias == -1.0
    assert Normalizer.from_json({k: v for k, v in saved.items() if k != "reward_bias"}).reward_bias == 0.0
    for bad in (["--reward-multiplier", "0"], ["--reward-offset", "nan"]):
        with pytest.raises(ConfigError, match=bad[0]):
            TrainConfig(**{bad[0][2:].replace("-", "_"): float(bad[1])}).validate()


def test_td3_bc_delayed_actor_metrics_are_averaged_over_updates_that_ran():
    algo, config = small("td3bc")
    state = init_state(algo, jax.random.PRNGKey(0), Spec(3, 1), config)
    rng = np.random.default_rng(0)
    data = {
        "observations": jnp.asarray(rng.normal(size=(300, 3)), jnp.float32),
        "actions": jnp.asarray(rng.uniform(-1, 1, size=(300, 1)), jnp.float32),
        "rewards": jnp.asarray(rng.normal(size=300), jnp.float32),
        "next_observations": jnp.asarray(rng.normal(size=(300, 3)), jnp.float32),
        "dones": jnp.zeros(300, jnp.float32),
    }
    state, metrics = jax.jit(make_fused_update(algo, config, 10))(state, data, jax.random.PRNGKey(1))
    assert int(state.step) == 10
    assert all(np.isfinite(float(value)) for value in metrics.values())


def test_bad_config_is_refused_before_a_run_directory_exists(pendulum_dataset, tmp_path):
    algo = get_algorithm("bc")
    with pytest.raises(ConfigError, match="--batch-size"):
        train_offline(algo, algo.Config(batch_size=0), pendulum_dataset, SHORT, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="--steps"):
        train_offline(algo, algo.Config(), pendulum_dataset, TrainConfig(steps=0), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="NoSuchEnv-v0"):
        train_offline(algo, algo.Config(), pendulum_dataset, TrainConfig(env_id="NoSuchEnv-v0"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_existing_run_directory_is_not_overwritten(pendulum_dataset, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "precious.txt").write_text("keep me")
    algo, config = small("bc")
    with pytest.raises(ConfigError, match="already exists"):
        train_offline(algo, config, pendulum_dataset, SHORT, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "precious.txt").read_text() == "keep me"


def test_a_run_that_crashes_is_marked_failed_not_finished(pendulum_dataset, tmp_path, monkeypatch):
    import offrl.train.offline as engine

    def broken_evaluation(*args, **kwargs):
        raise RuntimeError("simulated crash during evaluation")

    monkeypatch.setattr(engine, "evaluate_policy", broken_evaluation)
    algo, config = small("bc")
    with pytest.raises(RuntimeError):
        train_offline(algo, config, pendulum_dataset, SHORT, tmp_path / "run", progress=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "simulated crash" in summary["error"]


def test_percent_bc_trains_on_the_top_episodes_only(pendulum_dataset):
    from offrl.train.offline import prepare

    algo = get_algorithm("percent_bc")
    _, device_data = prepare(algo, algo.Config(top_fraction=0.25), pendulum_dataset, "Pendulum-v1")
    returns = pendulum_dataset.episode_returns()
    best = np.argsort(returns)[-10:]  # 25% of 40 episodes
    assert device_data["rewards"].shape[0] == int(pendulum_dataset.episode_lengths[best].sum())
    _, all_data = prepare(get_algorithm("bc"), get_algorithm("bc").Config(), pendulum_dataset, "Pendulum-v1")
    assert all_data["rewards"].shape[0] == pendulum_dataset.num_transitions


def test_load_policy_skips_a_corrupted_latest_checkpoint(pendulum_dataset, tmp_path):
    algo, config = small("bc")
    result = train_offline(algo, config, pendulum_dataset, SHORT, tmp_path / "run", progress=False)
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("step_*.msgpack"))
    observations = pendulum_dataset.observations[:5]
    first_good = load_policy(tmp_path / "run", checkpoint=checkpoints[0])(observations)
    latest = checkpoints[-1]
    latest.write_bytes(latest.read_bytes()[: len(latest.read_bytes()) // 2])  # a torn write
    with pytest.warns(UserWarning, match=latest.name):
        policy = load_policy(tmp_path / "run")
    np.testing.assert_allclose(policy(observations), first_good)
    assert not np.allclose(first_good, result.policy(observations))
