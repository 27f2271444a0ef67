"""A rich progress bar for long training runs; silent when disabled or not on a terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress:
    def __init__(self, total: int, enabled: bool = True, description: str = "training"):
        self.enabled = enabled
        self.console = Console(stderr=True, log_path=False)  # a log line ends with its message, not `progress.py:37`
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
        )
        self.task = self.progress.add_task(description, total=total, status="")
        self.last_eval = ""

    def __enter__(self) -> "TrainingProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.progress.__exit__(*exc_info)

    def log(self, message: str) -> None:
        if self.enabled:
            self.console.log(message)

    def report_eval(self, record: dict[str, Any]) -> None:
        if "normalized_score" in record:
            self.last_eval = f"score {record['normalized_score']:.1f}"
        else:
            self.last_eval = f"return {record['return_mean']:.1f}"
        self.log(f"step {record['step']}: {self.last_eval}")

    def advance(self, step: int, metrics: dict[str, float]) -> None:
        self.progress.update(self.task, completed=step, status=self.last_eval)
