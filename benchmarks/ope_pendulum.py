"""FQE checked where the truth is known: Pendulum with 1000-step episodes (issue 17).

Data: 40 episodes of a behaviour policy that takes a uniform random torque with probability 0.5
and otherwise the scripted swing-up controller plus N(0, 0.5) noise (tests/scripted.py), in
Pendulum-v1 with a 1000-step time limit (so that the discounted Monte-Carlo return of an episode,
γ = 0.99, misses only γ^1000 ≈ 4e-5 of the infinite-horizon value FQE estimates).

Policies: zero torque, a weak controller (0.25 x the scripted torque), the scripted controller,
TD3+BC after 3k updates and BC after 2k updates (64x64 networks) trained by offrl on the same data,
and the behaviour policy itself (FQE with one sampled behaviour action per next state). Truth: the mean
discounted return of 50 rollouts of each policy in the same env from Pendulum's random starts.

Run: `nice -n 10 python benchmarks/ope_pendulum.py` (writes benchmarks/results/ope_pendulum.json
and the table of benchmarks/ope.md). Environment: FQE_STEPS (default 10,000), FQE_BOOTSTRAP (heads,
default 4 as in the first runs; FQEConfig's own default is 10), OPE_OUT (the JSON path).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from scripted import mixed_quality, swing_up  # noqa: E402

from offrl.algos import get_algorithm  # noqa: E402
from offrl.data.collect import collect_episodes  # noqa: E402
from offrl.ope.evaluate_run import behaviour_return  # noqa: E402
from offrl.ope.fqe import FQEConfig, fit_fqe  # noqa: E402
from offrl.train.offline import TrainConfig, train_offline  # noqa: E402

ENV_ID = "offrl-bench/PendulumLong-v0"
GAMMA = 0.99
HORIZON = 1000
OUT = ROOT / "benchmarks" / "results" / "ope_pendulum.json"


def register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv", max_episode_steps=HORIZON)


def discounted_rollouts(policy, episodes: int = 50, seed: int = 1000) -> np.ndarray:
    envs = gym.make_vec(ENV_ID, num_envs=episodes, vectorization_mode="sync")
    observations, _ = envs.reset(seed=seed)
    total = np.zeros(episodes)
    for t in range(HORIZON):
        observations, rewards, _, _, _ = envs.step(np.asarray(policy(observations), np.float32).reshape(episodes, 1))
        total += GAMMA**t * rewards
    envs.close()
    return total


def main() -> None:
    register()
    started = time.time()
    behaviour = mixed_quality(0.5, noise=0.5)
    dataset = collect_episodes(ENV_ID, behaviour, num_episodes=40, seed=0, name="pendulum-long-mixed")
    print(dataset, flush=True)
    scale = lambda actions: np.asarray(actions) / 2.0  # noqa: E731 - Pendulum's torque bounds are [-2, 2]
    fqe_config = FQEConfig(steps=int(os.environ.get("FQE_STEPS", 10_000)), hidden_dims=(64, 64), learning_rate=3e-4,
                           batch_size=256, target_update_interval=50,
                           num_bootstrap=int(os.environ.get("FQE_BOOTSTRAP", 4)), seed=0)
    policies = {
        "zero torque": lambda obs: np.zeros((len(obs), 1), np.float32),
        "weak controller (0.25x)": lambda obs: 0.25 * swing_up(obs),
        "scripted controller": swing_up,
    }
    algo_runs = {"TD3+BC 3k updates": ("td3bc", 3_000), "BC 2k updates": ("bc", 2_000)}
    runs_dir = Path(os.environ.get("OPE_BENCH_RUNS", "/tmp/ope_bench_runs"))
    for label, (name, steps) in algo_runs.items():
        algo = get_algorithm(name)
        config = algo.Config(hidden_dims=(64, 64))
        train = TrainConfig(steps=steps, eval_every=0, eval_episodes=1, log_every=500, checkpoint_every=0, env_id=ENV_ID)
        result = train_offline(algo, config, dataset, train, runs_dir / f"{name}-{steps}-{int(started)}", progress=False)
        policies[label] = result.policy
        print(f"trained {label}", flush=True)
    rows = []
    for label, policy in policies.items():
        t0 = time.time()
        value, _ = fit_fqe(dataset, policy, scale, fqe_config)
        truth = discounted_rollouts(policy)
        rows.append({"policy": label, "fqe": value.estimate, "low": value.low, "high": value.high,
                     "estimate_inside_interval": value.low <= value.estimate <= value.high,
                     "true_value": float(truth.mean()), "true_value_std": float(truth.std()), "seconds": time.time() - t0})
        print(rows[-1], flush=True)
    rng = np.random.default_rng(1)
    value, _ = fit_fqe(dataset, lambda obs: behaviour(obs, rng), scale, fqe_config)
    mc = behaviour_return(dataset, GAMMA, reps=2000, confidence=0.95)
    truth = discounted_rollouts(lambda obs: behaviour(obs, rng))
    behaviour_row = {"policy": "behaviour (0.5 random + noisy controller)", "fqe": value.estimate, "low": value.low,
                     "high": value.high, "true_value": float(truth.mean()), "mc_return": mc["estimate"],
                     "mc_low": mc["low"], "mc_high": mc["high"]}
    ranked = rows + [behaviour_row]
    rho = spearmanr([r["fqe"] for r in ranked], [r["true_value"] for r in ranked]).statistic
    summary = {"spearman": float(rho), "behaviour_relative_error_vs_mc": abs(value.estimate - mc["estimate"]) / abs(mc["estimate"]),
               "rows": rows, "behaviour": behaviour_row, "fqe_config": fqe_config.__dict__ | {"hidden_dims": list(fqe_config.hidden_dims)},
               "dataset": {"transitions": dataset.num_transitions, "episodes": dataset.num_episodes},
               "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}, no GPU",
               "wall_seconds": time.time() - started}
    out = Path(os.environ.get("OPE_OUT", OUT))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("spearman", "behaviour_relative_error_vs_mc", "wall_seconds")}))


if __name__ == "__main__":
    main()
