"""Collecting runs from a results directory: any tree holding run directories at any depth.

A run directory holds config.json, summary.json and eval.jsonl (offrl/train/run_dir.py). A task
is a dataset; an algorithm's runs on a task are its seeds. Runs of one algorithm whose
configurations differ inside one (algorithm, dataset) cell (a sweep) get distinct labels: the
algorithm name plus the fields that differ, so they are never pooled silently.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from offrl.errors import ConfigError

NORMALIZED, RETURN = "normalised score", "return"


def natural_key(text: str) -> list[tuple[int, float, str]]:
    """Sorts 'alpha=2.5' before 'alpha=10': numbers in a label compare as numbers."""
    parts = re.findall(r"\d+(?:\.\d+)?|\D+", text)
    return [(0, float(part), "") if part[0].isdigit() else (1, 0.0, part) for part in parts]


@dataclass
class Run:
    path: Path
    algorithm: str
    dataset: str
    seed: int | None
    steps: int | None  # the training budget (gradient updates)
    final_normalized_score: float | None
    best_normalized_score: float | None
    final_return: float
    best_return: float | None
    final_step: int | None
    best_step: int | None
    updates_per_second: float | None
    identity: dict[str, Any]  # what distinguishes configurations: algorithm_config and the budget
    curve: list[dict[str, Any]]  # eval.jsonl records
    label: str = ""

    @property
    def normalized(self) -> bool:
        return self.final_normalized_score is not None

    def score(self, kind: str, which: str = "final") -> float:
        """The final or best score, as a normalised score or a return (`kind`)."""
        if kind == NORMALIZED:
            return self.final_normalized_score if which == "final" else self.best_normalized_score
        if which == "final":
            return self.final_return
        return self.best_return if self.best_return is not None else self.final_return

    def curve_points(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        key = "normalized_score" if kind == NORMALIZED else "return_mean"
        points = [(r["step"], r[key]) for r in self.curve if isinstance(r.get(key), (int, float)) and "step" in r]
        steps = np.array([p[0] for p in points], dtype=np.int64)
        values = np.array([p[1] for p in points], dtype=np.float64)
        return steps, values


@dataclass
class Skipped:
    path: Path
    reason: str


@dataclass
class Results:
    root: Path
    runs: list[Run]  # finished runs with a final score
    skipped: list[Skipped]
    notes: list[str] = field(default_factory=list)  # warnings for the reader of a report

    @property
    def labels(self) -> list[str]:
        return sorted({run.label for run in self.runs}, key=natural_key)

    @property
    def datasets(self) -> list[str]:
        return sorted({run.dataset for run in self.runs})

    def cell(self, label: str, dataset: str) -> list[Run]:
        return sorted((r for r in self.runs if r.label == label and r.dataset == dataset),
                      key=lambda r: (r.seed is None, r.seed if r.seed is not None else 0, str(r.path)))

    def score_kind(self, dataset: str) -> str:
        """Normalised scores when every run on the dataset has one, else returns."""
        runs = [r for r in self.runs if r.dataset == dataset]
        return NORMALIZED if runs and all(r.normalized for r in runs) else RETURN

    def scores(self, label: str, dataset: str, which: str = "final") -> np.ndarray:
        kind = self.score_kind(dataset)
        return np.array([run.score(kind, which) for run in self.cell(label, dataset)], dtype=np.float64)

    def tasks_of(self, label: str) -> list[str]:
        return [d for d in self.datasets if self.cell(label, d)]

    def require_runs(self) -> None:
        if self.runs:
            return
        statuses = ", ".join(sorted({s.reason for s in self.skipped}))
        raise ConfigError(
            f"None of the {len(self.skipped)} run directories under '{self.root}' has finished ({statuses}); "
            "expected at least one run whose summary.json has status 'finished'."
        )


def _read_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text()), None
    except FileNotFoundError:
        return None, f"no {path.name}"
    except (OSError, UnicodeDecodeError) as error:
        return None, f"{path.name} unreadable ({error})"
    except json.JSONDecodeError as error:
        return None, f"{path.name} is not valid JSON ({error.msg})"


def _read_evals(path: Path) -> list[dict[str, Any]]:
    records = []
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # a last line cut short by a kill
        if isinstance(record, dict):
            records.append(record)
    return records


def _dataset_name(config: dict[str, Any]) -> str:
    reference = config.get("dataset") or {}
    metadata = config.get("dataset_metadata") or {}
    for name in (reference.get("name"), metadata.get("name"), reference.get("argument")):
        if name:
            return str(name)
    if reference.get("source"):
        return Path(str(reference["source"])).name
    return "unknown dataset"


def _number(value: Any) -> float | None:
    """A finite number, else None (NaN from a broken evaluation counts as missing)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def read_run(path: Path) -> Run | Skipped:
    """One run directory as a Run, or Skipped with the reason it cannot count."""
    config, problem = _read_json(path / "config.json")
    if problem is None and not isinstance(config, dict):
        problem = "config.json is not a JSON object"
    if problem:
        return Skipped(path, problem)
    if config.get("kind") not in (None, "offline"):
        # offline-to-online runs report scores before/after fine-tuning, not a final offline score
        return Skipped(path, f"a '{config.get('kind')}' run, not an offline training run")
    summary, problem = _read_json(path / "summary.json")
    if problem is None and not isinstance(summary, dict):
        problem = "summary.json is not a JSON object"
    if problem:
        return Skipped(path, problem)
    status = summary.get("status", "no status")
    if status != "finished":
        return Skipped(path, f"status '{status}'")
    final_return = _number(summary.get("final_return"))
    if final_return is None:
        return Skipped(path, "summary.json has no finite final_return")
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    algorithm_config = config.get("algorithm_config") if isinstance(config.get("algorithm_config"), dict) else {}
    return Run(
        path=path,
        algorithm=str(config.get("algorithm", "unknown algorithm")),
        dataset=_dataset_name(config),
        seed=train.get("seed"),
        steps=train.get("steps", summary.get("steps")),
        final_normalized_score=_number(summary.get("final_normalized_score")),
        best_normalized_score=_number(summary.get("best_normalized_score")),
        final_return=final_return,
        best_return=_number(summary.get("best_return")),
        final_step=summary.get("final_step"),
        best_step=summary.get("best_step"),
        updates_per_second=_number(summary.get("updates_per_second")),
        identity={**algorithm_config, "steps": train.get("steps")},
        curve=_read_evals(path / "eval.jsonl"),
    )


def find_run_directories(root: Path) -> list[Path]:
    """Every directory under `root` (itself included) holding a config.json, without looking
    inside run directories (their checkpoints/)."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        if "config.json" in files:
            found.append(Path(directory))
            subdirectories.clear()
        else:
            subdirectories.sort()
    return sorted(found)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _assign_labels(runs: list[Run]) -> None:
    """Label each run by its algorithm, plus the configuration fields that differ between runs
    of that algorithm on the same dataset (then the same fields label it on every dataset)."""
    by_algorithm: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_algorithm[run.algorithm].append(run)
    for algorithm, algorithm_runs in by_algorithm.items():
        varying: set[str] = set()
        cells: dict[str, list[Run]] = defaultdict(list)
        for run in algorithm_runs:
            cells[run.dataset].append(run)
        for cell in cells.values():
            keys = set().union(*(run.identity for run in cell))
            varying |= {k for k in keys if len({json.dumps(r.identity.get(k), sort_keys=True) for r in cell}) > 1}
        for run in algorithm_runs:
            if varying:
                fields = ", ".join(f"{k}={_format_value(run.identity.get(k))}" for k in sorted(varying))
                run.label = f"{algorithm} ({fields})"
            else:
                run.label = algorithm


def collect_runs(root: str | Path) -> Results:
    """All run directories under `root`: finished ones as runs, the others as skipped."""
    root = Path(root)
    if not root.exists():
        raise ConfigError(
            f"Results directory '{root}' does not exist; expected a directory holding run directories "
            "(config.json, summary.json, eval.jsonl) written by `offrl train`."
        )
    if not root.is_dir():
        raise ConfigError(f"'{root}' is not a directory; expected a results directory or a run directory.")
    runs, skipped = [], []
    for path in find_run_directories(root):
        record = read_run(path)
        (runs if isinstance(record, Run) else skipped).append(record)
    if not runs and not skipped:
        raise ConfigError(
            f"No run directories found under '{root}'; expected at least one directory with config.json and "
            "summary.json (written by `offrl train`)."
        )
    _assign_labels(runs)
    results = Results(root=root, runs=runs, skipped=skipped)
    results.notes.extend(_notes(results))
    return results


def _notes(results: Results) -> list[str]:
    notes = []
    for dataset in results.datasets:
        runs = [r for r in results.runs if r.dataset == dataset]
        if results.score_kind(dataset) == RETURN:
            if any(r.normalized for r in runs):
                notes.append(f"Dataset '{dataset}': some runs have no normalised score, so raw returns are used for all its runs.")
            else:
                notes.append(f"Dataset '{dataset}' has no reference scores, so its runs are compared by raw return.")
    for label in results.labels:
        for dataset in results.datasets:
            seeds = [r.seed for r in results.cell(label, dataset)]
            repeated = sorted({s for s in seeds if s is not None and seeds.count(s) > 1})
            if repeated:
                notes.append(f"{label} on '{dataset}' has more than one run with seed {', '.join(map(str, repeated))}; "
                             "each counts as a separate run.")
    return notes
