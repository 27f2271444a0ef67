"""Measures the MOPO learning test's seeds and its broken variants (tests/test_model_based.py).

On the 80%-random Pendulum data of the learning tests (BC about -850): MOPO with the test's
settings, then the same with the penalty sign flipped (-lambda: uncertainty rewarded) and with
real-only batches (real_ratio 1: no model data; rollouts of length 0 train on the same batches).
Seeds 0-2 run in one program per variant (offrl.train.multi_seed). Prints one JSON line per variant.

    python benchmarks/model_based_learning.py [steps] [variant ...]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from offrl.algos import mopo  # noqa: E402
from offrl.data.collect import collect_episodes  # noqa: E402
from offrl.models import buffer  # noqa: E402
from offrl.train.multi_seed import train_seeds  # noqa: E402
from offrl.train.offline import TrainConfig  # noqa: E402
from scripted import mixed_quality  # noqa: E402

# The learning test's settings (tests/test_model_based.py MOPO_TEST_SETTINGS).
SETTINGS = dict(hidden_dims=(64, 64), horizon=5, rollout_batch=1000, rollout_every=250, real_ratio=0.5,
                model_buffer_capacity=25_000, dynamics_hidden_dims=(64, 64), dynamics_weight_decay=(2.5e-5, 5e-5, 1e-4),
                dynamics_max_epochs=30)
VARIANTS = {"mopo": {}, "penalty_flipped": {"penalty_coef": -0.5}, "real_only": {"real_ratio": 1.0}}


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    names = sys.argv[2:] or list(VARIANTS)
    buffer.RolloutSettings.validate = lambda self, batch_size: None  # lets the flipped penalty through (measurement only)
    dataset = collect_episodes("Pendulum-v1", mixed_quality(0.8), num_episodes=40, seed=0, name="pendulum-mostly-random-v0")
    train = TrainConfig(steps=steps, eval_every=steps, log_every=1000, checkpoint_every=0, eval_episodes=10)
    for name in names:
        config = mopo.Config(**{**SETTINGS, **VARIANTS[name]})
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as directory:
            results = train_seeds(mopo, config, dataset, train, Path(directory) / name, [0, 1, 2], progress=False)
            returns = [round(result.summary["final_return"], 1) for result in results]
        print(json.dumps({"variant": name, "steps": steps, "final_returns": returns,
                          "wall_seconds": round(time.perf_counter() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
