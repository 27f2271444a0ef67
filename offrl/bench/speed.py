"""Training speed, measured: offrl's fused update beside d3rlpy's, and the machine's own matmul rate.

`offrl bench-speed` (offrl/bench/command.py) prints, per algorithm: offrl's updates/s
through the engine's `make_fused_update` (the same program `offrl train` runs), its compile time,
d3rlpy's updates/s for the same networks and batch in the same run (a subprocess of an interpreter
that has d3rlpy, see offrl/bench/d3rlpy_speed.py), the ratio, and the fraction of the machine's
float32 matmul rate that the update reaches.

That fraction is (matmul FLOPs one update executes) x (updates/s) / (the rate this machine runs
those same matmuls at, as plain 2-D products in a loop of nothing else). The FLOPs are counted by
running the update's jaxpr on real values (`executed_matmuls`): a `lax.cond` counts only the branch
taken, so TD3's every-other-step actor update counts half (XLA's static cost analysis, also
printed, counts both branches every step). 100% would mean nothing but matmuls at full speed;
what is missing is the gather, elementwise work, the optimiser and per-op overhead.

Nothing in the library imports this module; only the command does.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jax_core

from offrl.algos import get_algorithm
from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.train.fused import make_fused_update, sample_batch
from offrl.data.transforms import fit_normalizer
from offrl.envs.factory import make_env
from offrl.evaluate.rollout import evaluate_policy
from offrl.train.offline import TrainConfig, prepare, train_offline
from offrl.train.policy import Policy

OBSERVATION_DIM, ACTION_DIM = 17, 6  # D4RL HalfCheetah
BATCH_SIZE = 256  # issue 9: both libraries at batch 256 (sequence models keep their window batch)
HALFCHEETAH_REFERENCE = (-280.178953, 12135.0)  # D4RL's halfcheetah random / expert returns


def machine_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", load average %.2f %.2f %.2f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    return f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}{load}"


def random_dataset(transitions: int, seed: int = 0, episode_length: int = 1000) -> Dataset:
    """Random transitions of D4RL HalfCheetah shape in episodes cut by timeouts, actions in [-1, 1]."""
    rng = np.random.default_rng(seed)
    starts = np.arange(0, transitions, episode_length)
    timeouts = np.zeros(transitions, bool)
    timeouts[np.append(starts[1:], transitions) - 1] = True
    observations = rng.normal(size=(transitions, OBSERVATION_DIM)).astype(np.float32)
    return Dataset(
        observations=observations,
        actions=rng.uniform(-1, 1, size=(transitions, ACTION_DIM)).astype(np.float32),
        rewards=rng.normal(size=transitions).astype(np.float32),
        next_observations=np.roll(observations, -1, axis=0),
        terminals=np.zeros(transitions, bool),
        timeouts=timeouts,
        episode_starts=starts,
        metadata=DatasetMetadata(name="random-halfcheetah-shape", env_id="HalfCheetah-v5",
                                 ref_min_score=HALFCHEETAH_REFERENCE[0], ref_max_score=HALFCHEETAH_REFERENCE[1],
                                 action_low=-np.ones(ACTION_DIM, np.float32), action_high=np.ones(ACTION_DIM, np.float32)),
    )


def benchmark_config(name: str) -> Any:
    """The algorithm's default Config at the benchmark's batch size (windows keep their own batch)."""
    config = get_algorithm(name).Config()
    if hasattr(config, "context_length"):
        return config
    return replace(config, batch_size=BATCH_SIZE)


# --- counting the matmuls an update executes -------------------------------------------------

def _dot_shape(lhs: tuple, rhs: tuple, dimension_numbers) -> tuple[int, int, int, int]:
    """(batch, m, k, n) of a dot_general: `batch` independent (m, k) @ (k, n) products."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    batch = int(np.prod([lhs[d] for d in lhs_batch]))
    k = int(np.prod([lhs[d] for d in lhs_contract]))
    m = int(np.prod([size for d, size in enumerate(lhs) if d not in lhs_contract and d not in lhs_batch]))
    n = int(np.prod([size for d, size in enumerate(rhs) if d not in rhs_contract and d not in rhs_batch]))
    return batch, m, k, n


def _contains_dot(jaxpr) -> bool:
    return any(eqn.primitive.name == "dot_general" or any(_contains_dot(sub) for sub in jax_core.jaxprs_in_params(eqn.params))
               for eqn in jaxpr.eqns)


def _needs_values(eqn) -> bool:
    """Whether the matmuls under `eqn` depend on run-time values: a cond or while loop holding one."""
    subs = list(jax_core.jaxprs_in_params(eqn.params))
    if eqn.primitive.name in ("cond", "while"):
        return any(_contains_dot(sub) for sub in subs)
    return any(_needs_values(inner) for sub in subs for inner in sub.eqns)


def _static_dots(eqns, dots: Counter, times: int = 1) -> None:
    """Add the dot_generals of `eqns` (free of value-dependent control flow) to `dots`, `times` over."""
    for eqn in eqns:
        if eqn.primitive.name == "dot_general":
            batch, m, k, n = _dot_shape(eqn.invars[0].aval.shape, eqn.invars[1].aval.shape, eqn.params["dimension_numbers"])
            dots[(m, k, n)] += batch * times
        repeat = eqn.params["length"] if eqn.primitive.name == "scan" else 1
        for sub in jax_core.jaxprs_in_params(eqn.params):
            _static_dots(sub.eqns, dots, times * repeat)


class _Runner:
    """Evaluates a jaxpr on concrete values, counting every dot_general it executes.

    Runs of equations without value-dependent control flow are compiled as one program each (and
    counted from their shapes); a cond enters the branch its index selects, loops iterate for real.
    """

    def __init__(self):
        self.dots: Counter = Counter()
        self._programs: dict = {}

    def closed(self, closed, args) -> list:
        if isinstance(closed, jax_core.ClosedJaxpr):
            return self.run(closed.jaxpr, closed.consts, args)
        return self.run(closed, [], args)

    def run(self, jaxpr, consts, args) -> list:
        env = dict(zip(jaxpr.constvars, consts))
        env.update(zip(jaxpr.invars, args))

        def read(var):
            return var.val if isinstance(var, jax_core.Literal) else env[var]

        start = 0
        for index, eqn in enumerate([*jaxpr.eqns, None]):
            if eqn is not None and not _needs_values(eqn):
                continue
            if start < index:
                env.update(self._segment(jaxpr, start, index, env))
            start = index + 1
            if eqn is None:
                break
            outs = self._control(eqn, [read(var) for var in eqn.invars])
            env.update((var, value) for var, value in zip(eqn.outvars, outs) if not isinstance(var, jax_core.DropVar))
        return [read(var) for var in jaxpr.outvars]

    def _segment(self, jaxpr, start: int, stop: int, env: dict) -> dict:
        eqns = jaxpr.eqns[start:stop]
        key = (id(jaxpr), start)
        if key not in self._programs:
            defined = {var for eqn in eqns for var in eqn.outvars}
            inputs = list(dict.fromkeys(var for eqn in eqns for var in eqn.invars
                                        if not isinstance(var, jax_core.Literal) and var not in defined))
            outputs = [var for eqn in eqns for var in eqn.outvars if not isinstance(var, jax_core.DropVar)]
            names = jax_core.DebugInfo("a run of equations", "offrl.bench.speed", tuple(map(str, inputs)),
                                       tuple(map(str, outputs)))
            segment = jax_core.ClosedJaxpr(jax_core.Jaxpr([], inputs, outputs, eqns, debug_info=names), [])
            self._programs[key] = (inputs, outputs, jax.jit(jax_core.jaxpr_as_fun(segment)))
        inputs, outputs, program = self._programs[key]
        _static_dots(eqns, self.dots)
        return dict(zip(outputs, program(*[env[var] for var in inputs])))

    def _control(self, eqn, values) -> list:
        name, params = eqn.primitive.name, eqn.params
        if name == "cond":
            return self.closed(params["branches"][int(values[0])], values[1:])
        if name == "while":
            counts = (params["cond_nconsts"], params["body_nconsts"])
            cond_consts, body_consts, carry = values[: counts[0]], values[counts[0]: sum(counts)], values[sum(counts):]
            while bool(self.closed(params["cond_jaxpr"], [*cond_consts, *carry])[0]):
                carry = self.closed(params["body_jaxpr"], [*body_consts, *carry])
            return carry
        if name == "scan":
            split = (params["num_consts"], params["num_consts"] + params["num_carry"])
            consts, carry, xs = values[: split[0]], values[split[0]: split[1]], values[split[1]:]
            ys = []
            for i in (range(params["length"])[::-1] if params["reverse"] else range(params["length"])):
                outs = self.closed(params["jaxpr"], [*consts, *carry, *[x[i] for x in xs]])
                carry, y = outs[: params["num_carry"]], outs[params["num_carry"]:]
                ys.append(y)
            ys = ys[::-1] if params["reverse"] else ys
            return [*carry, *[jnp.stack(column) for column in zip(*ys)]]
        (inner,) = [params[key] for key in ("jaxpr", "call_jaxpr", "fun_jaxpr") if key in params][:1]
        return self.closed(inner, values)


def executed_matmuls(algo, config, state, data, updates: int = 4) -> tuple[Counter, Any]:
    """{(m, k, n): products per update} that `updates` consecutive updates execute, averaged."""
    custom_sample = getattr(algo, "sample", None)

    def step(state, data, key):
        batch = custom_sample(data, key, config) if custom_sample else sample_batch(data, key, config.batch_size)
        return algo.update(state, batch, config)[0]

    runner = _Runner()
    key = jax.random.PRNGKey(0)
    closed = jax.make_jaxpr(step)(state, data, key)
    treedef = jax.tree.structure(state)
    for _ in range(updates):
        key, step_key = jax.random.split(key)
        state = jax.tree.unflatten(treedef, runner.closed(closed, jax.tree.leaves((state, data, step_key))))
    return Counter({shape: count / updates for shape, count in runner.dots.items()}), state


def matmul_flops(dots: Counter) -> float:
    return sum(2 * m * k * n * count for (m, k, n), count in dots.items())


def matmul_rate(dots: Counter, seconds: float = 1.0) -> float:
    """FLOP/s of these products (with these multiplicities), each a plain 2-D product.

    One loop iteration runs every product (four updates' worth, so that half-counted ones are
    whole) on operands of its own, each accumulated into an output of its own: nothing but the
    products and the adds of their outputs. They may run side by side, as the update's own
    independent products may: this is the best rate the machine gives these sizes.
    """
    rng = np.random.default_rng(0)
    products = []
    for (m, k, n), count in dots.items():
        for _ in range(max(1, round(count * 4))):  # distinct operands: XLA would merge identical products
            products.append(tuple(jnp.asarray(rng.normal(size=shape) / np.sqrt(k), jnp.float32) for shape in ((m, k), (k, n))))
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in products)

    def timed(loops: int) -> float:
        def body(_, outputs):
            # The barrier keeps XLA from hoisting the loop-invariant products out of the loop.
            operands = jax.lax.optimization_barrier(products)
            return tuple(out + a @ b for out, (a, b) in zip(outputs, operands))

        initial = tuple(jnp.zeros((a.shape[0], b.shape[1])) for a, b in products)
        program = jax.jit(lambda outputs: jax.lax.fori_loop(0, loops, body, outputs))
        jax.block_until_ready(program(initial))
        started = time.perf_counter()
        jax.block_until_ready(program(initial))
        return time.perf_counter() - started

    loops = max(1, int(seconds / max(timed(1), 1e-6)))
    return flops * loops / timed(loops)


def square_matmul_rate(size: int = 256) -> float:
    """FLOP/s of float32 (size x size) @ (size x size) products, the benchmark's headline figure."""
    return matmul_rate(Counter({(size, size, size): 4}), seconds=0.5)


# --- offrl's side -----------------------------------------------------------------------------

def measure_offrl(name: str, dataset: Dataset, steps: int, chunk: int) -> dict[str, Any]:
    """Steady-state updates/s (best of steps // chunk calls, after one warm-up call) and compile time."""
    algo = get_algorithm(name)
    config = benchmark_config(name)
    _, data = prepare(algo, config, dataset, None)
    state = algo.init(jax.random.PRNGKey(0), dataset.spec, config)
    key = jax.random.PRNGKey(1)
    started = time.perf_counter()
    compiled = jax.jit(make_fused_update(algo, config, chunk)).lower(state, data, key).compile()
    compile_seconds = time.perf_counter() - started
    state, metrics = compiled(state, data, key)
    jax.block_until_ready(metrics)
    best = float("inf")
    for call in range(max(1, steps // chunk)):
        started = time.perf_counter()
        state, metrics = compiled(state, data, jax.random.fold_in(key, call))
        jax.block_until_ready(metrics)
        best = min(best, time.perf_counter() - started)
    analysis = jax.jit(make_fused_update(algo, config, 1)).lower(state, data, key).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else (analysis or {})
    dots, _ = executed_matmuls(algo, config, state, data)
    return {"updates_per_second": chunk / best, "compile_seconds": compile_seconds, "batch": config.batch_size,
            "context": getattr(config, "context_length", None), "xla_gflop": analysis.get("flops", float("nan")) / 1e9,
            "matmul_gflop": matmul_flops(dots) / 1e9, "matmul_rate_gflops": matmul_rate(dots) / 1e9}


# --- d3rlpy's side (a subprocess) ---------------------------------------------------------------

D3RLPY_ALGORITHMS = ("bc", "td3bc", "iql", "cql", "awac", "rebrac", "calql", "dt")


def d3rlpy_settings(name: str) -> dict[str, Any]:
    """What d3rlpy_speed.py needs to build the same networks and batch as offrl's Config."""
    config = benchmark_config(name)
    settings = {"name": name, "batch_size": config.batch_size, "hidden_dims": list(config.hidden_dims)}
    for field in ("num_sampled_actions", "cql_weight", "critic_layer_norm", "actor_layer_norm", "context_length",
                  "num_heads", "max_episode_steps", "dropout_rate"):
        if hasattr(config, field):
            settings[field] = getattr(config, field)
    if name == "dt":
        settings.update(embedding_dim=config.hidden_dims[0], num_layers=len(config.hidden_dims))
    return settings


def measure_d3rlpy(python: str, names: list[str], transitions: int, steps: int, threads: list[int],
                   blocks: int, timeout: float | None = None) -> dict[str, Any]:
    """Run d3rlpy_speed.py under `python` for `names`; its JSON answer, or {"error": ...}."""
    request = {"algorithms": [d3rlpy_settings(name) for name in names], "transitions": transitions,
               "observation_dim": OBSERVATION_DIM, "action_dim": ACTION_DIM, "warmup": max(5, steps // 10),
               "updates": steps, "threads": threads, "blocks": blocks}
    script = Path(__file__).with_name("d3rlpy_speed.py")
    try:
        done = subprocess.run([python, str(script), json.dumps(request)], capture_output=True, text=True,
                              timeout=timeout, cwd=script.parent.parent.parent)
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"error": f"{python}: {error}"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"{python} exited {done.returncode}: {last}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- evaluation throughput and memory --------------------------------------------------------------

def evaluation_throughput(env_id: str = "HalfCheetah-v5", episodes: int = 10) -> dict[str, float]:
    """Env steps/s of `episodes` episodes in one vector env vs one env after another, same jitted policy."""
    algo = get_algorithm("td3bc")
    dataset = random_dataset(10_000)
    policy = Policy(algo, algo.init(jax.random.PRNGKey(0), dataset.spec, algo.Config()),
                    fit_normalizer(dataset, True, False))
    policy(np.zeros((episodes, OBSERVATION_DIM), np.float32)), policy(np.zeros(OBSERVATION_DIM, np.float32))  # compile
    started = time.perf_counter()
    stats = evaluate_policy(policy, env_id, num_episodes=episodes)
    vectorised = stats.lengths.sum() / (time.perf_counter() - started)
    steps, started = 0, time.perf_counter()
    for episode in range(episodes):
        env = make_env(env_id)
        observation, _ = env.reset(seed=episode)
        done = False
        while not done:
            observation, _, terminated, truncated, _ = env.step(policy(observation.astype(np.float32)))
            done, steps = terminated or truncated, steps + 1
        env.close()
    return {"vectorised": float(vectorised), "one_by_one": steps / (time.perf_counter() - started),
            "steps": int(stats.lengths.sum())}


def train_for_memory(transitions: int, steps: int, run_dir: str) -> None:
    """Child process body: a TD3+BC run on `transitions` random transitions; prints its peak RSS (MB)."""
    algo = get_algorithm("td3bc")
    train = TrainConfig(steps=steps, eval_every=0, eval_episodes=10, log_every=min(steps, 1000), checkpoint_every=0)
    train_offline(algo, algo.Config(), random_dataset(transitions), train, run_dir, progress=False)
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_training_memory(transitions: int, steps: int, run_dir: str) -> dict[str, Any]:
    """Peak resident memory (MB) of `offrl`-trained TD3+BC in a fresh process, with the run's seconds."""
    code = f"from offrl.bench.speed import train_for_memory; train_for_memory({transitions}, {steps}, {run_dir!r})"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "seconds": seconds}
