"""Updates per second for each algorithm through the offline engine's fused update.

Each algorithm's default Config (batch 256 and 256-wide MLPs for most; Decision Transformer
draws 64 windows of 20 steps), a random dataset of D4RL HalfCheetah shape (obs 17, action 6,
episodes of 1000 steps) laid out by the engine's own `prepare` (transition arrays, or an
algorithm's `training_data`). Compile time is measured separately from the steady-state rate.
"samples/s" counts the transitions (or window steps) an algorithm reads per second, so that
algorithms with different batch shapes compare. Prints the JAX device and the machine so numbers
are comparable only within one run.

    python benchmarks/speed.py [--algos bc,td3bc,iql] [--transitions 1000000] [--chunk 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from offrl.algos import ALGORITHMS, get_algorithm
from offrl.data.dataset import Dataset
from offrl.bench.speed import random_dataset  # D4RL HalfCheetah shape: obs 17, action 6
from offrl.train.fused import make_fused_update
from offrl.train.offline import prepare


def random_device_data(transitions: int, obs_dim: int, action_dim: int, seed: int = 0) -> dict[str, jax.Array]:
    """Random transition arrays already on the device (what benchmarks/seeds.py trains on)."""
    rng = np.random.default_rng(seed)
    return jax.device_put({
        "observations": rng.normal(size=(transitions, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(transitions, action_dim)).astype(np.float32),
        "rewards": rng.normal(size=transitions).astype(np.float32),
        "next_observations": rng.normal(size=(transitions, obs_dim)).astype(np.float32),
        "dones": (rng.uniform(size=transitions) < 0.001).astype(np.float32),
    })


def samples_per_update(config) -> int:
    """Transitions (or window steps) one update reads."""
    return config.batch_size * getattr(config, "context_length", 1)


def batch_shape(config) -> str:
    context = getattr(config, "context_length", None)
    return f"{config.batch_size}x{context} steps" if context else str(config.batch_size)


def matmul_gflops(size: int = 256, batch: int = 256, repeats: int = 200) -> float:
    """Measured float32 rate of the update's typical matmul (batch x size @ size x size)."""
    a = jnp.ones((batch, size), jnp.float32)
    b = jnp.full((size, size), 1.0 / size, jnp.float32)  # keeps values bounded across repeats

    @jax.jit
    def many(a):
        return jax.lax.fori_loop(0, repeats, lambda i, x: x @ b, a)

    many(a).block_until_ready()
    started = time.perf_counter()
    many(a).block_until_ready()
    return 2 * batch * size * size * repeats / (time.perf_counter() - started) / 1e9


def benchmark(name: str, dataset: Dataset, chunk: int, repeats: int) -> dict[str, float]:
    algo = get_algorithm(name)
    config = algo.Config()
    _, data = prepare(algo, config, dataset, None)
    state = algo.init(jax.random.PRNGKey(0), dataset.spec, config)
    key = jax.random.PRNGKey(1)
    started = time.perf_counter()
    compiled = jax.jit(make_fused_update(algo, config, chunk)).lower(state, data, key).compile()
    compile_seconds = time.perf_counter() - started
    state, metrics = compiled(state, data, key)  # warm-up
    jax.block_until_ready(metrics)
    rates = []
    for repeat in range(repeats):
        key, chunk_key = jax.random.split(key)
        started = time.perf_counter()
        state, metrics = compiled(state, data, chunk_key)
        jax.block_until_ready(metrics)
        rates.append(chunk / (time.perf_counter() - started))
    return {"compile_seconds": compile_seconds, "updates_per_second": max(rates), "batch": batch_shape(config),
            "samples_per_second": max(rates) * samples_per_update(config),
            "gflop_per_update": update_gflop(algo, config, state, data)}


def update_gflop(algo, config, state, data) -> float:
    """XLA's FLOP count for one update (a scan's body would be counted once, so compile one)."""
    single = jax.jit(make_fused_update(algo, config, 1)).lower(state, data, jax.random.PRNGKey(0)).compile()
    analysis = single.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else (analysis or {})
    return analysis.get("flops", float("nan")) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", default=",".join(sorted(ALGORITHMS)))
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=1000, help="updates per compiled call")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}")
    print(f"jax {jax.__version__}, device: {jax.devices()[0]} ({jax.default_backend()})")
    rate = matmul_gflops()
    print(f"float32 matmul (256x256 @ 256x256): {rate:.1f} GFLOP/s")
    dataset = random_dataset(args.transitions)
    print(f"dataset: {args.transitions} random transitions of HalfCheetah shape in episodes of 1000 steps; "
          f"default configs; {args.chunk} updates per call")
    print(f"{'algorithm':10s} {'batch':>14s} {'updates/s':>10s} {'samples/s':>11s} {'compile s':>10s} "
          f"{'GFLOP/update':>13s} {'% of matmul rate':>17s}")
    for name in args.algos.split(","):
        result = benchmark(name.strip(), dataset, args.chunk, args.repeats)
        fraction = 100 * result["updates_per_second"] * result["gflop_per_update"] / rate
        print(f"{name:10s} {result['batch']:>14s} {result['updates_per_second']:10.1f} {result['samples_per_second']:11.0f} "
              f"{result['compile_seconds']:10.2f} {result['gflop_per_update']:13.3f} {fraction:16.0f}%")


if __name__ == "__main__":
    main()
