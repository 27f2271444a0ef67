"""Measures the model-based learning tests (tests/test_model_based_learning.py): an algorithm's
test settings and its broken variants, seeds in one program (offrl.train.multi_seed), on the tests'
BandReach task (scored by its true dynamics, 500 fixed starts) or on a Pendulum dataset of the
other learning tests (scored by the engine's 10 evaluation episodes). One JSON line per variant.

    python benchmarks/model_based_learning.py ALGO [VARIANT ...] [--data band] [--steps 3000] [--seeds 0 1 2]

ALGO: mobile, combo, ravl, mopo or bc. VARIANT: `normal` (the test's SETTINGS), `broken` (its
BROKEN changes), `real_only` (real_ratio 1: no model rows, i.e. rollouts that are never trained
on), or NAME:KEY=VALUE,... for other changes, e.g. `flipped:penalty_coef=-0.5` (the engine's check
that refuses a negative penalty is lifted here, for measurement only). --data: band (BandReach with
its cliff), band-linear (cliff 0: the same data, scored where faster is always better),
band-noisy[:K] (recorded next states with noise of std K x ||a||, K 0.1 by default: a model's std
grows with the action), mostly-random, narrow, mostly-idle (Pendulum). The dynamics model is trained once per dataset
into a temporary cache that all variants share, as the tests' `band_model` fixture does.
With --probe-uncertainty it prints, instead, MOPO's penalty (the elites' largest predicted std
norm) and the elites' disagreement (std of their means) at the band's fast actions
(-0.3 tanh(2 s)) and at 0.1 to 0.8 further toward the goal, on 2,000 random BandReach states.
Run it niced on a shared machine: nice -n 10 python benchmarks/model_based_learning.py ...
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from offrl.algos import get_algorithm  # noqa: E402
from offrl.data.collect import collect_episodes  # noqa: E402
from offrl.models import buffer  # noqa: E402
from offrl.models.cache import load_model  # noqa: E402
from offrl.data.fingerprint import dataset_fingerprint  # noqa: E402
from offrl.train.multi_seed import train_seeds  # noqa: E402
from offrl.train.offline import TrainConfig  # noqa: E402
from learning_data import BandReach, mostly_idle_pendulum, narrow_controller_pendulum  # noqa: E402
from scripted import mixed_quality  # noqa: E402
from test_model_based_learning import BROKEN, ROLLOUTS, SETTINGS, band_dynamics  # noqa: E402

SPEED_NOISE = 0.1

PENDULUM_REFERENCES = (-1200.0, -150.0)  # about conftest's pendulum_references: scores are returns, not normalised


def make_data(name: str):
    """(dataset, BandReach task or None when the engine's env evaluation scores it)."""
    if name in ("band", "band-linear"):
        task = BandReach(cliff=0.0 if name == "band-linear" else 2.0)
        return BandReach().dataset(), task  # the data never leave the band, so they are the same
    if name.startswith("band-noisy"):  # band-noisy or band-noisy:K, K the speed noise (default SPEED_NOISE)
        task = BandReach(speed_noise=float(name.partition(":")[2] or SPEED_NOISE))
        return task.dataset(), task
    if name == "mostly-random":
        dataset = collect_episodes("Pendulum-v1", mixed_quality(0.8), num_episodes=40, seed=0, name="pendulum-mostly-random-v0")
    elif name == "narrow":
        dataset = narrow_controller_pendulum(PENDULUM_REFERENCES)
    elif name == "mostly-idle":
        dataset = mostly_idle_pendulum(PENDULUM_REFERENCES)
    else:
        raise SystemExit(f"--data is {name!r}; expected band, band-linear, mostly-random, narrow or mostly-idle.")
    return dataset, None


def variant_changes(algo_name: str, text: str) -> tuple[str, dict]:
    if text == "normal":
        return text, {}
    if text == "broken":
        return text, dict(BROKEN[algo_name])
    if text == "real_only":
        return text, {"real_ratio": 1.0}
    name, _, assignments = text.partition(":")
    changes = {}
    for assignment in filter(None, assignments.split(",")):
        key, _, value = assignment.partition("=")
        changes[key] = ast.literal_eval(value)
    return name, changes


def probe_uncertainty(dataset, task: BandReach, model_dir: str) -> None:
    model, _ = load_model(model_dir, dataset_fingerprint(dataset))
    observations = np.random.default_rng(0).uniform(-1.0, 1.0, (2_000, 2)).astype(np.float32)
    toward_goal = -observations / np.linalg.norm(observations, axis=-1, keepdims=True)
    for beyond in (0.0, 0.1, 0.2, 0.3, 0.5, 0.8):
        actions = np.clip(task.band_action(observations, task.FAST) + beyond * toward_goal, -1.0, 1.0).astype(np.float32)
        mean, std = model.predict(jnp.asarray(observations), jnp.asarray(actions))  # actions already in [-1, 1]
        elites = np.asarray(model.elites)
        mean, std = np.asarray(mean)[elites], np.asarray(std)[elites]
        print(json.dumps({"beyond_fast_actions": beyond, "mopo_penalty": round(float(np.linalg.norm(std, axis=-1).max(0).mean()), 4),
                          "disagreement": round(float(mean.std(0).sum(-1).mean()), 4),
                          "true_excess": round(float(task.excess(observations, actions).mean()), 3)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("algo", choices=sorted(SETTINGS) + ["bc"])
    parser.add_argument("variants", nargs="*", default=["normal", "broken"])
    parser.add_argument("--data", default="band")
    parser.add_argument("--steps", type=int, default=3_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--probe-uncertainty", action="store_true")
    args = parser.parse_args()
    buffer.RolloutSettings.validate = lambda self, batch_size: None  # lets a flipped MOPO penalty through
    algo = get_algorithm(args.algo)
    dataset, task = make_data(args.data)
    train = TrainConfig(steps=args.steps, eval_every=args.steps, log_every=1_000, checkpoint_every=0, eval_episodes=10)
    with tempfile.TemporaryDirectory() as directory:
        model_dir = None
        if args.algo != "bc":
            started = time.perf_counter()
            model_dir = band_dynamics(dataset, ROLLOUTS, Path(directory) / "models")
            print(json.dumps({"dynamics_seconds": round(time.perf_counter() - started, 1)}), flush=True)
        if args.probe_uncertainty:
            if task is None:
                raise SystemExit("--probe-uncertainty measures BandReach's band; expected --data band or band-noisy.")
            probe_uncertainty(dataset, task, model_dir)
            return
        for text in args.variants:
            name, changes = variant_changes(args.algo, text)
            settings = {"hidden_dims": (64, 64)} if args.algo == "bc" else {**SETTINGS[args.algo], "model_path": model_dir}
            config = algo.Config(**{**settings, **changes})
            started = time.perf_counter()
            results = train_seeds(algo, config, dataset, train, Path(directory) / name, args.seeds, progress=False)
            if task is None:  # the engine's 10 evaluation episodes in the env
                returns = [round(result.summary["final_return"], 1) for result in results]
            else:
                returns = [round(task.evaluate(result.policy), 2) for result in results]
            print(json.dumps({"algo": args.algo, "data": args.data, "variant": name, "changes": changes, "steps": args.steps,
                              "seeds": args.seeds, "returns": returns,
                              "wall_seconds": round(time.perf_counter() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
