"""Many seeds of one configuration in one compiled program: `train_seeds`.

The seeds are an axis of the fused update (`vmap`, or `lax.map` on CPU where batched matmuls are
slow: offrl/train/seed_axis.py); the dataset is shared, not copied. Each seed
writes RUN_DIR/seed_<s>/, an ordinary run directory whose config.json records its own seed, so
reports, `load_policy` and `offrl train --resume` treat it like any other run. A seed that
diverges is stopped and marked "diverged"; the others carry on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

from offrl.data.dataset import Dataset
from offrl.errors import ConfigError
from offrl.train.offline import (
    TrainConfig,
    TrainResult,
    check_same_run,
    check_training_inputs,
    finished_result,
    guarded,
    prepare,
    run_record,
    train_members,
)
from offrl.train.run_dir import RunDirectory
from offrl.train.seed_axis import SEED_AXES


def seed_run_dir(run_dir: str | Path, seed: int) -> Path:
    return Path(run_dir) / f"seed_{seed}"


def train_seeds(
    algo: ModuleType,
    algo_config: Any,
    dataset: Dataset,
    train: TrainConfig,
    run_dir: str | Path,
    seeds: Sequence[int],
    dataset_reference: dict[str, Any] | None = None,
    progress: bool = True,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    resume: bool = False,
    axis: str = "auto",
) -> list[TrainResult]:
    """Train one agent per seed in `seeds`, all in one program; results in the order of `seeds`.

    `train.seed` is ignored (each run records its own). With `resume=True` the seed directories
    exist: finished seeds are kept, diverged ones are left as they are, and the rest continue
    together from the newest checkpoint step they share.
    """
    seeds = [int(seed) for seed in seeds]
    if axis not in SEED_AXES:
        raise ConfigError(f"--seed-axis is {axis!r}; expected one of: {', '.join(SEED_AXES)}.")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds gives {seeds}; expected one or more distinct seeds.")
    env_id, has_reference = check_training_inputs(algo_config, dataset, train)
    normalizer, device_data = prepare(algo, algo_config, dataset, env_id, train)
    paths = [seed_run_dir(run_dir, seed) for seed in seeds]
    trains = [dataclasses.replace(train, seed=seed) for seed in seeds]
    records = [run_record(algo, algo_config, dataset, seed_train, env_id, normalizer, dataset_reference) for seed_train in trains]

    results: dict[int, TrainResult] = {}
    runs: list[RunDirectory] = []
    if resume:
        try:
            for seed, path, record in zip(seeds, paths, records):
                run = RunDirectory.open(path)
                runs.append(run)
                check_same_run(run, record)
                summary = run.read_summary() if (run.path / "summary.json").exists() else {}
                if summary.get("status") == "finished":
                    results[seed] = finished_result(algo, algo_config, dataset, run, normalizer, summary)
                elif summary.get("status") == "diverged":
                    results[seed] = TrainResult(run_dir=run.path, policy=None, summary=summary)
        except BaseException:
            for run in runs:
                run.unlock()
            raise
    else:
        taken = [path for path in paths if path.exists() and any(path.iterdir())]
        if taken:
            raise ConfigError(f"Run directory '{taken[0]}' already exists and is not empty; expected a new --run-dir.")
        for path, record in zip(paths, records):
            try:
                runs.append(RunDirectory.create(path, record))
            except BaseException:
                for run in runs:
                    run.unlock()
                raise
    for run, seed in zip(runs, seeds):
        if seed in results:
            run.unlock()
    members = [(run, seed) for run, seed in zip(runs, seeds) if seed not in results]
    if members:
        member_runs = [run for run, _ in members]
        member_seeds = [seed for _, seed in members]
        trained = guarded(member_runs, lambda: train_members(
            algo, algo_config, dataset, train, member_runs, member_seeds, normalizer, device_data, env_id,
            has_reference, progress, on_log, resume, axis,
        ))
        results.update(zip(member_seeds, trained))
    return [results[seed] for seed in seeds]
