"""The run directory: config.json, metrics.jsonl, eval.jsonl, summary.json, checkpoints/.

`summary.json` carries a `status`: "running" while training, then "finished", "failed",
"interrupted" or "diverged". Nothing reads a run as complete unless its status says "finished".
A run that did not finish can be resumed (`offrl.train.offline.resume_offline`): the record
files are cut back to the step of the checkpoint it continues from.
"""

from __future__ import annotations

import json
import time

try:
    import fcntl
except ImportError:  # not POSIX: no cross-process lock
    fcntl = None
from pathlib import Path
from typing import Any

from offrl.errors import ConfigError
from offrl.atomic import atomic_write_bytes, atomic_write_json


_LOCK_NAME = ".offrl-run.lock"


class RunDirectory:
    """One run's files. `create` and `open` take an exclusive lock on the directory (released
    when the process ends, even by SIGKILL), so two processes never write the same run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_file = None

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any]) -> "RunDirectory":
        path = Path(path)
        if path.exists() and any(p.name != _LOCK_NAME for p in path.iterdir()):
            raise ConfigError(f"Run directory '{path}' already exists and is not empty; expected a new path.")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"Cannot create run directory '{path}' ({error.strerror}); expected a writable path.") from None
        run = cls(path)
        run.lock()
        # Checked again under the lock: another process may have claimed the path meanwhile.
        if any(p.name != _LOCK_NAME for p in path.iterdir()):
            run.unlock()
            raise ConfigError(f"Run directory '{path}' already exists and is not empty; expected a new path.")
        run.checkpoints.mkdir(exist_ok=True)
        atomic_write_json(path / "config.json", config)
        run.write_summary({"status": "running", "started_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        return run

    @classmethod
    def open(cls, path: str | Path, lock: bool = True) -> "RunDirectory":
        """An existing run directory (to resume it); ConfigError if it is not one."""
        run = cls(path)
        if not (run.path / "config.json").is_file():
            raise ConfigError(
                f"'{run.path}' is not a run directory (no config.json); expected a directory written by `offrl train`."
            )
        if lock:
            run.lock()
            run.checkpoints.mkdir(exist_ok=True)
        return run

    def lock(self) -> None:
        """Take the run's lock or refuse: another live process is writing this run."""
        if fcntl is None or self._lock_file is not None:
            return
        handle = open(self.path / _LOCK_NAME, "a")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise ConfigError(
                f"Run directory '{self.path}' is in use by another offrl process; expected a run that no "
                "process is writing (wait for it to end, or use another path)."
            ) from None
        self._lock_file = handle

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None

    def read_config(self) -> dict[str, Any]:
        return self._read_json("config.json")

    def read_summary(self) -> dict[str, Any]:
        return self._read_json("summary.json")

    def _read_json(self, name: str) -> dict[str, Any]:
        file = self.path / name
        if not file.is_file():
            raise ConfigError(f"'{file}' does not exist; expected a run directory written by `offrl train`.")
        try:
            return json.loads(file.read_text())
        except json.JSONDecodeError as error:
            raise ConfigError(f"'{file}' is not valid JSON ({error.msg}); expected a run directory written by offrl.") from None

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.path / "summary.json", summary)

    def update_summary(self, **changes: Any) -> dict[str, Any]:
        summary = self.read_summary()
        summary.update(changes)
        self.write_summary(summary)
        return summary

    def append(self, name: str, record: dict[str, Any]) -> None:
        with open(self.path / name, "a") as file:
            file.write(json.dumps(record) + "\n")

    def truncate_records(self, name: str, last_step: int) -> int:
        """Keep the records of steps up to `last_step`, in order, and drop everything after them
        (later steps, and a last line cut short by a kill). Returns how many records remain."""
        file = self.path / name
        if not file.exists():
            return 0
        kept = []
        for line in file.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            if not isinstance(record, dict) or record.get("step", last_step + 1) > last_step:
                break
            kept.append(line)
        atomic_write_bytes(file, "".join(line + "\n" for line in kept).encode())
        return len(kept)

    def write_records(self, name: str, records: list[dict[str, Any]]) -> None:
        atomic_write_bytes(self.path / name, "".join(json.dumps(r) + "\n" for r in records).encode())

    def read_records(self, name: str) -> list[dict[str, Any]]:
        file = self.path / name
        if not file.exists():
            return []
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
