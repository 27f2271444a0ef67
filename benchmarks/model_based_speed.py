"""Model-based speed: dynamics-ensemble training time, and updates/s of MOPO, MOBILE, COMBO and RAVL
(rollouts included) beside TD3+BC on the same data, each as the engine runs it (one compiled chunk).

Data: the learning tests' 80%-random Pendulum-v1 data (40 episodes, 8,000 transitions) unless
`--dataset NAME` names a registered one. MOPO runs with run_mopo.py's defaults (256x256 SAC,
a rollout round of 50,000 x h=5 every 1,000 updates, real ratio 0.05), so a 1,000-update chunk
holds exactly one rollout round; the ensemble is 7 x 4 x 200 (MBPO), trained for
`--model-epochs` epochs (time per epoch reported; the full run stops after 5 epochs without
improvement). Prints one JSON line per measurement.

    python benchmarks/model_based_speed.py [--dataset NAME] [--chunk 1000] [--model-epochs 20] [--algos td3bc,mopo,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from offrl.algos import get_algorithm  # noqa: E402
from offrl.data.registry import resolve_dataset  # noqa: E402
from offrl.data.transforms import fit_normalizer  # noqa: E402
from offrl.models.training import DynamicsConfig, train_dynamics  # noqa: E402
from offrl.train.fused import make_fused_update  # noqa: E402
from offrl.train.offline import prepare  # noqa: E402


def load(name: str | None):
    if name:
        return resolve_dataset(name)
    from offrl.data.collect import collect_episodes
    from scripted import mixed_quality

    return collect_episodes("Pendulum-v1", mixed_quality(0.8), num_episodes=40, seed=0, name="pendulum-mostly-random-v0")


def updates_per_second(name: str, dataset, chunk: int, overrides: dict) -> dict:
    algo = get_algorithm(name)
    config = algo.Config(**overrides)
    _, data = prepare(algo, config, dataset, None)
    keys = jax.random.split(jax.random.PRNGKey(0))
    state = algo.init(keys[0], dataset.spec, config)
    started = time.perf_counter()
    fused = jax.jit(make_fused_update(algo, config, chunk)).lower(state, data, keys[1]).compile()
    compile_seconds = time.perf_counter() - started
    times = []
    for repeat in range(3):
        started = time.perf_counter()
        state, metrics = fused(state, data, jax.random.fold_in(keys[1], repeat))
        jax.block_until_ready(state)
        times.append(time.perf_counter() - started)
    return {"algorithm": name, "chunk": chunk, "updates_per_second": chunk / min(times), "compile_seconds": compile_seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--model-epochs", type=int, default=20)
    parser.add_argument("--algos", default="td3bc,mopo,mobile,combo,ravl", help="comma-separated; model-free ones run as they are")
    args = parser.parse_args()
    print(json.dumps({"machine": f"{platform.machine()} {os.cpu_count()} CPUs, JAX {jax.__version__} on {jax.default_backend()}",
                      "load_average": os.getloadavg()}), flush=True)
    dataset = load(args.dataset)
    normalizer = fit_normalizer(dataset, False, False)
    config = DynamicsConfig(max_epochs=args.model_epochs)
    started = time.perf_counter()
    result = train_dynamics(dataset.observations, normalizer.scale_actions(dataset.actions), dataset.rewards,
                            dataset.next_observations, config)
    print(json.dumps({"model_training_seconds": time.perf_counter() - started, "epochs": result.epochs,
                      "transitions": dataset.num_transitions, "holdout_mse_elites": float(result.holdout_mse[result.model.elites].mean())}),
          flush=True)
    with tempfile.TemporaryDirectory() as directory:
        os.environ["OFFRL_DATA_DIR"] = directory  # the model cache of this measurement only
        for name in args.algos.split(","):
            algo = get_algorithm(name)
            # Model-based: each at its defaults (its own rollout schedule), a 2-epoch ensemble shared
            # through the temporary cache; Pendulum never terminates.
            overrides = {"termination": "never", "dynamics_max_epochs": 2} if hasattr(algo, "rollout_settings") else {}
            print(json.dumps(updates_per_second(name, dataset, args.chunk, overrides)), flush=True)


if __name__ == "__main__":
    main()
