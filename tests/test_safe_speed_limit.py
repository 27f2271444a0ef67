"""Safe offline RL on the speed-limit runner (tests/speed_limit.py): a task whose cost is paid on
every step the runner is too fast, so a cost critic averaged over the data's states measures how
unsafe a policy is (on the torque-cost Pendulum it cannot: docs/safe-rl.md)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from offrl.algos import get_algorithm
from offrl.evaluate.rollout import evaluate_policy
from offrl.train.offline import TrainConfig, train_offline
from speed_limit import (CAPPED_THROTTLE, EPISODE_STEPS, FULL_THROTTLE, SAFE_EVERY, SPEED_LIMIT, SPEED_LIMIT_ID,
                         TARGET_COST, safe_and_unsafe_runs, throttle)


@pytest.fixture(scope="module")
def runs():
    return safe_and_unsafe_runs()


def test_the_runner_pays_a_cost_on_each_step_above_the_speed_limit():
    """The task's premise, by hand: v' = 0.8 v + 0.4 a from rest, reward v', cost 1 when v' > 1."""
    env = gym.make(SPEED_LIMIT_ID)
    _, info = env.reset(seed=0)
    assert info["cost"] == 0.0 and env.spec.max_episode_steps == EPISODE_STEPS
    speed = 0.0
    for value in (1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0, 0.5, 3.0):  # 3.0 is clipped to full throttle
        speed = 0.8 * speed + 0.4 * min(value, 1.0)
        observation, reward, terminated, truncated, info = env.step(np.array([value], np.float32))
        assert observation[0] == pytest.approx(speed, rel=1e-6) and reward == pytest.approx(speed, rel=1e-6)
        assert info["cost"] == float(speed > SPEED_LIMIT) and not (terminated or truncated)


def test_the_runs_mix_safe_and_unsafe_episodes_at_the_target_cost(runs):
    costs = runs.episode_costs()
    safe = np.arange(runs.num_episodes) % SAFE_EVERY == 0
    assert (runs.episode_lengths == EPISODE_STEPS).all()
    assert (costs[safe] <= TARGET_COST).all() and (costs[~safe] > 9 * TARGET_COST).all()
    assert runs.metadata.ref_min_score < 5 and runs.metadata.ref_max_score > 150  # random, full throttle


BCQ_LAG_SETTINGS = {"hidden_dims": (64, 64), "vae_hidden_dims": (64, 64), "target_cost": TARGET_COST,
                    "max_episode_steps": EPISODE_STEPS, "act_samples": 10, "phi": 0.25, "batch_size": 256}


@pytest.mark.slow
def test_bcq_lag_keeps_the_speed_limit_with_reward_above_random(runs, tmp_path):
    """BCQ-Lag with 10 candidates per step chosen by Q_r - λ Q_c, a perturbation of at most 0.25,
    batch 256, 64x64 networks and VAE (OSRL's discount 0.99, PID gains and the rest), κ = 10, T = 100:
    2k updates, seeds 0-2: normalised cost 0.00/0.00/0.00, normalised reward 0.27/0.25/0.25 (return
    45-49; random actions: 0; the capped throttle 0.39) with λ 1.13/1.09/1.01 (mean Q_c 7.0 against
    the per-step limit 6.34). Thresholds: normalised cost <= 1, reward above 0.15. Broken, λ frozen
    at 0 (pid_gains 0): normalised cost 9.60/9.60/9.60 at reward 1.03 (full throttle); the test
    fails on it. At 1k updates Q_c has not reached the limit (4.4) and λ is still 0: 9.6/9.5/9.6.
    With γ 0.9 (limit 1.0) at 2k: 0.00/0.00/0.00, reward 0.27/0.25/0.25, λ 6.6-7.0. OSRL's acting
    (one candidate, perturbation 0.05) cannot leave the sampled mode: 8.85/8.48/8.82, λ 0.30, as
    with λ frozen. cd tests && python ../benchmarks/safe_learning.py bcq_lag default broken
    --data speed-limit --steps 2000 --set '{"act_samples": 10, "phi": 0.25, "batch_size": 256}'"""
    algo = get_algorithm("bcq_lag")
    train = TrainConfig(steps=2_000, eval_every=2_000, log_every=1_000, eval_episodes=10, seed=0)
    summary = train_offline(algo, algo.Config(**BCQ_LAG_SETTINGS), runs, train, tmp_path / "run", progress=False).summary
    assert summary["target_cost"] == TARGET_COST
    assert summary["final_normalized_cost"] <= 1.0 and summary["final_safe"] is True, summary
    assert summary["final_normalized_reward"] > 0.15, summary


def test_the_controllers_bracket_the_limit():
    """Full throttle settles at speed 2 (unsafe), the capped one at 0.8 (safe)."""
    rng = np.random.default_rng(0)
    full = evaluate_policy(lambda obs: throttle(FULL_THROTTLE, 0.0)(obs, rng), SPEED_LIMIT_ID, 1, seed=0)
    capped = evaluate_policy(lambda obs: throttle(CAPPED_THROTTLE, 0.0)(obs, rng), SPEED_LIMIT_ID, 1, seed=0)
    assert full.costs[0] == EPISODE_STEPS - 3 and capped.costs[0] == 0  # full throttle passes 1 at its 4th step
    assert full.returns[0] > 190 and 75 < capped.returns[0] < 80
