"""This machine's float32 matmul ceiling: square products of several sizes through JAX, NumPy and
(when installed) torch, each at its own default threading.

Issue 9's targets are stated against a measured matmul rate. On a 2-vCPU cloud machine that rate
depends on the size (small products pay per-call and threading overhead) and on whether the two
vCPUs are separate cores, so this prints the whole curve: a matmul-bound update cannot run faster
than the best size here allows, whatever library runs it.

    python benchmarks/matmul_ceiling.py [--sizes 256,512,1024,2048] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np


def rate(run, flops_per_call: float, seconds: float) -> float:
    """GFLOP/s of `run` (one call = flops_per_call), repeated for about `seconds` after a warm-up."""
    run()
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        run()
        calls += 1
    return flops_per_call * calls / (time.perf_counter() - started) / 1e9


def jax_rate(size: int, seconds: float) -> float:
    # Products in a loop inside one program, so dispatch is not timed; the carry makes every
    # product depend on the last, so XLA cannot hoist or merge them.
    loops = 32
    a = jnp.asarray(np.random.default_rng(0).standard_normal((size, size), np.float32) / np.sqrt(size))

    @jax.jit
    def chain(x):
        return jax.lax.fori_loop(0, loops, lambda _, y: y @ a, x)

    return rate(lambda: chain(a).block_until_ready(), 2.0 * size**3 * loops, seconds)


def numpy_rate(size: int, seconds: float) -> float:
    a = np.random.default_rng(0).standard_normal((size, size), np.float32)
    return rate(lambda: a @ a, 2.0 * size**3, seconds)


def torch_rate(size: int, seconds: float) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    a = torch.randn(size, size)
    return rate(lambda: a @ a, 2.0 * size**3, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,1024,2048")
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, load average {load}")
    print(f"jax {jax.__version__} ({jax.default_backend()}), numpy {np.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"{'size':>6} {'jax GFLOP/s':>12} {'numpy GFLOP/s':>14} {'torch GFLOP/s':>14}")
    for size in (int(value) for value in args.sizes.split(",")):
        torch_value = torch_rate(size, args.seconds)
        torch_cell = f"{torch_value:14.1f}" if torch_value is not None else f"{'(no torch)':>14}"
        print(f"{size:6d} {jax_rate(size, args.seconds):12.1f} {numpy_rate(size, args.seconds):14.1f} {torch_cell}", flush=True)


if __name__ == "__main__":
    main()
