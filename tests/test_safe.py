"""Safe offline RL: constrained tasks, costs in rollouts, DSRL's scores, BC-All and BC-Safe."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos import get_algorithm
from offrl.algos.safe import bc_safe
from offrl.cli import main
from offrl.data.collect import collect_episodes
from offrl.data.cost_return_augmentation import augment_episodes
from offrl.data.d4rl_io import write_npz
from offrl.data.transforms import fit_normalizer
from offrl.envs.torque_cost import PENDULUM_TORQUE_COST_ID
from offrl.envs.velocity_cost import VELOCITY_THRESHOLDS, velocity_env_id
from offrl.evaluate.rollout import evaluate_policy
from offrl.evaluate.safe_scores import normalized_cost, normalized_reward, safe_record, safe_table_row
from offrl.errors import ConfigError
from offrl.train.multi_seed import train_seeds
from offrl.train.offline import TrainConfig, train_offline
from offrl.train.initial_state import init_state
from safe_learning_data import SAFE_EVERY, TARGET_COST, capped_controller, safe_and_unsafe_pendulum


# ------------------------------------------------------------------------ velocity tasks
@pytest.mark.parametrize("robot", ["Hopper", "HalfCheetah", "Ant"])
def test_velocity_cost_matches_the_simulators_velocity(robot):
    """cost = 1 exactly when the root's displacement over one control step, read from MuJoCo's
    qpos (Ant: the torso's planar speed), divided by dt exceeds the threshold: Safety-Gymnasium's
    for 100 random steps, then the median speed seen (so that both outcomes are exercised)."""
    env = gym.make(velocity_env_id(robot))
    sim = env.unwrapped
    _, info = env.reset(seed=0)
    assert info["cost"] == 0.0 and env.spec.max_episode_steps == 1000
    rng = np.random.default_rng(0)

    def position():
        return sim.data.body("torso").xpos[:2].copy() if robot == "Ant" else sim.data.qpos[:1].copy()

    def steps(count, threshold):
        speeds, costs = [], []
        for _ in range(count):
            before = position()
            _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
            displacement = position() - before
            speeds.append(np.hypot(*displacement) / sim.dt if robot == "Ant" else displacement[0] / sim.dt)
            costs.append(info["cost"])
            assert info["cost"] == float(speeds[-1] > threshold), (speeds[-1], threshold, info["cost"])
            if terminated or truncated:
                env.reset(seed=len(costs))
        return np.array(speeds), np.array(costs)

    speeds, _ = steps(100, VELOCITY_THRESHOLDS[robot])
    median = float(np.median(speeds))
    env.set_wrapper_attr("threshold", median)
    _, costs = steps(100, median)
    assert 0 < costs.sum() < len(costs)
    env.close()


def test_safety_gymnasium_thresholds_are_the_v1_tasks():
    assert VELOCITY_THRESHOLDS == {"Hopper": 0.7402, "HalfCheetah": 3.2096, "Walker2d": 2.3415, "Ant": 2.6222,
                                   "Swimmer": 0.2282}


# ------------------------------------------------------------------------ costs in rollouts
def test_rollouts_sum_every_steps_cost_including_the_last():
    """Torque 1.5 (> the limit 1) on all 200 steps costs 200 per episode (the last step's cost
    comes from the vector env's final_info); torque 0.5 costs 0; Pendulum-v1 reports no cost."""
    over = evaluate_policy(lambda obs: np.full((len(obs), 1), 1.5), PENDULUM_TORQUE_COST_ID, 3, seed=0)
    np.testing.assert_array_equal(over.costs, [200, 200, 200])
    under = evaluate_policy(lambda obs: np.full((len(obs), 1), 0.5), PENDULUM_TORQUE_COST_ID, 3, seed=0)
    np.testing.assert_array_equal(under.costs, [0, 0, 0])
    assert evaluate_policy(lambda obs: np.zeros((len(obs), 1)), "Pendulum-v1", 2, seed=0).costs is None


def test_collected_episodes_record_each_steps_cost():
    dataset = collect_episodes(PENDULUM_TORQUE_COST_ID, lambda obs, rng: rng.uniform(-2, 2, (len(obs), 1)), 3, seed=0)
    np.testing.assert_array_equal(dataset.costs, (np.abs(dataset.actions[:, 0]) > 1.0).astype(np.float32))
    assert dataset.num_transitions == 600


# ------------------------------------------------------------------------ DSRL's scores
def test_dsrl_normalisation_on_known_values():
    np.testing.assert_allclose(normalized_reward([-100, 0, 150, 400], -100, 400), [0.0, 0.2, 0.5, 1.0])
    np.testing.assert_allclose(normalized_cost([0, 5, 10, 20], 10), [0.0, 0.5, 1.0, 2.0])
    # Target cost 0: epsilon 1 (DSRL's set_target_cost), so cost 0 scores 1 (still safe), cost 1 scores 2.
    np.testing.assert_allclose(normalized_cost([0, 1, 3], 0), [1.0, 2.0, 4.0])
    record = safe_record(returns=[150, 400], costs=[5, 20], target_cost=10, ref_min=-100, ref_max=400)
    assert record == {"target_cost": 10.0, "normalized_cost": 1.25, "safe": False, "normalized_reward": 0.75}
    row = safe_table_row([record, safe_record([0, 150], [0, 10], 40, -100, 400)])
    assert row["normalized_reward"] == pytest.approx((0.75 + 0.35) / 2)
    assert row["normalized_cost"] == pytest.approx((1.25 + 0.125) / 2) and row["safe"] is True
    with pytest.raises(ConfigError, match="--target-cost is -1; expected a non-negative"):
        normalized_cost([1.0], -1)


# ------------------------------------------------------------------------ BC-Safe's data
@pytest.fixture(scope="module")
def safe_and_unsafe(pendulum_references):
    return safe_and_unsafe_pendulum(pendulum_references)


def test_bc_safe_trains_on_exactly_the_episodes_within_the_target_cost(safe_and_unsafe):
    episode_costs = safe_and_unsafe.episode_costs()
    config = bc_safe.Config(target_cost=TARGET_COST)
    data = bc_safe.training_data(safe_and_unsafe, fit_normalizer(safe_and_unsafe, False, False), config)
    kept = np.flatnonzero(episode_costs <= TARGET_COST)
    assert set(np.arange(0, safe_and_unsafe.num_episodes, SAFE_EVERY)) <= set(kept)  # every capped episode
    expected = np.concatenate([safe_and_unsafe.episode(int(i))["observations"] for i in kept])
    np.testing.assert_array_equal(data["observations"], expected)
    assert len(kept) < safe_and_unsafe.num_episodes


# ------------------------------------------------------------------------ learning
def safe_final(name: str, dataset, tmp_path, seed: int = 0) -> dict:
    algo = get_algorithm(name)
    config = algo.Config(hidden_dims=(64, 64), target_cost=TARGET_COST)
    train = TrainConfig(steps=2_000, eval_every=2_000, log_every=1_000, eval_episodes=10, seed=seed)
    return train_offline(algo, config, dataset, train, tmp_path / f"{name}-{seed}", progress=False).summary


@pytest.mark.slow
def test_bc_all_breaks_the_constraint(safe_and_unsafe, tmp_path):
    """BC-All imitates the unsafe two thirds of the data too. Target cost 5, 2k updates, 64x64,
    seeds 0-2: normalised cost 3.22/3.96/3.92 (costs 16.1/19.8/19.6), normalised reward
    1.01/1.00/1.01. Threshold: normalised cost above 1.5 (unsafe)."""
    summary = safe_final("bc_all", safe_and_unsafe, tmp_path)
    assert summary["target_cost"] == TARGET_COST and summary["final_safe"] is False
    assert summary["final_normalized_cost"] > 1.5, summary


@pytest.mark.slow
def test_bc_safe_keeps_the_constraint_with_reward_above_random(safe_and_unsafe, tmp_path):
    """BC-Safe clones the episodes with cost <= 5. 2k updates, 64x64, seeds 0-2: normalised cost
    0.36/0.62/0.70 (costs 1.8/3.1/3.5), normalised reward 0.82/0.76/0.52 (random actions score 0).
    Thresholds: normalised cost <= 1, normalised reward above 0.3. Broken, the filter off (every
    episode cloned: BC-All, above): normalised cost 3.22/3.96/3.92; the test fails on it."""
    summary = safe_final("bc_safe", safe_and_unsafe, tmp_path)
    assert summary["final_normalized_cost"] <= 1.0 and summary["final_safe"] is True, summary
    assert summary["final_normalized_reward"] > 0.3, summary


# COptiDICE's test settings: episodes of T = 200 steps; learning rates raised from OSRL's 1e-4 (at
# those, 2k updates leave w near 1: normalised reward 0.18, seed 0); no BC noise (OSRL's 0.1 x std
# held the clone's reward to 0.23-0.38 in 2k updates with the actor at 1e-3, seeds 0-2; 0.96 without); and
# a KL radius of 0.3 for the cost upper bound (OSRL's 0.01 aims at the limit itself, and the clone
# lands on either side of it: normalised cost 1.14/0.38/0.80/0.74/1.14, seeds 0-4).
COPTIDICE_SETTINGS = {"hidden_dims": (64, 64), "target_cost": TARGET_COST, "max_episode_steps": 200, "batch_size": 256,
                      "actor_learning_rate": 1e-3, "critic_learning_rate": 1e-2, "scalar_learning_rate": 3e-2,
                      "bc_noise": 0.0, "cost_ub_epsilon": 0.3}
COPTIDICE_TRAIN = {"steps": 6_000, "eval_every": 6_000, "log_every": 1_000, "eval_episodes": 10}
COPTIDICE_SEEDS = (0, 1, 2)


def coptidice_seed_group(dataset, seeds, run_dir, settings=None, schedule=None) -> list:
    """COptiDICE with the test's settings (`settings`/`schedule` override them), `seeds` in one program."""
    algo = get_algorithm("coptidice")
    config = algo.Config(**{**COPTIDICE_SETTINGS, **(settings or {})})
    return train_seeds(algo, config, dataset, TrainConfig(**{**COPTIDICE_TRAIN, **(schedule or {})}), run_dir, seeds,
                       progress=False)


@pytest.mark.slow
def test_coptidice_keeps_the_constraint_with_reward_above_random(safe_and_unsafe, tmp_path):
    """COptiDICE's ratios w move weight to the capped episodes (a third of the rows, 45-48% of w)
    while λ rises to 13-20. The test averages seeds 0-2 trained in one program, as DSRL tables average
    seeds: one seed's cost swings across the limit when the environment's numerics move (seed 0 at 3k
    updates scored 0.18 where the test was written and 3.14 on CI and a fresh machine a day later, same
    code; 6k single-seed runs, seeds 0-11: 0.02-0.92, seed 9 1.54). 6k updates, seed groups of three
    (one program each; the numbers differ from single-seed runs): mean normalised cost 0.19 (0-2), 0.35
    (3-5), 0.15 (6-8), 0.09 (9-11); mean normalised reward 0.51/0.46/0.36/0.38 (random actions: 0).
    Thresholds: mean normalised cost <= 1 (BC-Safe's), mean reward above 0.25. Broken, λ frozen at 0
    (constrained=False): mean normalised cost 3.09 (0-2) and 4.45 (3-5), reward 1.01/0.95, failing the
    test (`cd tests && python ../benchmarks/coptidice_learning.py --grouped --seeds 0,1,2`). OSRL's
    limit units (cost_limit_units="discounted_sum", 100 times looser) with ε = 0.01 leave λ at 0.001:
    cost 8.04/4.92/6.60 (single seeds 0-2, 3k updates)."""
    results = coptidice_seed_group(safe_and_unsafe, COPTIDICE_SEEDS, tmp_path / "runs")
    assert all(result.summary["target_cost"] == TARGET_COST for result in results)
    mean_cost = np.mean([result.summary["final_normalized_cost"] for result in results])
    mean_reward = np.mean([result.summary["final_normalized_reward"] for result in results])
    assert mean_cost <= 1.0, [result.summary for result in results]
    assert mean_reward > 0.25, [result.summary for result in results]


# ------------------------------------------------------------------------ CLI
def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_sentence(code, err, *needles):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


FAST = ["--steps", "60", "--log-every", "30", "--eval-every", "60", "--eval-episodes", "2", "--hidden-dims", "16", "16",
        "--batch-size", "32", "--no-progress"]


def test_cli_trains_bc_safe_and_evaluates_reward_and_cost_at_a_target_cost(pendulum_references, tmp_path, capsys):
    dataset = collect_episodes(PENDULUM_TORQUE_COST_ID, capped_controller(2.0), 4, seed=3)
    dataset.metadata.ref_min_score, dataset.metadata.ref_max_score = pendulum_references
    data = str(write_npz(dataset, tmp_path / "safe.npz"))
    run_dir = tmp_path / "run"
    cheapest = float(dataset.episode_costs().min())
    code, out, err = run_cli(capsys, "train", "bc_safe", "--dataset", data, "--run-dir", str(run_dir),
                             "--target-cost", str(cheapest), *FAST)
    assert code == 0, err
    evaluation = json.loads((run_dir / "eval.jsonl").read_text().splitlines()[-1])
    assert evaluation["target_cost"] == cheapest and len(evaluation["costs"]) == 2
    assert evaluation["normalized_cost"] == pytest.approx(np.mean(normalized_cost(evaluation["costs"], cheapest)))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final_cost"] == pytest.approx(np.mean(evaluation["costs"]))
    code, out, _ = run_cli(capsys, "evaluate", str(run_dir), "--episodes", "2", "--target-cost", "0,20,40")
    lines = {line.split(":")[0]: line for line in out.splitlines()}
    cost = float(out.split("cost ")[1].split()[0])  # "cost C ± S per episode"
    for k in (0, 20, 40):
        expected = (cost + (k == 0)) / (k + (k == 0))
        assert f"at target cost {k}: normalized reward" in out and f"normalized cost {expected:.3f}" in lines[f"at target cost {k}"]
    average = np.mean([(cost + 1) / 1, cost / 20, cost / 40])
    assert f"normalized cost {average:.3f}" in lines["averaged over target costs 0, 20, 40"]

    assert_one_sentence(*run_cli(capsys, "evaluate", str(run_dir), "--target-cost", "10,-2")[::2], "--target-cost is -2.0")
    assert_one_sentence(*run_cli(capsys, "evaluate", str(run_dir), "--target-cost", "ten")[::2], "--target-cost has 'ten'")
    assert_one_sentence(*run_cli(capsys, "train", "bc_safe", "--dataset", data, "--run-dir", str(tmp_path / "neg"),
                                 "--target-cost", "-1", *FAST)[::2], "--target-cost is -1.0", "non-negative")
    assert not (tmp_path / "neg").exists()
    assert_one_sentence(*run_cli(capsys, "train", "bc_safe", "--dataset", data, "--run-dir", str(tmp_path / "low"),
                                 "--target-cost", str(cheapest - 0.5), *FAST)[::2], "cheapest episode")
    assert not (tmp_path / "low").exists()


def test_cli_bc_safe_refuses_a_dataset_without_costs(pendulum_references, tmp_path, capsys):
    dataset = collect_episodes("Pendulum-v1", capped_controller(2.0), 2, seed=3)
    data = str(write_npz(dataset, tmp_path / "plain.npz"))
    code, _, err = run_cli(capsys, "train", "bc_safe", "--dataset", data, "--run-dir", str(tmp_path / "run"), *FAST)
    assert_one_sentence(code, err, "has no per-step costs", "bc_safe")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------ CDT
def test_cdt_windows_carry_costs_to_go_aligned_with_returns_to_go(make_dataset):
    from offrl.algos.safe import cdt

    dataset = make_dataset([6, 4, 5], ends=["terminal", "timeout", "none"])
    dataset = dataset.replace(costs=np.arange(dataset.num_transitions, dtype=np.float32) % 3)
    config = cdt.Config(hidden_dims=(16,), num_heads=1, context_length=4, batch_size=32, cost_scale=2.0)
    data = cdt.training_data(dataset, fit_normalizer(dataset, True, False), config)
    expected = np.concatenate([np.cumsum(dataset.costs[s:e][::-1])[::-1] for s, e in zip(dataset.episode_starts, dataset.episode_ends)])
    np.testing.assert_allclose(data["costs_to_go"], expected / 2.0)
    batch = cdt.sample({k: np.asarray(v) for k, v in data.items()}, jax.random.PRNGKey(0), config)
    # Same starts: each window's returns-to-go and costs-to-go come from the same rows.
    starts = [int(np.flatnonzero((data["returns_to_go"] == w[0]))[0]) for w in np.asarray(batch.windows.returns_to_go)[:4]]
    for window, start in zip(np.asarray(batch.costs_to_go)[:4], starts):
        assert window[0] == pytest.approx(data["costs_to_go"][start])
    with pytest.raises(ConfigError, match="has no per-step costs"):
        cdt.training_data(dataset.replace(costs=None), fit_normalizer(dataset, True, False), config)


def test_cdt_draws_episodes_by_seventy_minus_their_cost_then_a_uniform_start(make_dataset):
    """OSRL's cost_sample with train_cdt.py's ct = 70 - C: episodes of cost 10, 40 and 90 drawn with
    weights 60, 30 and 0, each start uniform within its episode; an augmented copy weighs by its
    target cost; data whose episodes all cost 70 or more is refused in one sentence."""
    from offrl.algos.safe import cdt

    dataset = make_dataset([4, 2, 5])
    costs = np.zeros(dataset.num_transitions, np.float32)
    costs[dataset.episode_starts] = [10.0, 40.0, 90.0]
    dataset = dataset.replace(costs=costs)
    normalizer = fit_normalizer(dataset, True, False)
    config = cdt.Config(hidden_dims=(16,), num_heads=1, context_length=2, batch_size=20_000, augment_fraction=0.0)
    data = cdt.training_data(dataset, normalizer, config)
    lengths = dataset.episode_lengths
    expected = np.repeat(np.array([60.0, 30.0, 0.0]) / lengths, lengths)
    np.testing.assert_allclose(np.diff(data["start_cdf"], prepend=0.0), expected / expected.sum(), rtol=1e-6)

    batch = cdt.sample({k: np.asarray(v) for k, v in data.items()}, jax.random.PRNGKey(1), config)
    first_cost_to_go = np.asarray(batch.costs_to_go)[:, 0]
    first_step = np.asarray(batch.windows.timesteps)[:, 0]
    # Episode 0's windows start at cost-to-go 10 (step 0) or 0; episode 1's at 40 or 0; none at 90.
    from_episode_1 = (first_cost_to_go == 40.0) | ((first_cost_to_go == 0.0) & (first_step == 1) & np.isin(
        np.asarray(batch.windows.returns_to_go)[:, 0], data["returns_to_go"][dataset.episode_starts[1]:dataset.episode_ends[1]]))
    assert not np.any(first_cost_to_go == 90.0)
    assert from_episode_1.mean() == pytest.approx(1 / 3, abs=0.02)
    assert np.mean(first_cost_to_go == 40.0) == pytest.approx(1 / 6, abs=0.02)  # a uniform start: half of episode 1's draws
    assert np.mean(first_cost_to_go == 10.0) == pytest.approx(2 / 3 / 4, abs=0.02)

    copies = cdt.Config(**{**config.__dict__, "augment_fraction": 1.0})
    augmented = cdt.training_data(dataset, normalizer, copies)
    starts = np.flatnonzero(augmented["timesteps"] == 0)
    ends = np.append(starts[1:], len(augmented["timesteps"]))
    per_episode = np.diff(augmented["start_cdf"][ends - 1], prepend=0.0)
    weight = np.maximum(70.0 - augmented["costs_to_go"][starts].astype(np.float64), 0.0)
    assert len(starts) > 3
    np.testing.assert_allclose(per_episode, weight / weight.sum(), rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError, match="every episode costs at least --cost-sample-offset 70"):
        cdt.training_data(dataset.replace(costs=costs + 100), normalizer, config)


def test_cdt_cost_token_reads_fifty_minus_the_cost_to_go():
    """OSRL's cost_transform: with the offset the network sees 50 - C where it would see C."""
    from offrl.algos.safe import cdt
    from offrl.types import Spec

    spec, k = Spec(3, 1), 3
    plain = cdt.ConstrainedDecisionTransformerNet(1, 16, 1, 1, 10, 0.0, False, None)
    offset = cdt.ConstrainedDecisionTransformerNet(1, 16, 1, 1, 10, 0.0, False, 50.0)
    inputs = (jnp.ones((2, k, spec.observation_dim)), jnp.zeros((2, k, 1)), jnp.ones((2, k)), jnp.array([[3.0, 2.0, 1.0], [0.0, 0.0, 0.0]]),
              jnp.tile(jnp.arange(k), (2, 1)))
    params = plain.init(jax.random.PRNGKey(0), *inputs)
    transformed = (*inputs[:3], 50.0 - inputs[3], inputs[4])
    np.testing.assert_allclose(offset.apply(params, *inputs)[0], plain.apply(params, *transformed)[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(offset.apply(params, *inputs)[0], plain.apply(params, *inputs)[0])
    assert cdt.Config().cost_token_offset == 50.0 and cdt.Config().cost_sample_offset == 70.0


def test_cdt_cost_to_go_starts_at_the_target_and_falls_by_each_cost():
    from offrl.algos.safe import cdt
    from offrl.types import Spec

    spec = Spec(3, 1)
    state = init_state(cdt, jax.random.PRNGKey(0), spec, cdt.Config(hidden_dims=(16,), num_heads=1, context_length=3, target_cost=7.0, cost_scale=2.0))
    context = cdt.init_context(state, 2, spec)
    observations = jnp.zeros((2, 3))
    step = jax.jit(lambda c, r, s, k: cdt.act_in_context(state, c, observations, r, s, jax.random.PRNGKey(0), True, costs=k))
    _, context = step(context, jnp.zeros(2), jnp.ones(2, bool), jnp.array([5.0, 5.0]))  # costs ignored at a start
    _, context = step(context, jnp.zeros(2), jnp.zeros(2, bool), jnp.array([1.0, 0.0]))
    _, context = step(context, jnp.zeros(2), jnp.array([False, True]), jnp.array([1.0, 1.0]))
    # Env 0: 7/2, then minus 1/2 twice. Env 1 restarted at its third step: its history holds one step,
    # 7/2 again (the entries after it are stale and never attended to).
    np.testing.assert_allclose(np.asarray(context.costs_to_go)[0], [3.5, 3.0, 2.5])
    assert float(context.costs_to_go[1, 0]) == 3.5 and int(context.length[1]) == 1


def test_cdt_gaussian_head_learns_the_actions_spread_and_the_cost_head_which_steps_pay(make_dataset):
    """OSRL's heads: actions drawn as 0.3 + 0.2 N(0, 1) whatever the state, and a cost paid exactly
    where the state's first coordinate is positive (half the steps). After 400 updates the Gaussian
    head's mean and standard deviation are near the data's (other data and key seeds: mean 0.26-0.32,
    spread of the mean over states 0.09, std 0.17-0.19), the temperature has fallen (the entropy,
    about -0.2 per dimension, is above the target -1), the cost head is right on most steps (a
    constant guess: about half), the policy acts with the mean and samples with the learned spread."""
    from offrl.algos.safe import cdt
    from offrl.types import Spec

    dataset = make_dataset([20] * 40, action_dim=1, ends=["timeout"] * 40)
    rng = np.random.default_rng(1)
    actions = np.clip(0.3 + 0.2 * rng.normal(size=(dataset.num_transitions, 1)), -1, 1).astype(np.float32)
    dataset = dataset.replace(actions=actions, costs=(dataset.observations[:, 0] > 0).astype(np.float32))
    config = cdt.Config(hidden_dims=(32,), num_heads=1, context_length=3, batch_size=128, learning_rate=3e-3, warmup_steps=10,
                        dropout_rate=0.0, augment_fraction=0.0, cost_loss_weight=1.0, max_episode_steps=20)
    data = {k: jnp.asarray(v) for k, v in cdt.training_data(dataset, fit_normalizer(dataset, True, False), config).items()}
    state = init_state(cdt, jax.random.PRNGKey(0), Spec(3, 1), config)

    @jax.jit
    def train(state, key):
        def step(state, key):
            return cdt.update(state, cdt.sample(data, key, config), config)
        return jax.lax.scan(step, state, jax.random.split(key, 400))

    state, metrics = train(state, jax.random.PRNGKey(1))
    windows = cdt.sample(data, jax.random.PRNGKey(2), config)
    mean, log_std, _ = state.model.apply_fn(state.model.params, windows.windows.observations, windows.windows.actions,
                                            windows.windows.returns_to_go, windows.costs_to_go, windows.windows.timesteps)
    mask = np.asarray(windows.windows.mask)
    mean, std = np.asarray(mean)[mask], np.exp(np.asarray(log_std)[mask])
    assert abs(mean.mean() - 0.3) < 0.08 and mean.std() < 0.15 and 0.12 < std.mean() < 0.28, (mean.mean(), mean.std(), std.mean())
    assert float(metrics["temperature"][-1]) < 0.1 and float(metrics["entropy"][-50:].mean()) > -0.6
    assert float(metrics["cost_accuracy"][-50:].mean()) > 0.85, metrics["cost_accuracy"][-50:]
    # Acting: the mean (any key), or samples spread as the head says, inside the action box.
    observation = jnp.tile(jnp.asarray(rng.normal(size=(1, 3)), jnp.float32), (2_000, 1))
    first, second = (np.asarray(cdt.act(state, observation, jax.random.PRNGKey(k), deterministic=True)) for k in (3, 4))
    samples = np.asarray(cdt.act(state, observation, jax.random.PRNGKey(5), deterministic=False))
    ctg = jnp.full((1, 1), state.target_cost / state.cost_scale)
    head_mean, head_log_std, _ = state.model.apply_fn(state.model.params, observation[:1, None], jnp.zeros((1, 1, 1)),
                                                      jnp.full((1, 1), state.target_return / state.return_scale), ctg,
                                                      jnp.zeros((1, 1), jnp.int32))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first[0], np.clip(np.asarray(head_mean)[0, 0], -1, 1), rtol=1e-5)
    assert (np.abs(samples) <= 1).all()
    assert samples.std() == pytest.approx(float(np.exp(head_log_std[0, 0, 0])), rel=0.1)


def test_cdt_refuses_a_nonpositive_temperature_and_a_negative_cost_weight():
    from offrl.algos.safe import cdt

    with pytest.raises(ConfigError, match="--init-temperature is 0.0; expected a positive number"):
        cdt.check_config(cdt.Config(init_temperature=0.0))
    with pytest.raises(ConfigError, match="--cost-loss-weight is -1.0; expected a non-negative number"):
        cdt.check_config(cdt.Config(cost_loss_weight=-1.0))


def test_a_flat_frontier_sets_every_target_above_the_frontiers_mean_return():
    """OSRL's deg 0 (12 DSRL tasks): np.polyfit of degree 0, the mean of the frontier's returns, so
    every augmented target return lies above that mean plus the gap (not above the best return, as
    for a frontier of one cost); a degree-1 frontier through the
    same episodes sets targets by cost (from just above 0 at cost 0)."""
    from offrl.data.cost_return_augmentation import augment_episodes

    costs = np.repeat(np.arange(10.0), 6)  # 6 episodes per cost: each grid cell keeps its members
    returns = 10.0 * costs + np.tile(np.arange(6.0), 10) * 0.1  # the frontier rises by 10 per unit of cost
    flat = augment_episodes(costs, returns, 1.0, 0, 1.0, None, None, 1.0, seed=0)
    sloped = augment_episodes(costs, returns, 1.0, 1, 1.0, None, None, 1.0, seed=0)
    mean_front = np.mean(10.0 * np.arange(10.0) + 0.5)
    assert (flat.target_returns >= mean_front + 1.0 - 1e-9).all() and (flat.target_returns < 80.0).any()  # the mean, not the best (90.5)
    assert (sloped.target_returns < mean_front).any()
    from offrl.algos.safe import cdt
    cdt.check_config(cdt.Config(augment_degree=0))
    with pytest.raises(ConfigError, match="--augment-degree is -1; expected a non-negative integer"):
        cdt.check_config(cdt.Config(augment_degree=-1))


def test_pareto_mask_keeps_exactly_the_undominated_episodes():
    from offrl.data.cost_return_augmentation import pareto_mask

    costs = np.array([0.0, 1.0, 1.0, 2.0, 3.0, 0.0])
    returns = np.array([1.0, 5.0, 4.0, 5.0, 9.0, 1.0])  # (1, 4) is beaten by (1, 5); (2, 5) by (1, 5); ties both stay
    np.testing.assert_array_equal(pareto_mask(costs, returns), [True, True, False, False, True, True])


def test_cdt_augmented_copies_start_at_their_targets_from_a_cheaper_episode(make_dataset):
    """CDT's Pareto augmentation (offrl/data/cost_return_augmentation.py): 20 episodes of costs 0-19
    and returns rising with cost; half as many copies again, each a copy of an episode whose cost is at
    most its target cost, whose first step's return- and cost-to-go are the target; original rows unchanged."""
    from offrl.algos.safe import cdt

    dataset = make_dataset([5] * 20)
    episode = np.repeat(np.arange(20), 5)
    dataset = dataset.replace(costs=(episode / 5.0).astype(np.float32), rewards=(episode + 0.1 * (episode % 3)).astype(np.float32))
    config = cdt.Config(hidden_dims=(16,), num_heads=1, context_length=4, batch_size=32, augment_fraction=0.5,
                        augment_degree=1, return_scale=2.0, cost_scale=0.5)
    normalizer = fit_normalizer(dataset, True, False)
    plain = cdt.training_data(dataset, normalizer, dataclasses.replace(config, augment_fraction=0.0))
    data = cdt.training_data(dataset, normalizer, config)
    n = dataset.num_transitions
    assert len(data["observations"]) == n + 10 * 5 and len(plain["observations"]) == n
    for name in ("observations", "returns_to_go", "costs_to_go"):
        np.testing.assert_array_equal(data[name][:n], plain[name])
    rows, _, _, _ = cdt.augmented_rows(dataset, config)
    copies = augment_episodes(dataset.episode_costs(), dataset.episode_returns(), 0.5, 1, 1.0, None, None, 1.0, 0)
    firsts = n + 5 * np.arange(10)
    np.testing.assert_allclose(data["returns_to_go"][firsts], copies.target_returns / 2.0, rtol=1e-5)
    np.testing.assert_allclose(data["costs_to_go"][firsts], copies.target_costs / 0.5, rtol=1e-5)
    assert (dataset.episode_costs()[copies.episodes] <= copies.target_costs + 1e-9).all()
    np.testing.assert_array_equal(data["observations"][firsts], plain["observations"][dataset.episode_starts[copies.episodes]])
    assert (rows[firsts] == dataset.episode_starts[copies.episodes]).all()
    # every target asks for more than the frontier offers at its cost (returns rise by 1 per unit of cost * 5)
    assert (copies.target_returns >= 5 * copies.target_costs - 1.0).all()


# The deterministic head without the cost-prediction head, raw cost tokens and uniform window starts:
# OSRL's default heads, its 50 - C cost transform and its cost-weighted episode draws separate the
# target costs less reliably here (see the test's docstring).
CDT_SETTINGS = {"hidden_dims": (32, 32), "num_heads": 1, "context_length": 5, "learning_rate": 1e-3, "batch_size": 64,
                "warmup_steps": 100, "target_return": -150.0, "target_cost": 0.0, "stochastic": False,
                "cost_loss_weight": 0.0, "cost_token_offset": None, "cost_sample_offset": None}


@pytest.mark.slow
def test_cdt_cost_falls_as_its_target_cost_falls(safe_and_unsafe, tmp_path, capsys):
    """CDT on the safe-and-unsafe torque-cost data (episode costs 0 to 46), 2k updates, 2 blocks of
    32, K = 5, lr 1e-3, OSRL's Pareto augmentation on (0.2 copies per episode); the same policy
    evaluated on the same 10 episodes at target cost 40 and 0. Measured (seeds 0-2,
    benchmarks/cdt_learning.py, 2026-12-03), cost at 40 / at 0: 37.7 / 2.2, 30.7 / 2.1, 35.8 / 10.2
    (gaps 35.5 / 28.6 / 25.6); without the augmentation 35.6 / 11.2, 33.9 / 4.2, 36.8 / 4.5. Returns stay
    low at this budget (about -890 to -1080 at either target; random actions: about -1270), so this
    tests the cost conditioning, not the swing-up. Thresholds: cost at 0 below 20 and at least 12 below
    the cost at 40. Broken, cost-to-go ignored (use_cost=False: cost tokens zeroed in training and
    acting): 40.0 / 40.0, 31.1 / 31.1, 24.2 / 24.2 (gap 0); the test fails on it. These settings use
    the tanh + MSE head without cost prediction (stochastic=False, cost_loss_weight=0). With OSRL's
    default heads (Gaussian + entropy bonus, cost prediction 0.02) the returns are higher (-450 to
    -850) but the target costs separate less: cost at 40 / at 0 30.1 / 8.3, 31.5 / 40.4, 31.3 / 9.6
    at 2k updates; 15.9 / 13.0, 41.8 / 17.8, 15.0 / 5.6 at 4k (seed 1 at 2k and seed 0 at 4k would
    fail); broken (2k) 12.8 / 12.8, 21.3 / 21.3, 11.5 / 11.5. These settings also feed the raw
    cost-to-go and draw window starts uniformly (cost_token_offset and cost_sample_offset none). With
    OSRL's 50 - C transform and its draws weighted by 70 - episode cost (the defaults) the test's
    settings give 25.0 / 29.4, 21.3 / 20.8, 27.5 / 27.8 (fails); the transform alone 40.8 / 36.3,
    23.0 / 22.6 (seeds 0-1; a likely reason, not traced: after the embedding's LayerNorm the
    tokens of 50 - 40 and 50 - 0 differ little, where those of 40 and 0 differ much); the draws alone 32.0 / 7.7, 32.3 / 29.1, 27.7 / 7.9 (seed 1
    fails).
    cd tests && python ../benchmarks/cdt_learning.py test test_broken default broken default_4k \
        test_osrl_tokens test_no_transform test_no_cost_sample"""
    algo = get_algorithm("cdt")
    train = TrainConfig(steps=2_000, eval_every=2_000, log_every=2_000, eval_episodes=10, seed=0)
    policy = train_offline(algo, algo.Config(**CDT_SETTINGS), safe_and_unsafe, train, tmp_path / "cdt", progress=False).policy
    costs = {target: evaluate_policy(policy.at_target_cost(target), PENDULUM_TORQUE_COST_ID, 10, seed=10_000).mean_cost
             for target in (40.0, 0.0)}
    assert costs[0.0] < 20.0 and costs[40.0] - costs[0.0] > 12.0, costs
    # `offrl evaluate --target-cost 40,0` rolls the saved run out once per κ, conditioned on it: the same costs.
    assert main(["evaluate", str(tmp_path / "cdt"), "--target-cost", "40,0", "--episodes", "10", "--seed", "10000"]) == 0
    printed = [float(line.split("cost ")[1].split(" ±")[0]) for line in capsys.readouterr().out.splitlines() if line.startswith("cost ")]
    assert printed == pytest.approx([costs[40.0], costs[0.0]], abs=0.05), (printed, costs)
