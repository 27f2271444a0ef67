"""Collecting runs from a results directory: any tree holding run directories at any depth.

A run directory holds config.json, summary.json and eval.jsonl (offrl/train/run_dir.py). A task
is a dataset; an algorithm's runs on a task are its seeds. Runs of one algorithm whose
configurations differ inside one (algorithm, dataset) cell (a sweep) get distinct labels: the
algorithm name plus the fields that differ, so they are never pooled silently.

Every seed is accounted for, so that no mean silently leaves one out. A cell's expected seeds
(its N) are the seeds a sweep asked for (sweep.json, trial.json) plus every seed directory or run
directory of that configuration found. Each is either counted (a `Run`) or missing (a `Skipped`
placed in its cell, with the reason). A finished seed counts with its final evaluation; a seed
that diverged (offrl/train/divergence.py) counts with its last valid evaluation before it
diverged, marked as such; a seed that did not finish (killed, interrupted, failed, never
started, diverged before any evaluation) is missing.
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
    diverged_at: int | None = None  # a diverged seed: the step it diverged by; it counts at final_step, its last valid evaluation
    dataset_argument: str | None = None  # the dataset as given to `offrl train` (to place a sweep's unstarted trials)
    safe: dict[str, float] | None = None  # a constrained task's final cost numbers (DSRL protocol; offrl/evaluate/safe_scores.py)

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

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
    """A run directory (or a seed a sweep asked for) that does not count, and why. When its
    configuration is known (config.json, its sibling seeds, or the sweep's record) it is placed:
    a missing seed of the cell (label, dataset)."""

    path: Path
    reason: str
    algorithm: str | None = None
    dataset: str | None = None
    seed: int | None = None
    identity: dict[str, Any] | None = None
    label: str = ""
    dataset_argument: str | None = None

    @property
    def placed(self) -> bool:
        return self.algorithm is not None and self.dataset is not None and self.identity is not None


def _seed_order(item: Run | Skipped) -> tuple:
    return (item.seed is None, item.seed if item.seed is not None else 0, str(item.path))


def seed_name(seed: int | None) -> str:
    return f"seed {seed}" if seed is not None else "a run without a recorded seed"


def _steps_phrase(run: Run, which: str) -> str:
    counted = (f"at its last evaluation (step {run.final_step})" if which == "final"
               else f"with its evaluations up to step {run.final_step}")
    return f"{seed_name(run.seed)} diverged at step {run.diverged_at}, counted {counted}"


def count_text(runs: list[Run], missing: list[Skipped], which: str = "final") -> str:
    """'n of N seeds' for a cell, with its diverged seeds (counted) and missing seeds (not counted)
    named: '3 of 4; seed 2 diverged at step 400, counted at its last evaluation (step 200); seed 3 missing'."""
    parts = [f"{len(runs)} of {len(runs) + len(missing)}"]
    parts += [_steps_phrase(run, which) for run in runs if run.diverged]
    if missing:
        seeds = [str(s.seed) if s.seed is not None else "?" for s in missing]
        parts.append(f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)} missing")
    return "; ".join(parts)


@dataclass
class Results:
    root: Path
    runs: list[Run]  # counted runs: finished ones, and diverged ones at their last valid evaluation
    skipped: list[Skipped]  # not counted: placed ones are missing seeds of a cell
    notes: list[str] = field(default_factory=list)  # warnings for the reader of a report

    @property
    def labels(self) -> list[str]:
        """Configurations with at least one counted run (those the statistics compare)."""
        return sorted({run.label for run in self.runs}, key=natural_key)

    @property
    def datasets(self) -> list[str]:
        return sorted({run.dataset for run in self.runs})

    @property
    def table_labels(self) -> list[str]:
        """Every configuration seen, counted or not (a column of the score tables)."""
        return sorted({run.label for run in self.runs} | {s.label for s in self.skipped if s.placed}, key=natural_key)

    @property
    def table_datasets(self) -> list[str]:
        return sorted({run.dataset for run in self.runs} | {s.dataset for s in self.skipped if s.placed})

    @property
    def missing_seeds(self) -> list[Skipped]:
        return sorted((s for s in self.skipped if s.placed), key=lambda s: (s.dataset, natural_key(s.label), _seed_order(s)))

    @property
    def unplaced(self) -> list[Skipped]:
        """Skipped directories that belong to no cell (unreadable, or not offline training runs)."""
        return [s for s in self.skipped if not s.placed]

    @property
    def diverged(self) -> list[Run]:
        return sorted((r for r in self.runs if r.diverged), key=lambda r: (r.dataset, natural_key(r.label), _seed_order(r)))

    def cell(self, label: str, dataset: str) -> list[Run]:
        return sorted((r for r in self.runs if r.label == label and r.dataset == dataset), key=_seed_order)

    def missing(self, label: str, dataset: str) -> list[Skipped]:
        """The cell's expected seeds that do not count, each with its reason."""
        return sorted((s for s in self.skipped if s.placed and s.label == label and s.dataset == dataset), key=_seed_order)

    def expected(self, label: str, dataset: str) -> int:
        """N: the cell's seeds, counted or not."""
        return len(self.cell(label, dataset)) + len(self.missing(label, dataset))

    def count_text(self, label: str, dataset: str, which: str = "final") -> str:
        return count_text(self.cell(label, dataset), self.missing(label, dataset), which)

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


def _read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of metrics.jsonl or eval.jsonl, up to a last line cut short by a kill."""
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



def _step(record: dict[str, Any]) -> int | None:
    step = record.get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


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


def _short(text: Any, limit: int = 160) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _progress(path: Path, budget: Any) -> tuple[str, str]:
    """Where a run that did not finish got to ('at step 400 of 1000') and its last evaluation."""
    logged = [step for name in ("metrics.jsonl", "eval.jsonl") for step in map(_step, _read_records(path / name))
              if step is not None]
    of = f" of {budget}" if isinstance(budget, int) else ""
    where = f"at step {max(logged)}{of}" if logged else "before its first logged step"
    evaluated = [step for step in map(_step, _read_records(path / "eval.jsonl")) if step is not None]
    evaluation = f"last evaluation at step {evaluated[-1]} (not counted)" if evaluated else "no evaluation yet"
    return where, evaluation


def _unfinished_reason(path: Path, summary: dict[str, Any] | None, problem: str | None, budget: Any) -> str:
    """Why a run does not count: 'not finished: status 'running' (killed, or still training), at
    step 400 of 1000; last evaluation at step 200 (not counted)'."""
    where, evaluation = _progress(path, budget)
    if summary is None:
        return f"{problem}, {where}; {evaluation}"
    status = summary.get("status", "no status")
    what = f"not finished: status '{status}'"
    if status == "running":
        what += " (killed, or still training)"
    elif summary.get("error"):
        what += f" ({_short(summary['error'])})"
    return f"{what}, {where}; {evaluation}"


def _valid_evaluations(curve: list[dict[str, Any]], before: Any = None) -> list[dict[str, Any]]:
    """Evaluations with a step and a finite return (up to step `before` when given)."""
    return [r for r in curve if _step(r) is not None and _number(r.get("return_mean")) is not None
            and (not isinstance(before, int) or r["step"] <= before)]


def _diverged_run(path: Path, summary: dict[str, Any], place: dict[str, Any], budget: Any) -> Run | Skipped:
    """A diverged seed counts with its last valid evaluation before it diverged (and its best
    among those); with no evaluation yet it is missing."""
    divergence = summary.get("divergence") if isinstance(summary.get("divergence"), dict) else {}
    step = _step(divergence)
    evals = _valid_evaluations(_read_records(path / "eval.jsonl"), divergence.get("after_step"))
    if not evals:
        where = f"at step {step}" if step is not None else _progress(path, budget)[0]
        return Skipped(path, f"diverged {where} before any evaluation", **place)
    normalized = all(_number(r.get("normalized_score")) is not None for r in evals)
    key = "normalized_score" if normalized else "return_mean"
    last, best = evals[-1], max(evals, key=lambda record: record[key])
    return Run(
        path=path, steps=budget,
        final_normalized_score=_number(last.get("normalized_score")) if normalized else None,
        best_normalized_score=_number(best.get("normalized_score")) if normalized else None,
        final_return=float(last["return_mean"]), best_return=float(best["return_mean"]),
        final_step=last["step"], best_step=best["step"], updates_per_second=None, curve=evals,
        diverged_at=step if step is not None else last["step"], **place,
    )


def engine_options(train: dict[str, Any]) -> dict[str, Any]:
    """The engine add-ons a run used, when not the defaults (offrl/train/samplers.py, hubl.py): runs
    that differ by them are different configurations, labelled e.g. `bc (sampler=return-weighted)`."""
    options = {}
    if train.get("sampler", "uniform") != "uniform":
        options.update({key: train.get(key) for key in ("sampler", "sampler_temperature", "sampler_weights")})
    if train.get("hubl"):
        options["hubl"] = train["hubl"]
    return options


def read_run(path: Path) -> Run | Skipped:
    """One run directory as a Run (finished, or diverged and counted at its last valid
    evaluation), or Skipped with the reason it cannot count."""
    config, problem = _read_json(path / "config.json")
    if problem is None and not isinstance(config, dict):
        problem = "config.json is not a JSON object"
    if problem:
        return Skipped(path, problem, seed=_seed_of_directory(path))
    if config.get("kind") not in (None, "offline"):
        # offline-to-online runs report scores before/after fine-tuning, not a final offline score
        return Skipped(path, f"a '{config.get('kind')}' run, not an offline training run")
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    algorithm_config = config.get("algorithm_config") if isinstance(config.get("algorithm_config"), dict) else {}
    reference = config.get("dataset") if isinstance(config.get("dataset"), dict) else {}
    seed = train.get("seed")
    place = {
        "algorithm": str(config.get("algorithm", "unknown algorithm")),
        "dataset": _dataset_name(config),
        "seed": seed if isinstance(seed, int) else _seed_of_directory(path),
        "identity": {**algorithm_config, "steps": train.get("steps"), **engine_options(train)},
        "dataset_argument": reference.get("argument"),
    }
    budget = train.get("steps")
    summary, problem = _read_json(path / "summary.json")
    if problem is None and not isinstance(summary, dict):
        problem = "summary.json is not a JSON object"
    if problem:
        return Skipped(path, _unfinished_reason(path, None, problem, budget), **place)
    status = summary.get("status", "no status")
    if status == "diverged":
        return _diverged_run(path, summary, place, budget)
    if status != "finished":
        return Skipped(path, _unfinished_reason(path, summary, None, budget), **place)
    final_return = _number(summary.get("final_return"))
    if final_return is None:
        return Skipped(path, "summary.json has no finite final_return", **place)
    return Run(
        path=path,
        steps=train.get("steps", summary.get("steps")),
        final_normalized_score=_number(summary.get("final_normalized_score")),
        best_normalized_score=_number(summary.get("best_normalized_score")),
        final_return=final_return,
        best_return=_number(summary.get("best_return")),
        final_step=summary.get("final_step"),
        best_step=summary.get("best_step"),
        updates_per_second=_number(summary.get("updates_per_second")),
        curve=_read_records(path / "eval.jsonl"),
        safe=_safe_numbers(summary),
        **place,
    )


SAFE_KEYS = ("target_cost", "final_cost", "final_normalized_cost", "final_normalized_reward")


def _safe_numbers(summary: dict[str, Any]) -> dict[str, float] | None:
    """The summary's final cost numbers (offrl/train/offline.py `_safe_summary`), None on a task without costs."""
    if _number(summary.get("final_normalized_cost")) is None:
        return None
    return {key: value for key in SAFE_KEYS if (value := _number(summary.get(key))) is not None}


_SEED_DIRECTORY = re.compile(r"seed_(-?\d+)")


def _seed_of_directory(path: Path) -> int | None:
    match = _SEED_DIRECTORY.fullmatch(path.name)
    return int(match.group(1)) if match else None


@dataclass
class _Tree:
    runs: list[Path] = field(default_factory=list)  # directories with a config.json
    empty_seeds: list[Path] = field(default_factory=list)  # seed_<s>/ directories with nothing in them yet
    trials: list[Path] = field(default_factory=list)  # sweep trial directories (trial.json)
    sweeps: list[Path] = field(default_factory=list)  # sweep directories (sweep.json)
    stale: list[Path] = field(default_factory=list)  # earlier attempts a sweep moved aside (not counted)


def _walk(root: Path) -> _Tree:
    tree = _Tree()
    for directory, subdirectories, files in os.walk(root):
        path = Path(directory)
        if "config.json" in files:
            tree.runs.append(path)
            subdirectories.clear()
            continue
        if _seed_of_directory(path) is not None and set(subdirectories) <= {"checkpoints"}:
            tree.empty_seeds.append(path)
            subdirectories.clear()
            continue
        if "trial.json" in files:
            tree.trials.append(path)
            if "stale" in subdirectories:  # offrl/sweep/trial.py moves a failed attempt's seeds there
                subdirectories.remove("stale")
                tree.stale.append(path / "stale")
        if "sweep.json" in files:
            tree.sweeps.append(path)
        subdirectories.sort()
    tree.runs.sort()
    return tree


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _assign_labels(runs: list[Run | Skipped]) -> None:
    """Label each run by its algorithm, plus the configuration fields that differ between runs
    of that algorithm on the same dataset (then the same fields label it on every dataset).
    Missing seeds are labelled with the counted ones, so they land in their configuration's cell."""
    by_algorithm: dict[str, list[Run | Skipped]] = defaultdict(list)
    for run in runs:
        by_algorithm[run.algorithm].append(run)
    for algorithm, algorithm_runs in by_algorithm.items():
        varying: set[str] = set()
        cells: dict[str, list[Run | Skipped]] = defaultdict(list)
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


def _place_by_siblings(skipped: list[Skipped], members: list[Run | Skipped]) -> None:
    """A seed directory with no readable config.json belongs with its sibling seeds when they all
    share one configuration (a multi-seed group: offrl/train/multi_seed.py)."""
    by_parent: dict[Path, set[str]] = defaultdict(set)
    example: dict[Path, Run | Skipped] = {}
    for member in members:
        if member.algorithm is not None and member.identity is not None:
            by_parent[member.path.parent].add(json.dumps([member.algorithm, member.dataset, member.identity], sort_keys=True))
            example[member.path.parent] = member
    for item in skipped:
        if item.placed or item.seed is None or _seed_of_directory(item.path) is None or len(by_parent.get(item.path.parent, ())) != 1:
            continue
        sibling = example[item.path.parent]
        item.algorithm, item.dataset, item.identity = sibling.algorithm, sibling.dataset, dict(sibling.identity)
        item.dataset_argument = sibling.dataset_argument


def _trial_records(root: Path, tree: _Tree) -> dict[Path, tuple[dict[str, Any], str | None, Any]]:
    """Trial directory -> (trial definition, status, error) for the sweep trials under `root`: from
    sweep.json (under `root` or above it) and each trial's own trial.json (newer, so it wins)."""
    trials: dict[Path, tuple[dict[str, Any], str | None, Any]] = {}
    sweep_dirs = list(tree.sweeps) + [d for d in [root, *root.parents][1:4] if (d / "sweep.json").is_file()]
    for sweep_dir in sweep_dirs:
        index, _ = _read_json(sweep_dir / "sweep.json")
        entries = index.get("trials") if isinstance(index, dict) else None
        for trial_id, entry in (entries.items() if isinstance(entries, dict) else ()):
            if not isinstance(entry, dict) or not isinstance(entry.get("definition"), dict):
                continue
            directory = sweep_dir / str(entry.get("run_dir") or f"trials/{trial_id}")
            if directory == root or root in directory.parents:
                trials[directory] = (entry["definition"], entry.get("status"), entry.get("error"))
    for directory in tree.trials:
        record, _ = _read_json(directory / "trial.json")
        if isinstance(record, dict) and isinstance(record.get("trial"), dict):
            trials[directory] = (record["trial"], record.get("status"), record.get("error"))
    return trials


def _missing_trial_seeds(root: Path, tree: _Tree, members: list[Run | Skipped]) -> list[Skipped]:
    """The seeds a sweep asked for that have no directory at all (a trial not started yet, or one
    that failed before its seeds were created)."""
    present = {member.path for member in members}
    names = {m.dataset_argument: m.dataset for m in members if m.dataset_argument and m.dataset}
    missing = []
    for directory, (trial, status, error) in sorted(_trial_records(root, tree).items()):
        seeds = trial.get("seeds")
        if not isinstance(seeds, list):
            continue
        if status in (None, "pending"):
            reason = "not started: the sweep has not run this trial yet"
        else:
            reason = f"no run directory: the trial's status is '{status}'" + (f" ({_short(error)})" if error else "")
        algorithm_config = trial.get("algorithm_config")
        train = trial.get("train") if isinstance(trial.get("train"), dict) else {}
        argument = trial.get("dataset")
        for seed in seeds:
            path = directory / f"seed_{seed}"
            if path in present:
                continue
            item = Skipped(path, reason, seed=seed if isinstance(seed, int) else None, dataset_argument=argument)
            if isinstance(algorithm_config, dict) and trial.get("algorithm"):
                item.algorithm = str(trial["algorithm"])
                item.dataset = names.get(argument) or str(trial.get("dataset_label") or argument)
                item.identity = {**algorithm_config, "steps": train.get("steps"), **engine_options(train)}
            missing.append(item)
    _place_by_siblings(missing, members)  # a trial's own seeds know their dataset's name best
    return missing


def collect_runs(root: str | Path) -> Results:
    """All run directories under `root`, and every seed a sweep asked for: counted ones (finished,
    or diverged at their last valid evaluation) as runs, the others as skipped, with the reason."""
    root = Path(root)
    if not root.exists():
        raise ConfigError(
            f"Results directory '{root}' does not exist; expected a directory holding run directories "
            "(config.json, summary.json, eval.jsonl) written by `offrl train`."
        )
    if not root.is_dir():
        raise ConfigError(f"'{root}' is not a directory; expected a results directory or a run directory.")
    tree = _walk(root)
    runs, skipped = [], []
    for path in tree.runs:
        record = read_run(path)
        (runs if isinstance(record, Run) else skipped).append(record)
    skipped += [Skipped(path, "an empty seed directory: the seed never started", seed=_seed_of_directory(path))
                for path in tree.empty_seeds]
    _place_by_siblings(skipped, runs + skipped)
    skipped += _missing_trial_seeds(root, tree, runs + skipped)
    if not runs and not skipped:
        raise ConfigError(
            f"No run directories found under '{root}'; expected at least one directory with config.json and "
            "summary.json (written by `offrl train`)."
        )
    _assign_labels(runs + [item for item in skipped if item.placed])
    results = Results(root=root, runs=runs, skipped=skipped)
    results.notes.extend(_notes(results))
    results.notes.extend(f"Earlier attempts that a sweep moved aside under '{path}' are not counted." for path in tree.stale)
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
