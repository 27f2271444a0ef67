"""Small datasets, configs and comparisons shared by the reliability tests."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import jax
import numpy as np

from dataset_helpers import make_random_dataset
from small_configs import small_config
from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.train.checkpoint import latest_checkpoint, read_payload
from offrl.train.offline import TrainConfig
from offrl.train.initial_state import init_state

# Tiny networks and few updates: the whole reliability directory runs in a few minutes on 2 cores.
SHORT = TrainConfig(steps=200, eval_every=100, log_every=25, checkpoint_every=100, eval_episodes=1, seed=3)
CHUNK = 25  # SHORT's fused chunk: `small_algorithm` compiles the engine's own program for SHORT runs


@dataclass(frozen=True)
class SmallAlgorithm:
    """One algorithm with tiny networks (tests/small_configs.py) on `small_run_dataset`, its data
    laid out as the engine lays it out, and its fused update (CHUNK updates per call) compiled
    once per test process: the contract and determinism loops over every algorithm share it, and
    since it is the very program a SHORT engine run on that dataset compiles, the persistent
    compilation cache serves it to test_train's run of each algorithm too."""

    name: str
    algo: ModuleType
    config: Any
    dataset: Dataset
    data: Any
    fused: Callable  # jitted fused(state, data, key) -> (state, metrics)
    init_key: jax.Array
    train_key: jax.Array

    def init(self):
        return init_state(self.algo, self.init_key, self.dataset.spec, self.config)


@functools.cache
def small_algorithm(name: str) -> SmallAlgorithm:
    from offrl.algos import get_algorithm
    from offrl.train.fused import make_fused_update
    from offrl.train.offline import prepare

    algo = get_algorithm(name)
    config = small_config(algo)
    dataset = small_run_dataset()
    _, data = prepare(algo, config, dataset, dataset.metadata.env_id, SHORT)  # the engine's own layout (transitions, or DT's windows)
    init_key, train_key = jax.random.split(jax.random.PRNGKey(SHORT.seed))
    return SmallAlgorithm(name, algo, config, dataset, data, jax.jit(make_fused_update(algo, config, CHUNK)), init_key, train_key)


@functools.cache
def small_run_dataset() -> Dataset:
    """`pendulum_shaped_dataset()` with a cost on every 20th step (the safe algorithms need costs)."""
    dataset = pendulum_shaped_dataset()
    return dataset.replace(costs=(np.arange(dataset.num_transitions) % 20 == 0).astype(np.float32))


def pendulum_shaped_dataset(seed: int = 0, episodes: int = 8) -> Dataset:
    """Random Pendulum-v1-shaped transitions (obs 3, action 1 in [-2, 2]) with reference scores."""
    metadata = DatasetMetadata(
        name=f"pendulum-shaped-{seed}", env_id="Pendulum-v1", ref_min_score=-1200.0, ref_max_score=-150.0,
        action_low=np.array([-2.0], np.float32), action_high=np.array([2.0], np.float32),
    )
    return make_random_dataset([200] * episodes, obs_dim=3, action_dim=1, seed=seed, metadata=metadata)


def records(path: Path, drop=("updates_per_second",)) -> list[dict]:
    """A .jsonl file's records without the wall-clock fields."""
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in Path(path).read_text().splitlines()]


def final_checkpoint(run_dir: Path) -> dict:
    return read_payload(latest_checkpoint(Path(run_dir) / "checkpoints"))


def assert_same_state(a, b) -> None:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x.reshape(-1).view(np.uint8), y.reshape(-1).view(np.uint8)), "parameters differ"


def assert_same_run(actual: Path, expected: Path) -> None:
    """Bit-identical metrics, evaluations, scores and final checkpoint (state, key, step)."""
    assert records(actual / "metrics.jsonl") == records(expected / "metrics.jsonl")
    assert (actual / "eval.jsonl").read_text() == (expected / "eval.jsonl").read_text()
    summaries = [json.loads((run / "summary.json").read_text()) for run in (actual, expected)]
    for key in ("status", "steps", "final_step", "final_return", "best_return", "best_step",
                "final_normalized_score", "best_normalized_score"):
        assert summaries[0][key] == summaries[1][key], key
    ours, theirs = final_checkpoint(actual), final_checkpoint(expected)
    assert ours["step"] == theirs["step"]
    assert_same_state(ours["state"], theirs["state"])
    assert np.array_equal(ours["key"], theirs["key"])
    assert ours["engine"]["evals"] == theirs["engine"]["evals"]


# ----------------------------------------------------------------- concurrency workers
# Module-level so that multiprocessing's "spawn" children can import them.
def claim_run_directory(path: str, tag: str, barrier) -> str:
    """Create the run directory `path` and write 200 metric lines tagged `tag`; report the outcome."""
    from offrl.errors import ConfigError
    from offrl.train.run_dir import RunDirectory

    barrier.wait()
    try:
        run = RunDirectory.create(path, {"tag": tag})
    except ConfigError as error:
        run, outcome = None, f"refused: {error}"
    else:
        for step in range(200):
            run.append("metrics.jsonl", {"step": step, "tag": tag})
        outcome = "ok"
    barrier.wait()  # a third process tries to open the run while the winner still holds it
    barrier.wait()
    if run is not None:
        run.unlock()
    return outcome


def try_open_run_directory(path: str, barrier) -> str:
    from offrl.errors import ConfigError
    from offrl.train.run_dir import RunDirectory

    barrier.wait()
    barrier.wait()
    try:
        RunDirectory.open(path)
        outcome = "opened"
    except ConfigError as error:
        outcome = f"refused: {error}"
    barrier.wait()
    return outcome


def write_minari_repeatedly(root: str, seed: int, times: int, barrier) -> list[str]:
    """Write dataset `seed` as 'race/data-v0' under `root` `times` times (overwrite=True)."""
    from offrl.data.minari_io import write_minari
    from offrl.errors import DatasetError

    dataset = make_random_dataset([5 + seed, 7, 3 * seed], seed=seed)
    outcomes = []
    barrier.wait()
    for _ in range(times):
        try:
            write_minari(dataset, "race/data-v0", root=root, overwrite=True)
            outcomes.append("ok")
        except DatasetError as error:
            outcomes.append(f"refused: {error}")
        except Exception as error:  # noqa: BLE001 - reported to the test, which fails on it
            outcomes.append(f"CRASH {type(error).__name__}: {error}")
    return outcomes


def _call_and_report(queue, index: int, function, args) -> None:
    try:
        queue.put((index, function(*args)))
    except BaseException as error:  # noqa: BLE001 - reported to the test
        queue.put((index, f"CRASH {type(error).__name__}: {error}"))


def run_in_processes(calls, make_args, parties: int, timeout: float = 300):
    """Run `function(*args)` for each (function, args) in its own spawned process; the shared
    multiprocessing Barrier (`parties`) is appended to each call's args. Returns the results."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # never fork a process that has started JAX
    barrier, queue = context.Barrier(parties), context.Queue()
    processes = [context.Process(target=_call_and_report, args=(queue, i, function, (*make_args(i), barrier)))
                 for i, function in enumerate(calls)]
    for process in processes:
        process.start()
    results = dict(queue.get(timeout=timeout) for _ in processes)
    for process in processes:
        process.join(timeout=30)
    return [results[i] for i in range(len(processes))]
