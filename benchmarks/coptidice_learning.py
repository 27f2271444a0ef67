"""Measures COptiDICE's learning test (tests/test_safe.py test_coptidice_keeps_the_constraint_with_reward_above_random)
on the safe-and-unsafe torque-cost Pendulum data (tests/safe_learning_data.py): its settings
(COPTIDICE_SETTINGS, COPTIDICE_TRAIN: target cost 5, 64x64 networks, 10 evaluation episodes), with
`--steps` and `--set` overriding them. One JSON line per run: final normalised cost and reward,
episode cost and return, the last logged multiplier, cost estimate and limit, and the share of
the final ratios w on the safe episodes (a third of the rows).

    cd tests && python ../benchmarks/coptidice_learning.py [--steps N] [--seeds 0,1,2] \
        [--set '{"actor_learning_rate": 1e-3}'] [--grouped] [variant ...]

`--grouped` trains the seeds together in one program, as the test does, and prints their mean
normalised cost and reward (one line per variant).

Variants: default; broken (constrained False: λ frozen at 0).
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
from offrl.algos.safe import coptidice  # noqa: E402
from offrl.evaluate.rollout import evaluate_policy  # noqa: E402
from offrl.train.fused import gather_batch  # noqa: E402
from offrl.train.offline import TrainConfig, prepare, train_offline  # noqa: E402
from offrl.types import Batch  # noqa: E402
from safe_learning_data import SAFE_EVERY, safe_and_unsafe_pendulum  # noqa: E402
from scripted import swing_up  # noqa: E402
from test_safe import COPTIDICE_SETTINGS, COPTIDICE_TRAIN, coptidice_seed_group  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("variants", nargs="*", default=["default", "broken"])
parser.add_argument("--steps", type=int, default=None)
parser.add_argument("--seeds", default="0,1,2")
parser.add_argument("--set", default="{}", help="JSON of Config fields")
parser.add_argument("--grouped", action="store_true", help="the seeds in one program, as the test trains them")
args = parser.parse_args()

# tests/conftest.py pendulum_references, recomputed the same way.
rng = np.random.default_rng(123)
refs = (evaluate_policy(lambda obs: rng.uniform(-2, 2, (len(obs), 1)), "Pendulum-v1", 10, seed=1).mean_return,
        evaluate_policy(swing_up, "Pendulum-v1", 10, seed=1).mean_return)
data = safe_and_unsafe_pendulum(refs)
algo = get_algorithm("coptidice")
variants = {"default": {}, "broken": {"constrained": False}}
for name in args.variants:
    if args.grouped:
        start = time.time()
        seeds = [int(seed) for seed in args.seeds.split(",")]
        schedule = {} if args.steps is None else {"steps": args.steps, "eval_every": args.steps}
        with tempfile.TemporaryDirectory() as directory:
            results = coptidice_seed_group(data, seeds, Path(directory) / "runs", {**json.loads(args.set), **variants[name]},
                                           schedule)
        costs = [result.summary["final_normalized_cost"] for result in results]
        rewards = [result.summary["final_normalized_reward"] for result in results]
        print(json.dumps({"variant": name, "seeds": seeds, "set": args.set, "steps": results[0].summary["final_step"],
                          "normalized_costs": [round(cost, 2) for cost in costs],
                          "normalized_rewards": [round(reward, 2) for reward in rewards],
                          "mean_normalized_cost": round(float(np.mean(costs)), 2),
                          "mean_normalized_reward": round(float(np.mean(rewards)), 2), "s": round(time.time() - start)}),
              flush=True)
        continue
    for seed in map(int, args.seeds.split(",")):
        start = time.time()
        settings = {**COPTIDICE_SETTINGS, **json.loads(args.set), **variants[name]}
        schedule = dict(COPTIDICE_TRAIN) if args.steps is None else {
            **COPTIDICE_TRAIN, "steps": args.steps, "eval_every": args.steps, "log_every": args.steps // 3}
        train = TrainConfig(**schedule, seed=seed)
        with tempfile.TemporaryDirectory() as directory:
            result = train_offline(algo, algo.Config(**settings), data, train, Path(directory) / "run", progress=False)
            last = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        summary = result.summary
        # Share of the final ratios w(s, a) on the safe (capped) episodes, which hold 1/3 of the rows.
        config = algo.Config(**settings)
        _, arrays = prepare(algo, config, data, None)
        batch = Batch(**gather_batch(arrays, np.arange(data.num_transitions)))
        state = result.policy.state
        weights = np.asarray(coptidice.ratios(state, state.critics.params, batch, coptidice.multiplier(state, config), config)[1])
        episode = np.repeat(np.arange(data.num_episodes), data.episode_lengths)
        safe_share = float(weights[episode % SAFE_EVERY == 0].sum() / weights.sum())
        print(json.dumps({
            "variant": name, "seed": seed, "set": args.set, "steps": schedule["steps"],
            "normalized_cost": round(summary["final_normalized_cost"], 2),
            "normalized_reward": round(summary["final_normalized_reward"], 2),
            "cost": round(summary["final_cost"], 1), "return": round(summary["final_return"], 1),
            "multiplier": round(last["multiplier"], 3), "cost_estimate": round(last["cost_estimate"], 4),
            "cost_limit": round(last["cost_limit"], 4), "w_max": round(last["w_max"], 2), "safe_share": round(safe_share, 3),
            "compile_s": round(summary["compile_seconds"], 1), "train_s": round(summary["train_seconds"], 1), "s": round(time.time() - start),
        }), flush=True)
