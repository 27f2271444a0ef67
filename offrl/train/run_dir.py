"""The run directory: config.json, metrics.jsonl, eval.jsonl, summary.json, checkpoints/.

`summary.json` carries a `status`: "running" while training, then "finished", "failed" or
"interrupted". Nothing reads a run as complete unless its status says "finished".
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from offrl.errors import ConfigError
from offrl.atomic import atomic_write_json


class RunDirectory:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any]) -> "RunDirectory":
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise ConfigError(f"Run directory '{path}' already exists and is not empty; expected a new path.")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"Cannot create run directory '{path}' ({error.strerror}); expected a writable path.") from None
        run = cls(path)
        run.checkpoints.mkdir(exist_ok=True)
        atomic_write_json(path / "config.json", config)
        run.write_summary({"status": "running", "started_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        return run

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

    def read_records(self, name: str) -> list[dict[str, Any]]:
        file = self.path / name
        if not file.exists():
            return []
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
