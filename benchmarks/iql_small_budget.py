"""IQL at a small budget on HalfCheetah data from one stochastic SAC checkpoint (issue 15).

Makes the dataset (SAC trained online for --sac-steps on HalfCheetah-v5; its final stochastic
policy recorded for 50 episodes, 50,000 transitions), then trains offrl's IQL for --steps updates
with and without state standardisation, one seed after another, and prints the final normalised
score of each (D4RL's halfcheetah reference returns, 10 evaluation episodes) and the machine.

    python benchmarks/iql_small_budget.py [--sac-steps 35000] [--steps 10000] [--seeds 0,1,2]

The numbers, and the PyTorch reference they were compared with, are in benchmarks/iql_small_budget.md.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from offrl.algos import get_algorithm, sac
from offrl.data.collect import collect_transitions
from offrl.data.d4rl_io import write_npz
from offrl.data.load import load_dataset
from offrl.train.offline import TrainConfig, train_offline
from offrl.train.online import OnlineConfig, make_stochastic_policy, train_online

ENV_ID = "HalfCheetah-v5"
D4RL_HALFCHEETAH = (-280.178953, 12135.0)  # d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE


def make_dataset(path: Path, sac_steps: int) -> None:
    online = OnlineConfig(total_steps=sac_steps, start_steps=5_000, snapshot_every=5_000, eval_episodes=5, seed=0)
    result = train_online(sac, sac.Config(), ENV_ID, online,
                          on_snapshot=lambda s: print(f"  SAC step {s.step}: evaluated return {s.return_mean:.1f}", flush=True))
    policy = make_stochastic_policy(sac, result.state, result.action_low, result.action_high)
    dataset = collect_transitions(ENV_ID, policy, 50_000, seed=7, name="halfcheetah-sac-medium")
    dataset.metadata.ref_min_score, dataset.metadata.ref_max_score = D4RL_HALFCHEETAH
    returns = dataset.episode_returns()
    print(f"dataset: {dataset.num_episodes} episodes, returns min {returns.min():.0f} / median {np.median(returns):.0f}"
          f" / max {returns.max():.0f}")
    write_npz(dataset, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sac-steps", type=int, default=35_000)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "offrl-halfcheetah-sac-medium.npz"))
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {platform.processor() or ''} {platform.system()}, jax {jax.__version__} "
          f"on {jax.devices()[0]}")
    path = Path(args.data)
    if not path.exists():
        make_dataset(path, args.sac_steps)
    dataset = load_dataset(path)
    iql = get_algorithm("iql")
    for normalize in (False, True):
        scores = []
        for seed in (int(s) for s in args.seeds.split(",")):
            started = time.perf_counter()
            result = train_offline(
                iql, iql.Config(normalize_observations=normalize), dataset,
                TrainConfig(steps=args.steps, eval_every=args.steps, log_every=args.steps // 5, eval_episodes=10,
                            seed=seed, env_id=ENV_ID),
                Path(tempfile.mkdtemp()) / "run", progress=False)
            scores.append(result.summary["final_normalized_score"])
            print(f"IQL normalize_observations={normalize} seed {seed}: {scores[-1]:.2f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
        print(f"IQL normalize_observations={normalize}: mean {np.mean(scores):.2f} ± {np.std(scores):.2f} over {len(scores)} seeds")


if __name__ == "__main__":
    main()
