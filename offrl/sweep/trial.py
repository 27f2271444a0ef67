"""One trial: every seed of one (algorithm, dataset, hyperparameters), in one process.

`python -m offrl.sweep.trial SWEEP_DIR TRIAL_ID` runs the trial TRIAL_ID of the sweep in
SWEEP_DIR (the local executor starts one such process per trial: JAX and fork do not mix, and a
killed trial then kills nothing else). `run_trial` is the same thing as a function (the Ray
executor calls it inside its task).

The seeds train together through `offrl.train.multi_seed.train_seeds` (one vmapped program).
A trial directory that holds an earlier attempt is resumed from its checkpoints; an attempt
that cannot be resumed (its seed directories are incomplete) is moved to `stale/` inside the
trial directory, never deleted. The trial's outcome goes to trial.json; a bad configuration,
a crash or divergence ends the trial, never the sweep.

Validation rollouts (selection criterion "validation", see offrl.sweep.select): after training,
each finished seed's final policy is rolled out for `episodes` episodes on environment seeds
disjoint from those of the test evaluation, so choosing a configuration never looks at the
test episodes.

A test hook, off unless its environment variable is set: `OFFRL_TEST_STALL_AFTER_STEP=N` makes
the first attempt of a trial (of the trial named by `OFFRL_TEST_STALL_TRIAL`, if that is set too)
kill its own process with SIGKILL at its first metrics line after update N, i.e. just after the
checkpoint of step N when checkpoints fall on N. The trial is left exactly as a kill leaves it
(trial.json and the seeds' summaries say running), at a point that does not depend on timing;
the rerun (attempt 2) is never stopped. tests/test_sweep*.py use it to kill a trial and compare
its resumed result with an uninterrupted one.
"""

from __future__ import annotations

import inspect
import os
import shutil
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from offrl.atomic import atomic_write_json
from offrl.errors import ConfigError, OffrlInputError
from offrl.sweep.index import INDEX_NAME, TRIAL_RECORD, now, read_json

# The engine evaluates seed s on environment seeds s + 10_000 + i (offrl/train/offline.py,
# `_evaluation_record`); validation uses VALIDATION_SEED_BASE + 1000 * s + i, a disjoint range
# for seeds below 989_000 and fewer than 1000 episodes (the spec allows at most 1000).
TEST_SEED_OFFSET = 10_000
VALIDATION_SEED_BASE = 1_000_000
VALIDATION_SEED_STRIDE = 1000

EXIT_FINISHED, EXIT_FAILED, EXIT_BAD_CONFIG, EXIT_DIVERGED = 0, 1, 2, 3
STALL_AFTER_STEP_ENV, STALL_TRIAL_ENV = "OFFRL_TEST_STALL_AFTER_STEP", "OFFRL_TEST_STALL_TRIAL"


def validation_env_seed(seed: int) -> int:
    return VALIDATION_SEED_BASE + VALIDATION_SEED_STRIDE * seed


# ------------------------------------------------------------------ shared compilation cache
# Trials of one sweep compile the same programs (an algorithm's init, the fused update for equal
# shapes). JAX's persistent compilation cache lets later trials load them instead of compiling:
# a tiny BC trial here took 32 s cold and 10 s warm, with bit-identical results. Cached CPU
# code is built for the machine's CPU, which JAX's cache key does not record, so each CPU kind
# gets its own subdirectory. A JAX_COMPILATION_CACHE_DIR set by the user is left alone.
def compilation_cache_dir(base: str | Path) -> Path:
    import hashlib
    import platform

    flags = ""
    try:
        with open("/proc/cpuinfo") as file:
            flags = next((line for line in file if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    machine = hashlib.sha256(f"{platform.machine()}|{platform.processor()}|{flags}".encode()).hexdigest()[:12]
    return Path(base) / f"{platform.machine() or 'cpu'}-{machine}"


def compilation_cache_env(base: str | Path) -> dict[str, str]:
    """Environment variables that give a trial process the shared cache (empty if the user set one)."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return {}
    return {"JAX_COMPILATION_CACHE_DIR": str(compilation_cache_dir(base)),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def use_compilation_cache(base: str | Path) -> None:
    """The same inside this process (a Ray worker), before it compiles anything for the trial."""
    import jax

    if os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", str(compilation_cache_dir(base)))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def run_trial(
    trial: dict[str, Any],
    directory: str | Path,
    spec_hash: str,
    dataset=None,
    expected_fingerprint: str | None = None,
) -> dict[str, Any]:
    """Train (or resume) `trial` in `directory`; returns the trial record also written to trial.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    previous = read_json(directory / TRIAL_RECORD) or {}
    record: dict[str, Any] = {
        "trial": trial,
        "spec_hash": spec_hash,
        "status": "running",
        "attempt": int(previous.get("attempt", 0)) + 1 if previous.get("spec_hash") == spec_hash else 1,
        "started_at": now(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "moved_aside": list(previous.get("moved_aside", [])) if previous.get("spec_hash") == spec_hash else [],
    }
    if previous and previous.get("spec_hash") != spec_hash:
        record["moved_aside"].append(_move_aside(directory, record["attempt"], "written by another spec"))
    atomic_write_json(directory / TRIAL_RECORD, record)
    started = time.perf_counter()
    try:
        _train_and_validate(trial, directory, dataset, expected_fingerprint, record)
    except KeyboardInterrupt:  # Ctrl-C: the runs are marked interrupted; say so here too, then stop
        record.update(status="interrupted", error="interrupted (Ctrl-C)", finished_at=now(),
                      seeds_status=_seed_statuses(directory, trial["seeds"]))
        atomic_write_json(directory / TRIAL_RECORD, record)
        raise
    except OffrlInputError as error:
        record.update(status="failed", error=str(error), error_kind="bad input")
    except Exception as error:  # noqa: BLE001 - any crash ends this trial only; the sweep goes on
        from offrl.train.offline import DivergenceError

        if isinstance(error, DivergenceError):
            record.update(status="diverged", error=str(error))
        else:
            record.update(status="failed", error=f"{type(error).__name__}: {error}", error_kind="crash",
                          traceback=traceback.format_exc())
    record["seeds_status"] = _seed_statuses(directory, trial["seeds"])
    if record["status"] == "running":
        statuses = set(record["seeds_status"].values())
        if statuses == {"finished"}:
            record["status"] = "finished"
        elif statuses <= {"finished", "diverged"}:
            record["status"] = "diverged"
            record["error"] = "; ".join(f"seed {seed}: {_seed_error(directory, seed)}" for seed, status
                                        in record["seeds_status"].items() if status == "diverged")
        else:
            record.update(status="failed", error=f"seeds ended as {record['seeds_status']}; expected every seed finished.")
    record["finished_at"] = now()
    record["seconds"] = round(time.perf_counter() - started, 3)
    atomic_write_json(directory / TRIAL_RECORD, record)
    return record


def _train_and_validate(trial, directory: Path, dataset, expected_fingerprint, record) -> None:
    from offrl.algos import get_algorithm
    from offrl.data.fingerprint import dataset_fingerprint
    from offrl.train.configs import config_from_json, validate_algorithm_config
    from offrl.train.multi_seed import train_seeds
    from offrl.train.offline import TrainConfig

    where = f"trial {trial['id']}"
    algo = get_algorithm(trial["algorithm"])
    algo_config = config_from_json(algo.Config, trial["algorithm_config"], where=where)
    try:
        validate_algorithm_config(algo_config)
        train = config_from_json(TrainConfig, trial["train"], where=where)
        train.validate()
    except ConfigError as error:  # "--batch-size is 0; ..." -> which trial and which hyperparameters
        raise ConfigError(f"{where} ({trial['algorithm']} {trial['hyperparameters']}): {error}") from None
    if dataset is None:
        from offrl.data.registry import resolve_dataset

        dataset = resolve_dataset(trial["dataset"], data_dir=trial.get("data_dir"), clip_actions=bool(trial.get("clip_actions")))
    if expected_fingerprint is not None:
        found = dataset_fingerprint(dataset)["sha256"]
        if found != expected_fingerprint:
            raise ConfigError(f"Dataset {trial['dataset']!r} changed since the sweep started (fingerprint {found[:12]}, "
                              f"recorded {expected_fingerprint[:12]}); expected the same data for every trial.")
    reference = {"argument": trial["dataset"], "name": dataset.metadata.name, "source": dataset.metadata.source,
                 "data_dir": trial.get("data_dir"), "clip_actions": bool(trial.get("clip_actions")),
                 **({"preset": trial["preset"]} if "preset" in trial else {}),
                 **({"budget_scale": trial["budget_scale"]} if "budget_scale" in trial else {})}
    seeds = trial["seeds"]
    resume = _prepare_directory(directory, seeds, record)
    record["resumed"] = resume
    atomic_write_json(directory / TRIAL_RECORD, record)
    keywords = {"resume": True} if resume else {}
    results = train_seeds(algo, algo_config, dataset, train, directory, seeds, dataset_reference=reference,
                          progress=False, on_log=_stall_point(trial["id"], record["attempt"]), **keywords)
    criterion = trial["selection"]["criterion"]
    if criterion == "validation":
        record["validation"] = _validate(results, seeds, dataset, trial["selection"]["episodes"], directory)


def _stall_point(trial_id: str, attempt: int):
    """The test hook of the module docstring: an `on_log` callback that kills this process, or None."""
    after = os.environ.get(STALL_AFTER_STEP_ENV)
    if not after or attempt != 1 or os.environ.get(STALL_TRIAL_ENV, trial_id) != trial_id:
        return None
    after = int(after)

    def stall(record: dict[str, Any]) -> None:
        if record["step"] > after:
            os.kill(os.getpid(), signal.SIGKILL)

    return stall


def _prepare_directory(directory: Path, seeds: list[int], record: dict[str, Any]) -> bool:
    """True to resume the seeds already there; moves an attempt that cannot be resumed aside."""
    from offrl.train.multi_seed import seed_run_dir, train_seeds

    present = [seed_run_dir(directory, seed) for seed in seeds]
    started = [path for path in present if path.exists() and any(path.iterdir())]
    if not started:
        return False
    can_resume = "resume" in inspect.signature(train_seeds).parameters
    if can_resume and all((path / "config.json").is_file() for path in present):
        return True
    why = "seed directories incomplete" if can_resume else "this offrl cannot resume multi-seed runs"
    record["moved_aside"].append(_move_aside(directory, record["attempt"], why, with_record=False))
    return False


def _move_aside(directory: Path, attempt: int, why: str, with_record: bool = True) -> dict[str, str]:
    """Move the seed directories (and the trial record) of an earlier attempt to stale/."""
    target = directory / "stale" / f"attempt-{attempt}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(directory.iterdir()):
        if path.name.startswith("seed_") or (with_record and path.name == TRIAL_RECORD):
            shutil.move(str(path), str(target / path.name))
    return {"to": str(target.relative_to(directory)), "why": why, "at": now(), "attempt": attempt}


def _validate(results, seeds, dataset, episodes: int, directory: Path) -> dict[str, Any]:
    """Roll out each finished seed's final policy on validation environment seeds."""
    import numpy as np

    from offrl.evaluate.rollout import evaluate_policy
    from offrl.evaluate.scores import normalized_score

    meta = dataset.metadata
    has_reference = meta.ref_min_score is not None and meta.ref_max_score is not None
    per_seed = {}
    for seed, result in zip(seeds, results):
        if result.summary.get("status") != "finished" or result.policy is None:
            continue
        env_id = (read_json(Path(result.run_dir) / "config.json") or {}).get("env_id") or meta.env_id
        env_seed = validation_env_seed(seed)
        stats = evaluate_policy(result.policy, env_id, episodes, seed=env_seed)
        entry = {"env_id": env_id, "env_seeds": [env_seed, env_seed + episodes - 1], "return_mean": stats.mean_return,
                 "returns": stats.returns.tolist()}
        if has_reference:
            entry["normalized_score"] = float(np.mean(normalized_score(stats.returns, meta.ref_min_score, meta.ref_max_score)))
        per_seed[str(seed)] = entry
    return {"episodes": episodes, "per_seed": per_seed}


def _seed_statuses(directory: Path, seeds: list[int]) -> dict[str, str | None]:
    return {str(seed): (read_json(directory / f"seed_{seed}" / "summary.json") or {}).get("status") for seed in seeds}


def _seed_error(directory: Path, seed: str) -> str:
    return (read_json(directory / f"seed_{seed}" / "summary.json") or {}).get("error", "diverged")


def exit_code(record: dict[str, Any]) -> int:
    if record["status"] == "finished":
        return EXIT_FINISHED
    if record["status"] == "diverged":
        return EXIT_DIVERGED
    return EXIT_BAD_CONFIG if record.get("error_kind") == "bad input" else EXIT_FAILED


def run_from_sweep_directory(sweep_dir: str | Path, trial_id: str) -> dict[str, Any]:
    """Run trial `trial_id` as sweep.json in `sweep_dir` defines it (in place)."""
    sweep_dir = Path(sweep_dir)
    index = read_json(sweep_dir / INDEX_NAME)
    if index is None:
        raise ConfigError(f"'{sweep_dir}' is not a sweep directory (no {INDEX_NAME}); expected one written by `offrl sweep`.")
    entry = index.get("trials", {}).get(trial_id)
    if entry is None:
        raise ConfigError(f"Sweep '{sweep_dir}' has no trial {trial_id!r}; expected one of: {', '.join(sorted(index.get('trials', {})))}.")
    trial = entry["definition"]
    fingerprint = (index.get("datasets", {}).get(trial["dataset"]) or {}).get("sha256")
    return run_trial(trial, sweep_dir / "trials" / trial_id, index["spec_hash"], expected_fingerprint=fingerprint)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2:
        print("usage: python -m offrl.sweep.trial SWEEP_DIR TRIAL_ID", file=sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        record = run_from_sweep_directory(*argv)
    except OffrlInputError as error:
        print(f"offrl: error: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except KeyboardInterrupt:
        print(f"trial {argv[1]}: interrupted", file=sys.stderr)
        return 130
    print(f"trial {argv[1]}: {record['status']}" + (f" ({record['error']})" if record.get("error") else ""), flush=True)
    if record.get("traceback"):
        print(record["traceback"], file=sys.stderr)
    return exit_code(record)


if __name__ == "__main__":
    sys.exit(main())
