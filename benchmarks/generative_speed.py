"""Updates/s and actions/s of the generative policies (FQL, IDQL, EDP) by sampling steps K,
beside TD3+BC, on random Pendulum-shaped data (3-D states, 1-D actions).

    python benchmarks/generative_speed.py [--updates 500] [--hidden 256] [--only td3bc,edp]

Each update count is timed after a warm-up call that compiles; acting is timed on a batch of 100
states (jitted act, keys split per call). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from offrl.algos import edp, fql, idql, td3_bc
from offrl.train.fused import make_fused_update
from offrl.types import Spec


def random_data(size: int = 10_000) -> dict[str, jax.Array]:
    rng = np.random.default_rng(0)
    return {
        "observations": jnp.asarray(rng.normal(size=(size, 3)), jnp.float32),
        "actions": jnp.asarray(rng.uniform(-1, 1, (size, 1)), jnp.float32),
        "rewards": jnp.asarray(rng.normal(size=size), jnp.float32),
        "next_observations": jnp.asarray(rng.normal(size=(size, 3)), jnp.float32),
        "dones": jnp.zeros(size, jnp.float32),
    }


def measure(algo, config, updates: int, data) -> tuple[float, float]:
    state = algo.init(jax.random.PRNGKey(0), Spec(3, 1), config)
    fused = jax.jit(make_fused_update(algo, config, updates))
    state, _ = fused(state, data, jax.random.PRNGKey(1))  # compile
    jax.block_until_ready(state)
    start = time.perf_counter()
    state, _ = fused(state, data, jax.random.PRNGKey(2))
    jax.block_until_ready(state)
    updates_per_second = updates / (time.perf_counter() - start)
    act = jax.jit(lambda s, o, k: algo.act(s, o, k, True))
    observations = data["observations"][:100]
    act(state, observations, jax.random.PRNGKey(0)).block_until_ready()
    calls = 20
    start = time.perf_counter()
    for i in range(calls):
        act(state, observations, jax.random.PRNGKey(i)).block_until_ready()
    actions_per_second = calls * 100 / (time.perf_counter() - start)
    return updates_per_second, actions_per_second


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--only", default="", help="comma-separated row name prefixes to time (default: every row)")
    args = parser.parse_args()
    hidden = (args.hidden, args.hidden)
    data = random_data()
    rows = [("td3bc", "-", td3_bc, td3_bc.Config(hidden_dims=hidden))]
    for k in (1, 5, 10):
        rows.append(("fql", k, fql, fql.Config(hidden_dims=hidden, flow_steps=k)))
    for k in (1, 5):
        rows.append(("idql (N=64)", k, idql, idql.Config(hidden_dims=hidden, actor_hidden_dims=hidden, sampling_steps=k)))
    for k in (5, 15):
        rows.append(("edp (N=50, T=1000, dpm3: the default)", k, edp, edp.Config(hidden_dims=hidden, sampling_steps=k)))
    for k in (5, 15):
        rows.append(("edp (N=50, T=100, first_order)", k, edp,
                     edp.Config(hidden_dims=hidden, diffusion_steps=100, sampling_steps=k, solver="first_order")))
    rows.append(("edp action_approximation=False (Diffusion-QL, T=K=5, ancestral)", 5, edp,
                 edp.Config(hidden_dims=hidden, action_approximation=False, diffusion_steps=5, sampling_steps=5, beta_schedule="vp",
                            solver="first_order")))
    if args.only:
        rows = [row for row in rows if row[0].startswith(tuple(args.only.split(",")))]
    print(f"machine: {platform.machine()} {platform.processor() or ''}, jax {jax.__version__} on {jax.devices()[0].platform}; "
          f"networks {hidden}, batch 256, {args.updates} updates per timing\n")
    print("| algorithm | K | updates/s | actions/s (batch 100) |\n|---|---|---|---|")
    for name, k, algo, config in rows:
        ups, aps = measure(algo, config, args.updates, data)
        print(f"| {name} | {k} | {ups:,.0f} | {aps:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
