"""How a program holds several seeds: `vmap` (batched maths, fast on a GPU) or `map` (the seeds
one after another inside the same compiled program, `lax.map`).

On this project's CPUs a vmapped update runs its batched matmuls well below the rate of the plain
ones (benchmarks/seeds.py: 5 vmapped TD3+BC seeds gave 0.46x one seed's total throughput), so
CPU defaults to `map`, which keeps the one-program design (one compile, one host round-trip per
chunk for all seeds) at sequential throughput; accelerators default to `vmap`.
"""

from __future__ import annotations

from typing import Callable

import jax

SEED_AXES = ("auto", "vmap", "map")


def resolve_seed_axis(axis: str) -> str:
    return ("map" if jax.default_backend() == "cpu" else "vmap") if axis == "auto" else axis


def seed_axis(fused: Callable, axis: str = "auto") -> Callable:
    """`fused(state, data, key)` lifted to stacked states and keys (leading seed axis); data shared."""
    if resolve_seed_axis(axis) == "vmap":
        return jax.vmap(fused, in_axes=(0, None, 0))

    def mapped(states, data, keys):
        return jax.lax.map(lambda member: fused(member[0], data, member[1]), (states, keys))

    return mapped
