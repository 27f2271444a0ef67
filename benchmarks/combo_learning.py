"""Measures COMBO on the learning tests' 80%-random Pendulum data (BC about -850) and its broken
variants, to decide whether a learning test can separate them (docs/learning-tests.md).

COMBO with CQL's learning-test settings (tests/test_learning.py CQL_SETTINGS: 64x64 networks,
2 sampled actions, actor lr 3e-4, standardised states) and small model rollouts (MOPO's
measurement settings, benchmarks/model_based_learning.py); then the penalty off (cql_weight 0:
SAC on the mixed batch) and real-only batches (real_ratio 1: CQL on the dataset; the rollouts
still run but are never sampled). Seeds 0-2 in one program per variant. One JSON line per variant.

    python benchmarks/combo_learning.py [steps] [variant ...]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from offrl.algos import combo  # noqa: E402
from offrl.data.collect import collect_episodes  # noqa: E402
from offrl.train.multi_seed import train_seeds  # noqa: E402
from offrl.train.offline import TrainConfig  # noqa: E402
from scripted import mixed_quality  # noqa: E402

SETTINGS = dict(hidden_dims=(64, 64), num_sampled_actions=2, actor_learning_rate=3e-4, normalize_observations=True,
                horizon=5, rollout_batch=1000, rollout_every=250, model_buffer_capacity=25_000,
                dynamics_hidden_dims=(64, 64), dynamics_weight_decay=(2.5e-5, 5e-5, 1e-4), dynamics_max_epochs=30)
VARIANTS = {"combo": {}, "penalty_off": {"cql_weight": 0.0}, "real_only": {"real_ratio": 1.0},
            "model_states": {"conservative_states": "model"}}


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    names = sys.argv[2:] or ["combo", "penalty_off", "real_only"]
    dataset = collect_episodes("Pendulum-v1", mixed_quality(0.8), num_episodes=40, seed=0, name="pendulum-mostly-random-v0")
    train = TrainConfig(steps=steps, eval_every=steps, log_every=1000, checkpoint_every=0, eval_episodes=10)
    for name in names:
        config = combo.Config(**{**SETTINGS, **VARIANTS[name]})
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as directory:
            results = train_seeds(combo, config, dataset, train, Path(directory) / name, [0, 1, 2], progress=False)
            returns = [round(result.summary["final_return"], 1) for result in results]
        print(json.dumps({"variant": name, "steps": steps, "final_returns": returns,
                          "wall_seconds": round(time.perf_counter() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
