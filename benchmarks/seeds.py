"""Seeds per program: total updates/s of N seeds vmapped in one program vs one seed's program.

Same fused update as the engine (`make_fused_update`, vmapped over the seed axis like
`offrl.train.multi_seed.train_seeds`), each algorithm's default Config (256x256, batch 256), a
random dataset of D4RL HalfCheetah shape. "Sequential" is N times one seed's time, which is what N
separate runs cost on the same device. Prints the device and machine; compare within one run only.

    python benchmarks/seeds.py [--algos td3bc,iql] [--seeds 1,5,10] [--chunk 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp

from offrl.algos import get_algorithm
from offrl.train.fused import make_fused_update
from offrl.train.seed_axis import seed_axis
from offrl.types import Spec

from speed import random_device_data


def seeds_rate(name: str, seeds: int, data: dict, spec: Spec, chunk: int, repeats: int, axis: str) -> tuple[float, float]:
    """(total updates/s over all seeds, compile seconds) for `seeds` seeds in one program."""
    algo = get_algorithm(name)
    config = algo.Config()
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    state = jax.vmap(lambda key: algo.init(key, spec, config))(keys)
    fused = seed_axis(make_fused_update(algo, config, chunk), axis)
    started = time.perf_counter()
    compiled = jax.jit(fused).lower(state, data, keys).compile()
    compile_seconds = time.perf_counter() - started
    state, _ = compiled(state, data, keys)  # warm-up
    jax.block_until_ready(state)
    best = float("inf")
    for repeat in range(repeats):
        started = time.perf_counter()
        state, metrics = compiled(state, data, jax.random.split(jax.random.PRNGKey(repeat + 1), seeds))
        jax.block_until_ready((state, metrics))
        best = min(best, time.perf_counter() - started)
    return seeds * chunk / best, compile_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default="td3bc,iql")
    parser.add_argument("--seeds", default="1,5,10")
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--axes", default="vmap,map", help="how seeds share the program: vmap and/or map")
    args = parser.parse_args()
    spec = Spec(observation_dim=17, action_dim=6)
    data = random_device_data(args.transitions, spec.observation_dim, spec.action_dim)
    counts = [int(count) for count in args.seeds.split(",")]
    print(f"device: {jax.devices()[0]} ({jax.default_backend()}); machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; jax {jax.__version__}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'algorithm':10} {'axis':>5} {'seeds':>5} {'total upd/s':>12} {'per seed':>9} {'vs 1 seed':>10} {'compile s':>10}")
    for name in args.algos.split(","):
        single = None  # one seed, no seed axis at all: what a single run does
        for axis in args.axes.split(","):
            for count in counts:
                if count == 1 and single is not None:
                    continue
                total, compile_seconds = seeds_rate(name, count, data, spec, args.chunk, args.repeats, axis)
                single = single or (total if count == 1 else None)
                ratio = f"{total / single:.2f}x" if single else "-"
                print(f"{name:10} {axis:>5} {count:5d} {total:12.0f} {total / count:9.0f} {ratio:>10} {compile_seconds:10.1f}",
                      flush=True)


if __name__ == "__main__":
    jnp.zeros(1).block_until_ready()
    main()
