"""The sweep directory and its index.

Layout (the same whichever engine ran the trials):

    SWEEP_DIR/
      sweep.json          the spec (normalised) and its hash, the dataset fingerprints, one entry
                          per trial (status, attempts, error, scores) and the history of sweep runs
      trials.jsonl        append-only event log: started / finished / failed / diverged /
                          interrupted / skipped / moved_aside, one JSON line each
      selection.json      the best configuration per (algorithm, dataset), see offrl.sweep.select
      .jax-cache/         compiled programs shared by the trials (safe to delete)
      trials/<id>/        one trial: `seed_<s>/` run directories (offrl.train.multi_seed),
                          trial.json (its definition, spec hash, status, validation returns)
                          and trial.log (the trial process's output)

Only the process running the sweep writes sweep.json and trials.jsonl; a trial writes only
inside its own directory. The sweep directory is locked while a sweep runs in it.
"""

from __future__ import annotations

import json
import os
import threading
import time

try:
    import fcntl
except ImportError:  # not POSIX: no cross-process lock
    fcntl = None
from pathlib import Path
from typing import Any

from offrl.atomic import atomic_write_json
from offrl.errors import ConfigError

INDEX_NAME = "sweep.json"
EVENTS_NAME = "trials.jsonl"
SELECTION_NAME = "selection.json"
TRIAL_RECORD = "trial.json"
TRIAL_LOG = "trial.log"
JAX_CACHE_NAME = ".jax-cache"  # the local executor's shared compilation cache (offrl.sweep.trial)
FORMAT = 1
_LOCK_NAME = ".offrl-sweep.lock"

# A trial is done (skipped on a rerun) in these states; every other state runs again.
DONE = ("finished", "diverged")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def trial_dir(sweep_dir: str | Path, trial_id: str) -> Path:
    return Path(sweep_dir) / "trials" / trial_id


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as error:
        raise ConfigError(f"'{path}' is not valid JSON ({error.msg}); expected a file written by offrl sweep.") from None


def trial_state(directory: Path, spec_hash: str) -> tuple[str, dict[str, Any]]:
    """(state, trial.json) of a trial directory.

    States: "pending" (never started), "finished", "diverged", "failed", "interrupted" (a
    process ended without saying how: killed, or the machine went down), "stale" (written by
    another spec). finished/diverged also require every seed's summary to agree.
    """
    record = read_json(directory / TRIAL_RECORD)
    if record is None:
        has_runs = directory.is_dir() and any(directory.glob("seed_*"))
        return ("interrupted" if has_runs else "pending"), {}
    if record.get("spec_hash") != spec_hash:
        return "stale", record
    status = record.get("status")
    if status in DONE:
        seeds = record.get("trial", {}).get("seeds", [])
        statuses = [(read_json(directory / f"seed_{seed}" / "summary.json") or {}).get("status") for seed in seeds]
        if not seeds or any(s not in DONE for s in statuses):
            return "interrupted", record
        if status == "finished" and any(s != "finished" for s in statuses):
            return "interrupted", record
        return status, record
    if status == "failed":
        return "failed", record
    return "interrupted", record


class SweepIndex:
    """sweep.json + trials.jsonl of one sweep directory, written by the sweep's own process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._lock_file = None
        self.data: dict[str, Any] = {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open_for(cls, path: str | Path, spec, trials: list[dict[str, Any]]) -> "SweepIndex":
        """Create the index for `spec`, or open an existing one made by the same spec (else refuse)."""
        index = cls(path)
        try:
            index.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"Cannot create sweep directory '{index.path}' ({error.strerror}); expected a writable path.") from None
        index.lock()
        try:
            existing = read_json(index.path / INDEX_NAME)
            if existing is None:
                if any(p.name not in (_LOCK_NAME, JAX_CACHE_NAME) for p in index.path.iterdir()):
                    raise ConfigError(f"Directory '{index.path}' is not empty and holds no {INDEX_NAME}; expected a new "
                                      "or empty directory for the sweep, or an existing sweep directory.")
                index.data = {
                    "format": FORMAT,
                    "name": spec.name,
                    "spec_file": spec.where,
                    "spec_hash": spec.hash,
                    "spec": spec.to_json(),
                    "created_at": now(),
                    "datasets": {},
                    "trials": {trial["id"]: _entry(trial) for trial in trials},
                    "runs": [],
                }
                index.save()
            else:
                index.data = existing
                index._check_same_spec(spec, trials)
        except BaseException:
            index.unlock()
            raise
        return index

    @classmethod
    def read(cls, path: str | Path) -> "SweepIndex":
        index = cls(path)
        data = read_json(index.path / INDEX_NAME)
        if data is None:
            raise ConfigError(f"'{index.path}' is not a sweep directory (no {INDEX_NAME}); expected a directory written by `offrl sweep`.")
        index.data = data
        return index

    def _check_same_spec(self, spec, trials: list[dict[str, Any]]) -> None:
        recorded_hash = self.data.get("spec_hash")
        if recorded_hash != spec.hash and not _same_but_for_new_train_defaults(self.data.get("spec", {}), spec):
            recorded = dict(self.data.get("spec", {}))
            recorded.pop("name", None)
            changed = _changed_keys(recorded, spec.values)
            detail = f"; changed: {', '.join(changed[:5])}" if changed else ""
            raise ConfigError(
                f"Sweep directory '{self.path}' holds trials of a different spec (hash {recorded_hash}; "
                f"{spec.where} has hash {spec.hash}{detail}), and results of two specs are never mixed; "
                "expected the original spec to resume it, or a new output directory (--out) for this one."
            )
        recorded_ids = sorted(self.data.get("trials", {}))
        ids = sorted(trial["id"] for trial in trials)
        if recorded_ids != ids and not _adopt_recorded_ids(self.data.get("trials", {}), trials):
            raise ConfigError(
                f"Sweep directory '{self.path}' lists other trials than {spec.where} expands to today (offrl's "
                "default hyperparameters or its random search may have changed); expected a new output directory (--out)."
            )

    def lock(self) -> None:
        if fcntl is None or self._lock_file is not None:
            return
        handle = open(self.path / _LOCK_NAME, "a")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise ConfigError(f"Sweep directory '{self.path}' is in use by another `offrl sweep`; expected one sweep "
                              "per directory at a time (wait for it to end).") from None
        self._lock_file = handle

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # ------------------------------------------------------------------ writing
    def save(self) -> None:
        with self._lock:
            atomic_write_json(self.path / INDEX_NAME, self.data)

    def event(self, trial_id: str | None, event: str, **details: Any) -> None:
        record = {"time": now(), "trial": trial_id, "event": event, **details}
        with self._lock:
            with open(self.path / EVENTS_NAME, "a") as file:
                file.write(json.dumps(record, sort_keys=True) + "\n")
                file.flush()
                os.fsync(file.fileno())

    def events(self) -> list[dict[str, Any]]:
        file = self.path / EVENTS_NAME
        if not file.exists():
            return []
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]

    def update_trial(self, trial_id: str, **changes: Any) -> None:
        with self._lock:
            self.data["trials"][trial_id].update(changes)
        self.save()

    @property
    def spec_hash(self) -> str:
        return self.data["spec_hash"]

    @property
    def trials(self) -> dict[str, dict[str, Any]]:
        return self.data["trials"]


def _entry(trial: dict[str, Any]) -> dict[str, Any]:
    return {
        "algorithm": trial["algorithm"],
        "dataset": trial["dataset"],
        "dataset_label": trial["dataset_label"],
        "hyperparameters": trial["hyperparameters"],
        "seeds": trial["seeds"],
        "run_dir": f"trials/{trial['id']}",
        "status": "pending",
        "attempts": 0,
        "definition": trial,
    }


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        changed = []
        for key in sorted(set(old) | set(new)):
            changed += _changed_keys(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
        return changed
    return [] if old == new else [prefix or "(the whole spec)"]


def _adopt_recorded_ids(recorded: dict[str, Any], trials: list[dict[str, Any]]) -> bool:
    """When each of today's trials differs from one recorded trial only by algorithm Config fields
    offrl added since (absent from the record) at their defaults, give today's trials the recorded
    ids and return True: those trials ran with exactly that behaviour, so the sweep resumes (as for
    new TrainConfig fields, `_same_but_for_new_train_defaults`). Otherwise change nothing, return False."""
    from offrl.algos import get_algorithm
    from offrl.train.configs import config_to_json

    if len(recorded) != len(trials):
        return False
    adopted: dict[int, str] = {}
    for position, trial in enumerate(trials):
        defaults = config_to_json(get_algorithm(trial["algorithm"]).Config())
        today = json.loads(json.dumps(trial["algorithm_config"]))
        for trial_id, entry in recorded.items():
            definition = entry.get("definition") or {}
            old = definition.get("algorithm_config")
            if (trial_id in adopted.values() or old is None or definition.get("algorithm") != trial["algorithm"]
                    or definition.get("dataset") != trial["dataset"] or not set(old) <= set(today)):
                continue
            added = set(today) - set(old)
            if all(today[name] == old[name] for name in old) and all(today[name] == json.loads(json.dumps(defaults[name]))
                                                                     for name in added):
                adopted[position] = trial_id
                break
        else:
            return False
    for position, trial_id in adopted.items():
        trials[position]["id"] = trial_id
    return True


def _same_but_for_new_train_defaults(recorded: dict[str, Any], spec) -> bool:
    """True when `spec` differs from the recorded one only by TrainConfig fields that offrl added
    after the sweep was written (absent from its record) and that the spec leaves at their defaults:
    the trials ran with exactly that behaviour, so the sweep resumes."""
    import dataclasses

    from offrl.sweep.spec import spec_hash
    from offrl.train.offline import TrainConfig

    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    recorded_train = recorded.get("train", {})
    upgraded_train = dict(recorded_train)
    for name, value in spec.values.get("train", {}).items():
        if name not in recorded_train:
            if name not in defaults or value != defaults[name]:
                return False
            upgraded_train[name] = value
    upgraded = {key: value for key, value in recorded.items() if key != "name"}
    upgraded["train"] = upgraded_train
    return spec_hash(upgraded) == spec.hash

