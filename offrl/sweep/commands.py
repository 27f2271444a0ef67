"""`offrl sweep` and `offrl bench`: their flags and handlers (offrl.cli adds them to its parser)."""

from __future__ import annotations

import argparse
from pathlib import Path

from offrl.errors import ConfigError

EXIT_INCOMPLETE = 1  # some trials failed or were interrupted; rerunning the command retries them


def add_commands(commands) -> None:
    sweep = commands.add_parser(
        "sweep", help="run a grid or random search of trials from a YAML spec (local process pool or Ray)",
        description="Run every trial of SPEC (algorithms x datasets x hyperparameters, each with all seeds). "
                    "Rerunning the same command resumes: finished trials are skipped, failed and interrupted "
                    "ones run again. See examples/sweep.yaml, docs/sweeps.md and docs/ray.md.")
    sweep.add_argument("spec", help="sweep spec (YAML); with --select, a spec or a sweep directory")
    sweep.add_argument("--select", action="store_true",
                       help="only print the best configuration per (algorithm, dataset) of an existing sweep")
    _engine_arguments(sweep, "where to write the sweep (default: sweeps/NAME)")
    sweep.set_defaults(handler=cmd_sweep)

    bench = commands.add_parser(
        "bench", help="train a grid of algorithms x datasets x seeds with default hyperparameters into one results directory",
        description="A grid sweep built from flags: every algorithm with its default hyperparameters on every "
                    "dataset, N seeds each. Rerunning the same command resumes it. Read the results with "
                    "`offrl report DIR`.")
    bench.add_argument("--algos", required=True, help="comma-separated algorithms, e.g. bc,td3bc,iql")
    bench.add_argument("--datasets", required=True, help="comma-separated dataset names or paths, e.g. default")
    bench.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per (algorithm, dataset) (default: 5)")
    bench.add_argument("--steps", type=int, default=None, help="gradient updates per run (default: the train default)")
    bench.add_argument("--eval-every", type=int, default=None, help="updates between evaluations")
    bench.add_argument("--eval-episodes", type=int, default=None, help="episodes per evaluation")
    bench.add_argument("--log-every", type=int, default=None, help="updates between metric lines")
    bench.add_argument("--checkpoint-every", type=int, default=None, help="updates between checkpoints")
    bench.add_argument("--data-dir", default=None, help="offrl data directory (default: $OFFRL_DATA_DIR or ~/.offrl)")
    _engine_arguments(bench, "results directory (default: runs/bench-HASH, the same for the same flags)")
    bench.set_defaults(handler=cmd_bench)


def _engine_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    parser.add_argument("--out", default=None, metavar="DIR", help=out_help)
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: a process pool on this machine (default); ray: Ray tasks (pip install 'offrl[ray]')")
    parser.add_argument("--workers", type=int, default=None,
                        help="local engine: trials at once (default: this machine's CPU cores)")
    parser.add_argument("--address", default=None,
                        help="ray engine: cluster address, e.g. 'auto' or ray://HOST:10001 (default: a local Ray instance)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="ray engine: CPUs reserved per trial (default: 1)")
    parser.add_argument("--gpus-per-trial", type=float, default=0.0,
                        help="ray engine: GPUs per trial, fractions share a GPU (default: 0)")
    parser.add_argument("--ray-storage", choices=("ship", "shared"), default="ship",
                        help="ray engine: ship datasets and results through Ray (default), or use the sweep "
                             "directory in place on storage every node sees")
    parser.add_argument("--no-progress", action="store_true", help="print only the summary, not one line per trial")


def _run(spec, args, show_selection: bool = True) -> int:
    from offrl.sweep.driver import run_sweep

    outcome = run_sweep(spec, out=args.out, engine=args.engine, workers=args.workers, address=args.address,
                        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                        ray_storage=args.ray_storage, echo=None if args.no_progress else print,
                        show_selection=show_selection)
    counts = ", ".join(f"{count} {state}" for state, count in sorted(outcome.counts.items()))
    print(f"sweep directory: {outcome.path} ({counts})")
    for trial_id, error in outcome.problems.items():
        print(f"  {trial_id}: {error}")
    return 0 if outcome.complete else EXIT_INCOMPLETE


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.select:
        from offrl.sweep.driver import selection_text, sweep_dir_for

        print(selection_text(sweep_dir_for(args.spec, args.out)))
        return 0
    return _run(args.spec, args)


def cmd_bench(args: argparse.Namespace) -> int:
    from offrl.sweep import bench_spec

    algorithms = _comma_list(args.algos, "--algos")
    datasets = _comma_list(args.datasets, "--datasets")
    if args.seeds < 1:
        raise ConfigError(f"--seeds is {args.seeds}; expected a positive number of seeds.")
    train = {name: value for name, value in (("steps", args.steps), ("eval_every", args.eval_every),
                                             ("eval_episodes", args.eval_episodes), ("log_every", args.log_every),
                                             ("checkpoint_every", args.checkpoint_every)) if value is not None}
    from offrl.algos import ALGORITHMS

    for algorithm in algorithms:
        if algorithm.lower() not in ALGORITHMS:
            raise ConfigError(f"--algos names {algorithm!r}, an unknown algorithm; expected one of: {', '.join(sorted(ALGORITHMS))}.")
    spec = bench_spec(algorithms, datasets, args.seeds, train, data_dir=args.data_dir)
    if args.out is None:
        args.out = str(Path("runs") / f"bench-{spec.hash[:8]}")
    code = _run(spec, args, show_selection=False)  # one configuration each: nothing to select
    print(f"report: offrl report {args.out}")
    return code


def _comma_list(text: str, flag: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{flag} is {text!r}; expected a comma-separated list.")
    return items
