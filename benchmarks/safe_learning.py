"""Measures BCQ-Lag and CPQ on the safe-and-unsafe torque-cost Pendulum data of tests/test_safe.py
(tests/safe_learning_data.py: 2/3 of the episodes from a full-torque controller, about 23 cost
each; 1/3 capped at |u| <= 0.8, cost 0) at target cost 5, the protocol of BC-Safe's and
COptiDICE's learning tests: normalised cost <= 1 with normalised reward above 0.3.

Seeds run in one program (offrl.train.multi_seed.train_seeds). One JSON line per seed: final
normalised cost and reward, episode cost and return, and the last logged diagnostics (BCQ-Lag:
multiplier, mean cost Q at the policy's actions, the per-step limit; CPQ: alpha, OOD cost Q, the
fraction of the actor's actions its cost critic deems safe).

    cd tests && python ../benchmarks/safe_learning.py bcq_lag [--steps N] [--seeds 0,1,2] \
        [--set '{"act_samples": 10}'] [--data speed-limit] [variant ...]

--data speed-limit runs them on tests/speed_limit.py's runner instead (cost paid while fast, κ 10
per 100-step episode, T 100).

Measured lines (settings in each line's "set"): benchmarks/results/safe_learning/<algorithm>.jsonl,
run on one core shared with two other jobs (taskset -c 0, nice 19), so the times are not the test's.

Variants: default (the settings below, or `--set` on top of them); osrl (the module's Config
defaults, OSRL's, at 64x64 and κ = 5); broken (BCQ-Lag: pid_gains (0, 0, 0), λ frozen at 0;
CPQ: no binding cost limit, target cost 1e6).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import numpy as np  # noqa: E402
from offrl.algos import get_algorithm  # noqa: E402
from offrl.evaluate.rollout import evaluate_policy  # noqa: E402
from offrl.train.multi_seed import train_seeds  # noqa: E402
from offrl.train.offline import TrainConfig  # noqa: E402
from safe_learning_data import TARGET_COST, safe_and_unsafe_pendulum  # noqa: E402
from scripted import swing_up  # noqa: E402
import speed_limit  # noqa: E402

# Small-scale settings shared by every variant; `--set` overrides them.
COMMON = {"hidden_dims": (64, 64), "vae_hidden_dims": (64, 64), "target_cost": TARGET_COST}
BROKEN = {"bcq_lag": {"pid_gains": (0.0, 0.0, 0.0)}, "cpq": {"target_cost": 1e6}}
DIAGNOSTICS = {"bcq_lag": ("multiplier", "cost_q_mean", "cost_q_limit", "q_mean"),
               "cpq": ("alpha", "ood_cost_q", "deemed_safe_fraction", "cost_q_mean", "cost_q_limit")}

parser = argparse.ArgumentParser()
parser.add_argument("algorithm", choices=["bcq_lag", "cpq"])
parser.add_argument("variants", nargs="*", default=["default", "broken"])
parser.add_argument("--steps", type=int, default=3_000)
parser.add_argument("--seeds", default="0,1,2")
parser.add_argument("--set", default="{}", help="JSON of Config fields")
parser.add_argument("--eval-episodes", type=int, default=10)
parser.add_argument("--data", choices=["pendulum", "speed-limit", "speed-ticket"], default="pendulum",
                    help="speed-limit: tests/speed_limit.py's runner (κ 10, T 100) instead of the torque-cost Pendulum")
args = parser.parse_args()

if args.data in ("speed-limit", "speed-ticket"):
    data = speed_limit.safe_and_unsafe_runs() if args.data == "speed-limit" else speed_limit.ticketed_runs()
    COMMON.update(target_cost=speed_limit.TARGET_COST, max_episode_steps=speed_limit.EPISODE_STEPS)
else:
    # tests/conftest.py pendulum_references, recomputed the same way.
    rng = np.random.default_rng(123)
    refs = (evaluate_policy(lambda obs: rng.uniform(-2, 2, (len(obs), 1)), "Pendulum-v1", 10, seed=1).mean_return,
            evaluate_policy(swing_up, "Pendulum-v1", 10, seed=1).mean_return)
    data = safe_and_unsafe_pendulum(refs)
algo = get_algorithm(args.algorithm)
overrides = {key: tuple(value) if isinstance(value, list) else value for key, value in json.loads(args.set).items()}
seeds = [int(seed) for seed in args.seeds.split(",")]
for name in args.variants:
    settings = {**COMMON, **overrides, **BROKEN[args.algorithm]} if name == "broken" else \
        {**COMMON, **overrides} if name == "default" else dict(COMMON)
    train = TrainConfig(steps=args.steps, eval_every=args.steps, log_every=args.steps // 3,
                        eval_episodes=args.eval_episodes, seed=0)
    start = time.time()
    with tempfile.TemporaryDirectory() as directory:
        results = train_seeds(algo, algo.Config(**settings), data, train, Path(directory) / name, seeds, progress=False)
        lasts = [json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1]) for result in results]
    elapsed = time.time() - start
    for seed, result, last in zip(seeds, results, lasts):
        summary = result.summary
        line = {"algorithm": args.algorithm, "data": args.data, "variant": name, "seed": seed, "set": args.set if name != "osrl" else "{}",
                "steps": args.steps, "normalized_cost": round(summary["final_normalized_cost"], 2),
                "normalized_reward": round(summary["final_normalized_reward"], 2),
                "cost": round(summary["final_cost"], 1), "return": round(summary["final_return"], 1)}
        line.update({key: round(float(last[key]), 3) for key in DIAGNOSTICS[args.algorithm] if key in last})
        line.update({"train_s": round(summary.get("train_seconds", 0.0), 1), "all_seeds_s": round(elapsed)})
        print(json.dumps(line), flush=True)
