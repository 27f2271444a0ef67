"""Running a sweep: expand the spec, skip what is done, run the rest, index and select.

Rerunning the same spec on the same directory resumes it: finished (and diverged) trials are
skipped, failed and interrupted ones run again (an interrupted trial continues from its
checkpoints). A different spec, or a dataset whose content changed, is refused rather than
mixed into the same directory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from offrl.errors import ConfigError
from offrl.sweep.index import DONE, SELECTION_NAME, SweepIndex, now, trial_dir, trial_state
from offrl.sweep.spec import SweepSpec, load_spec

ENGINES = ("local", "ray")


@dataclass
class SweepOutcome:
    path: Path
    counts: dict[str, int]  # final state -> number of trials
    ran: list[str]  # trials run by this call
    skipped: list[str]  # trials already done
    problems: dict[str, str] = field(default_factory=dict)  # trial id -> error, for trials not done
    selection: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        return not self.problems


def default_sweep_dir(spec: SweepSpec) -> Path:
    return Path("sweeps") / spec.name


def make_executor(engine: str, workers: int | None = None, address: str | None = None, cpus_per_trial: float = 1.0,
                  gpus_per_trial: float = 0.0, ray_storage: str = "ship"):
    if engine == "local":
        from offrl.sweep.local import LocalExecutor

        if address is not None:
            raise ConfigError("--address names a Ray cluster; expected it only with --engine ray.")
        return LocalExecutor(workers)
    if engine == "ray":
        from offrl.sweep.ray_engine import RayExecutor

        if workers is not None:
            raise ConfigError("--workers sizes the local process pool; expected --cpus-per-trial / --gpus-per-trial "
                              "with --engine ray.")
        return RayExecutor(address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, storage=ray_storage)
    raise ConfigError(f"--engine is {engine!r}; expected one of: {', '.join(ENGINES)}.")


def run_sweep(
    spec: SweepSpec | str | Path,
    out: str | Path | None = None,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    ray_storage: str = "ship",
    echo: Callable[[str], None] | None = print,
    show_selection: bool = True,
) -> SweepOutcome:
    """Run (or resume) the sweep `spec` in `out` (default sweeps/<name>); returns what happened."""
    from offrl.sweep.local import describe_returncode
    from offrl.sweep.select import format_selection, select_best
    from offrl.atomic import atomic_write_json

    say = echo or (lambda message: None)
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    trials = spec.trials()
    executor = make_executor(engine, workers, address, cpus_per_trial, gpus_per_trial, ray_storage)
    out = Path(out if out is not None else default_sweep_dir(spec)).resolve()
    index = SweepIndex.open_for(out, spec, trials)
    try:
        to_run, skipped = [], []
        for trial in trials:
            state, _ = trial_state(trial_dir(out, trial["id"]), index.spec_hash)
            if state in DONE:
                skipped.append(trial["id"])
                index.event(trial["id"], "skipped", status=state)
                index.trials[trial["id"]]["status"] = state
            else:
                to_run.append(trial)
        datasets = {}
        if to_run:
            executor.start()
            datasets = _check_datasets(index, spec, keep=executor.wants_datasets)
        run_entry = {"started_at": now(), **executor.describe(len(to_run)), "to_run": len(to_run), "skipped": len(skipped)}
        index.data["runs"].append(run_entry)
        index.save()
        say(f"sweep {spec.name} [{spec.hash}] -> {out}: {len(trials)} trials, {len(skipped)} already done, "
            f"{len(to_run)} to run ({', '.join(f'{k}={v}' for k, v in executor.describe(len(to_run)).items())})")

        started_at: dict[str, float] = {}
        finished_count = [0]

        def on_start(trial_id: str) -> None:
            started_at[trial_id] = time.perf_counter()
            attempts = int(index.trials[trial_id].get("attempts", 0)) + 1
            index.event(trial_id, "started", engine=executor.name, attempt=attempts)
            index.update_trial(trial_id, status="running", attempts=attempts, error=None)

        def on_done(trial_id: str, outcome: dict[str, Any]) -> None:
            directory = trial_dir(out, trial_id)
            state, record = trial_state(directory, index.spec_hash)
            error = record.get("error")
            if outcome.get("error"):  # the Ray task itself failed: what is on disk is an older attempt
                state, error = "interrupted", outcome["error"]
            elif state in ("interrupted", "pending", "stale"):
                state = "interrupted"
                if "returncode" in outcome:
                    error = f"{describe_returncode(outcome['returncode'])} before the trial recorded how it ended"
                else:
                    error = outcome.get("error") or "the trial ended without recording how"
            seconds = time.perf_counter() - started_at.get(trial_id, time.perf_counter())
            details = {"seconds": round(seconds, 1)}
            for moved in record.get("moved_aside", []):
                if moved.get("attempt") == record.get("attempt"):
                    index.event(trial_id, "moved_aside", to=moved["to"], why=moved["why"])
            if record.get("resumed"):
                details["resumed"] = True
            index.event(trial_id, state, **details, **({"error": error} if error else {}))
            index.update_trial(trial_id, status=state, error=error, seconds=round(seconds, 1),
                               resumed=bool(record.get("resumed")))
            finished_count[0] += 1
            note = f": {error}" if error else ""
            say(f"[{finished_count[0]}/{len(to_run)}] {trial_id} {state} in {seconds:.0f} s{note}")

        try:
            executor.run(out, to_run, datasets, index.spec_hash, on_start, on_done)
        except KeyboardInterrupt:
            run_entry.update(finished_at=now(), interrupted=True)
            index.save()
            raise

        counts: dict[str, int] = {}
        problems: dict[str, str] = {}
        for trial in trials:
            state, record = trial_state(trial_dir(out, trial["id"]), index.spec_hash)
            counts[state] = counts.get(state, 0) + 1
            if state not in DONE:
                problems[trial["id"]] = index.trials[trial["id"]].get("error") or record.get("error") or state
        selection = select_best(out)
        atomic_write_json(out / SELECTION_NAME, selection)
        _record_scores(index, selection)
        run_entry.update(finished_at=now(), counts=counts)
        index.save()
        if show_selection:
            say(format_selection(selection))
        if problems:
            say(f"{len(problems)} of {len(trials)} trials did not finish; rerun the same command to retry them "
                "(finished trials are kept).")
        return SweepOutcome(path=out, counts=counts, ran=[t["id"] for t in to_run], skipped=skipped,
                            problems=problems, selection=selection)
    finally:
        executor.stop()
        index.unlock()


def _check_datasets(index: SweepIndex, spec: SweepSpec, keep: bool) -> dict[str, tuple[Any, str]]:
    """Load each dataset once: refuse missing ones now, and a dataset whose content changed since
    the sweep started (its fingerprint is recorded in sweep.json). Returns {argument: (dataset,
    sha256)} when the executor ships datasets, else {argument: (None, sha256)}."""
    from offrl.data.fingerprint import dataset_fingerprint
    from offrl.data.registry import resolve_dataset
    from offrl.errors import OffrlInputError

    values = spec.values
    result = {}
    for position, argument in enumerate(spec.datasets):
        try:
            dataset = resolve_dataset(argument, data_dir=values["data_dir"], clip_actions=values["clip_actions"])
        except OffrlInputError as error:
            raise ConfigError(f"{spec.where}: datasets[{position}]: {error}") from None
        fingerprint = dataset_fingerprint(dataset)
        recorded = index.data["datasets"].get(argument)
        if recorded is not None and recorded["sha256"] != fingerprint["sha256"]:
            raise ConfigError(
                f"Dataset {argument!r} has changed since sweep '{index.path}' started (fingerprint "
                f"{fingerprint['sha256'][:12]}, recorded {recorded['sha256'][:12]}); results on two versions of a "
                "dataset are never mixed, so expected the original data, or a new output directory (--out)."
            )
        index.data["datasets"][argument] = {**fingerprint, "name": dataset.metadata.name, "env_id": dataset.metadata.env_id,
                                            "has_reference": dataset.metadata.ref_min_score is not None
                                            and dataset.metadata.ref_max_score is not None}
        result[argument] = (dataset if keep else None, fingerprint["sha256"])
    index.save()
    return result


def _record_scores(index: SweepIndex, selection: dict[str, Any]) -> None:
    best = {group["best"]["trial"] for group in selection["groups"] if group["best"]}
    for group in selection["groups"]:
        for candidate in group["candidates"]:
            entry = index.trials[candidate["trial"]]
            entry["status"] = candidate["status"]
            entry["criterion"] = candidate.get("criterion")
            entry["test_final_mean"] = candidate.get("test_final_mean")
            entry["selected"] = candidate["trial"] in best


def selection_text(path: str | Path) -> str:
    """`offrl sweep SPEC_OR_DIR --select`: the selection of an existing sweep, without running."""
    from offrl.sweep.select import format_selection, select_best

    return format_selection(select_best(path))


def sweep_dir_for(argument: str | Path, out: str | Path | None) -> Path:
    """The sweep directory named by `argument` (a sweep directory, or a spec file with `out`)."""
    argument = Path(argument)
    if argument.is_dir():
        return argument
    if out is not None:
        return Path(out)
    return default_sweep_dir(load_spec(argument))
