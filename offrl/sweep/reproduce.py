"""`offrl reproduce TABLE`: a published table's grid, run with the references' presets, reported with bands.

`corl-gym` is CORL's D4RL Gym-MuJoCo offline table (offrl/report/published/corl_gym.json): its
algorithms x datasets, each (algorithm, dataset) starting from its preset (offrl/train/presets)
and trained for the reference's budget, through the ordinary sweep machinery (local pool or Ray,
resumable: finished trials are kept). `--budget-scale 0.1` trains a tenth of every budget; every
table title of the report then says so, and no cell gets a band verdict. Evaluation every 5,000
updates, as CORL's configs (eval_freq 5000); at a reduced budget at most 10 evaluations per run.
"""

from __future__ import annotations

import argparse
import difflib
import math
from pathlib import Path

from offrl.errors import ConfigError

TABLES = ("corl-gym",)
EVAL_EVERY = 5000  # CORL configs/offline/*: eval_freq 5000 (ReBRAC/SAC-N/EDAC: every 5 epochs of 1000 updates)
MAX_EVALUATIONS_AT_REDUCED_BUDGET = 10


def add_command(commands) -> None:
    reproduce = commands.add_parser(
        "reproduce", help="run a published table's grid with the references' presets and report it beside the published bands",
        description="Reproduce a published results table: every algorithm x dataset with the reference's "
                    "per-dataset preset and budget, N seeds each, through the sweep machinery; then the report "
                    "with the published numbers and a verdict per cell. Rerun with --resume to continue.")
    reproduce.add_argument("table", choices=TABLES, help="corl-gym: CORL's D4RL Gym-MuJoCo offline table")
    reproduce.add_argument("--algos", default=None, help="comma-separated algorithms (default: every one in the table)")
    reproduce.add_argument("--datasets", default=None,
                           help="comma-separated datasets, e.g. hopper-medium-v2 or d4rl/hopper-medium-v2 (default: every one in the table)")
    reproduce.add_argument("--seeds", type=int, default=4, help="seeds 0..N-1 per cell (default: 4, as CORL)")
    reproduce.add_argument("--budget-scale", type=float, default=1.0,
                           help="fraction of each reference budget to train, in (0, 1] (default: 1; below 1 gives no verdicts)")
    reproduce.add_argument("--resume", action="store_true", help="continue the reproduction in --out (finished trials are kept)")
    reproduce.add_argument("--download", action="store_true", help="download datasets that are not in the data directory yet")
    reproduce.add_argument("--data-dir", default=None, help="offrl data directory (default: $OFFRL_DATA_DIR or ~/.offrl)")
    reproduce.add_argument("--out", default=None, metavar="DIR", help="results directory (default: runs/reproduce-TABLE[-xSCALE])")
    reproduce.add_argument("--engine", choices=("local", "ray"), default="local", help="local process pool (default) or Ray")
    reproduce.add_argument("--workers", type=int, default=None, help="local engine: trials at once (default: CPU cores)")
    reproduce.add_argument("--address", default=None, help="ray engine: cluster address (default: a local Ray instance)")
    reproduce.add_argument("--cpus-per-trial", type=float, default=1.0, help="ray engine: CPUs per trial (default: 1)")
    reproduce.add_argument("--gpus-per-trial", type=float, default=0.0, help="ray engine: GPUs per trial (default: 0)")
    reproduce.add_argument("--no-progress", action="store_true", help="print only the summary")
    reproduce.set_defaults(handler=cmd_reproduce)


def _names(text: str | None, known: list[str], flag: str, normalise=lambda name: name) -> list[str]:
    if text is None:
        return list(known)
    chosen = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name = normalise(item)
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"the closest: {', '.join(close)}" if close else f"one of: {', '.join(known)}"
            raise ConfigError(f"{flag} names {item!r}, which the table has no entry for; expected {hint}.")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ConfigError(f"{flag} is {text!r}; expected a comma-separated list.")
    return chosen


def reproduction_spec(table_name: str, algorithms: list[str], datasets: list[str], seeds: int, budget_scale: float,
                      data_dir: str | None):
    """The sweep spec of a reproduction: presets on, CORL's evaluation cadence, the budget scaled."""
    from offrl.sweep.spec import parse_spec

    if seeds < 1:
        raise ConfigError(f"--seeds is {seeds}; expected a positive number of seeds.")
    if not 0 < budget_scale <= 1:
        raise ConfigError(f"--budget-scale is {budget_scale}; expected a number in (0, 1].")
    raw = {"name": f"reproduce-{table_name}", "algorithms": algorithms, "datasets": [f"d4rl/{d}" for d in datasets],
           "seeds": seeds, "train": {"eval_every": EVAL_EVERY}, "presets": True, "budget_scale": budget_scale,
           "data_dir": data_dir, "selection": {"criterion": "last_evals"}}
    spec = parse_spec(raw, where=f"offrl reproduce {table_name}", base_dir=None)
    if budget_scale < 1:  # a reduced budget: at most 10 evaluations per run (the spec scales eval_every too)
        shortest = min(trial["train"]["steps"] for trial in spec.trials())
        wanted = max(round(EVAL_EVERY * budget_scale), math.ceil(shortest / MAX_EVALUATIONS_AT_REDUCED_BUDGET), 1)
        raw["train"]["eval_every"] = max(1, round(wanted / budget_scale))
        spec = parse_spec(raw, where=f"offrl reproduce {table_name}", base_dir=None)
    return spec


def _check_datasets(datasets: list[str], data_dir: str | None, download: bool) -> None:
    from offrl.data.download import download as fetch, registered_path

    missing = [d for d in datasets if registered_path(f"d4rl/{d}", data_dir) is None]
    if missing and not download:
        first = f"d4rl/{missing[0]}"
        raise ConfigError(f"{len(missing)} of the datasets are not in the data directory ({', '.join(missing)}); expected "
                          f"them downloaded first (`offrl datasets download {first}` for each) or --download.")
    for dataset in missing:
        result = fetch(f"d4rl/{dataset}", data_dir=data_dir, echo=print)
        print(f"{result.name}: registered at {result.path}")


def cmd_reproduce(args: argparse.Namespace) -> int:
    from offrl.report import write_report
    from offrl.report.bands import load_bands
    from offrl.sweep.driver import run_sweep

    table = load_bands(args.table)
    algorithms = _names(args.algos, list(table.scores["final"]), "--algos", lambda name: name.lower())
    datasets_known = sorted({d for rows in table.scores["final"].values() for d in rows})
    datasets = _names(args.datasets, datasets_known, "--datasets", lambda name: name.removeprefix("d4rl/"))
    spec = reproduction_spec(args.table, algorithms, datasets, args.seeds, args.budget_scale, args.data_dir)
    scale = f"-x{args.budget_scale:g}" if args.budget_scale < 1 else ""
    out = Path(args.out) if args.out else Path("runs") / f"reproduce-{args.table}{scale}"
    started = (out / "sweep.json").exists()
    if args.resume and not started:
        raise ConfigError(f"--resume: '{out}' holds no reproduction to continue; expected the --out of an earlier run "
                          "(or leave out --resume to start one).")
    if started and not args.resume:
        raise ConfigError(f"'{out}' already holds a reproduction; expected --resume to continue it (finished trials "
                          "are kept) or another --out.")
    _check_datasets(datasets, args.data_dir, args.download)
    if args.budget_scale < 1:
        print(f"reduced budget: ×{args.budget_scale:g} of each reference budget; the report gives no band verdicts")
    outcome = run_sweep(spec, out=out, engine=args.engine, workers=args.workers, address=args.address,
                        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                        echo=None if args.no_progress else print, show_selection=False)
    counts = ", ".join(f"{count} {state}" for state, count in sorted(outcome.counts.items()))
    print(f"reproduction: {outcome.path} ({counts})")
    for trial_id, error in outcome.problems.items():
        print(f"  {trial_id}: {error}")
    if any(state == "finished" for state in outcome.counts):
        for path in write_report(outcome.path, bands=args.table):
            print(path)
    if not outcome.complete:
        print(f"rerun with --resume to continue: offrl reproduce {args.table} --resume --out {outcome.path} ...")
        return 1
    return 0
