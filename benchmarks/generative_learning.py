"""Measures the generative learning tests (tests/test_learning_generative.py): an algorithm's test
settings, its broken variant (the test module's BROKEN) or other changes, one seed after another,
on the tests' 80%-random Pendulum data (conftest's `pendulum_mostly_random_dataset`), scored as
the tests score (the engine's final evaluation, 10 episodes). One JSON line per seed.

    nice -n 10 python benchmarks/generative_learning.py ALGO [--broken] [--steps N] [--seeds 0 1 2] [--set KEY=VALUE ...]

--steps overrides the test's update count; --set changes any Config field (Python literals,
e.g. --set eta=0.5 --set hidden_dims=(64,64)). Wall seconds include compiling and evaluation.
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

import jax  # noqa: E402

from offrl.data.collect import collect_episodes  # noqa: E402
from scripted import mixed_quality  # noqa: E402
import test_learning_generative as tests  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("algorithm", choices=sorted(tests.SETTINGS))
    parser.add_argument("--broken", action="store_true", help="apply the test's BROKEN changes")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    changes = dict(tests.BROKEN[args.algorithm]) if args.broken else {}
    for item in args.set:
        key, value = item.split("=", 1)
        changes[key] = ast.literal_eval(value)
    if args.steps is not None:
        tests.SETTINGS[args.algorithm] = (args.steps, tests.SETTINGS[args.algorithm][1])
    # conftest's pendulum_mostly_random_dataset (returns are compared raw, so no reference scores)
    dataset = collect_episodes("Pendulum-v1", mixed_quality(0.8), num_episodes=40, seed=0, name="pendulum-mostly-random-v0")
    for seed in args.seeds:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as directory:
            score = tests.final_return(args.algorithm, dataset, Path(directory), seed=seed, **changes)
        print(json.dumps({"algorithm": args.algorithm, "seed": seed, "steps": tests.SETTINGS[args.algorithm][0],
                          "changes": {k: repr(v) for k, v in changes.items()}, "final_return": round(score, 1),
                          "seconds": round(time.perf_counter() - start, 1), "jax": jax.__version__}), flush=True)


if __name__ == "__main__":
    main()
